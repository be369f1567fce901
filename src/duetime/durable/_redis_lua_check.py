"""The checks and the shared row helpers of RedisStore's Lua scripts (text, no code).

:data:`CHECK` is the Lua every script that reads a row includes after the
prelude of :mod:`._redis_lua`: ``load`` and ``read``, which never raise on what
they find and set a malformed row aside (see :mod:`._redis_lua`), ``save``, and
``cancelled`` (a leased row ended by an abort).  Every field a script or
RedisStore reads is checked here, so nothing after ``load`` can raise on it.
"""

from __future__ import annotations

from ._codec import MAX_PAYLOAD

__all__ = ["CHECK"]

CHECK = (
    f"local MAXP = {MAX_PAYLOAD}\n"
    + r"""
local STATUS = {PENDING = true, RUNNING = true, COMPLETED = true, FAILED = true,
                CANCELLED = true}
local FIELDS = {'k', 't', 'p', 'd', 's', 'a', 'e', 'o', 'sch', 'dl', 'l', 'md', 'tok', 'lu', 'ow',
                'x', 'qr', 'r', 'ru', 'et', 'tb', 'ab', 'ix'}
-- Python's datetime holds 0001-01-02 .. 9999-12-31: a due time outside cannot be listed.
local TMIN, TMAX = -62135510400, 253402300799
local function num(v)
  -- a finite number, from a JSON number or a plain decimal string (no hex, inf or nan,
  -- which Lua's tonumber would take and Python's float or ZADD would not)
  if type(v) == 'string' then
    if not (v:find('^[-+]?[%d.]+$') or v:find('^[-+]?[%d.]+[eE][-+]?%d+$')) then return nil end
    v = tonumber(v)
  end
  if type(v) ~= 'number' or v ~= v or v <= TMIN or v >= TMAX then return nil end
  return v
end
local function int(v, least)
  if type(v) ~= 'number' or v ~= v or v < least or v > 9007199254740992 then return nil end
  if math.floor(v) ~= v then return nil end
  return v
end
local function utf8(s)
  -- true if s is UTF-8 as Python decodes it strictly (no overlong forms, no surrogates)
  local i, n = s:find('[\128-\255]'), #s
  while i do
    local c, c2 = s:byte(i), s:byte(i + 1) or 0
    local len, lo, hi = 0, 128, 191
    if c >= 194 and c <= 223 then len = 2
    elseif c >= 224 and c <= 239 then
      len = 3
      if c == 224 then lo = 160 elseif c == 237 then hi = 159 end
    elseif c >= 240 and c <= 244 then
      len = 4
      if c == 240 then lo = 144 elseif c == 244 then hi = 143 end
    end
    if len == 0 or i + len - 1 > n or c2 < lo or c2 > hi then return false end
    for j = i + 2, i + len - 1 do
      local cj = s:byte(j)
      if cj < 128 or cj > 191 then return false end
    end
    i = s:find('[\128-\255]', i + len)
  end
  return true
end
local NAMES = {t = 'task', p = 'payload', s = 'status', d = 'due time', a = 'attempt',
               o = 'occurrence', dl = 'deliveries', l = 'lease', md = 'max deliveries',
               e = 'last error', sch = 'schedule', ow = 'owner', tok = 'token',
               lu = 'lease end', x = 'expiry', ab = 'abort request'}
local function field(k, r)
  -- the name of the first field of a decoded row that cannot be used, or nil
  if r.k ~= k then return 'k' end
  if type(r.t) ~= 'string' or (r.t == '' and not r.qr) then return 't' end
  if type(r.p) ~= 'string' then return 'p' end
  if #r.p > MAXP then return 'P' end  -- what the codec never writes (cjson gives UTF-8)
  if not STATUS[r.s] then return 's' end
  if not num(r.d) then return 'd' end
  if not int(r.a, 1) then return 'a' end
  if not int(r.o, 0) then return 'o' end
  if not int(r.dl, 0) then return 'dl' end
  local l = num(r.l)
  if not l or l <= 0 then return 'l' end
  if not int(r.md, 1) then return 'md' end
  for _, f in ipairs({'e', 'sch', 'ow'}) do
    if r[f] ~= nil and type(r[f]) ~= 'string' then return f end
  end
  if r.tok ~= nil and not int(r.tok, 0) then return 'tok' end
  if r.lu ~= nil and not num(r.lu) then return 'lu' end
  if r.x ~= nil and not num(r.x) then return 'x' end
  if r.ab ~= nil and (r.ab ~= 1 or r.s ~= 'RUNNING') then return 'ab' end
  return nil
end
local function fault(k, r)
  -- what is wrong with a decoded row, or nil; JSON nulls of optional fields are
  -- dropped first
  for _, f in ipairs({'e', 'sch', 'ow', 'tok', 'lu', 'x', 'qr', 'ab'}) do
    if r[f] == cjson.null then r[f] = nil end
  end
  local f = field(k, r)
  if f == 'k' then return 'field "k" is not the row\'s key' end
  if f == 'P' then return 'payload is over ' .. (MAXP / 1024) .. ' KiB' end
  if f then return 'missing or invalid field "' .. f .. '" (' .. NAMES[f] .. ')' end
  return nil
end
local function aside(k, raw, r, why)
  -- keep the raw row in BAD and leave a FAILED row in its place (see the module docstring)
  if type(r) ~= 'table' then r = {} end
  local d = num(r.d) or num(redis.call('ZSCORE', ALL, k)) or NOW
  local q = {k = k, s = 'FAILED', d = fmt(d), a = int(r.a, 1) or 1, o = int(r.o, 0) or 0,
             dl = 0, l = '30', md = int(r.md, 1) or 1, qr = 1, t = '', p = '[]',
             e = 'malformed row set aside: ' .. why}
  if type(r.t) == 'string' and utf8(r.t) then q.t = r.t end
  if type(r.sch) == 'string' and utf8(r.sch) then q.sch = r.sch end
  if READONLY then return q, cjson.encode(q) end  -- reported as it would be set aside
  ix_forget(k)
  ix_save(q)
  redis.call('HSET', BAD, k, raw)
  redis.call('ZREM', Q, k)
  redis.call('ZREM', TOMB, k)
  redis.call('ZADD', ALL, q.d, k)
  local out = cjson.encode(q)
  redis.call('HSET', ROWS, k, out)
  return q, out
end
local function read(k)
  -- the row under k and its JSON, a malformed one set aside first; nil if absent
  local raw = redis.call('HGET', ROWS, k)
  if not raw then return nil end
  local ok, r = pcall(cjson.decode, raw)
  -- A row set aside keeps its key, which may be what is not UTF-8: it is not
  -- set aside again (that would overwrite the raw bytes kept in BAD).
  local text = (ok and type(r) == 'table' and r.qr) or (utf8(raw) and utf8(k))
  if not text then return aside(k, raw, nil, 'not UTF-8') end
  if not ok or type(r) ~= 'table' then return aside(k, raw, nil, 'not a JSON object') end
  local why = fault(k, r)
  if why then return aside(k, raw, r, why) end
  return r, raw
end
local function load(k)
  local r, raw = read(k)
  if r and r.x and num(r.x) <= NOW then
    if not READONLY then forget(k) end
    return nil
  end
  return r, raw
end
local function save(r)
  ix_save(r)
  local ok, raw = pcall(cjson.encode, r)
  if not ok then
    -- a field this version does not know holds what cjson cannot write back
    -- (a number out of range): keep the known fields only
    local known = {}
    for _, f in ipairs(FIELDS) do known[f] = r[f] end
    raw = cjson.encode(known)
  end
  redis.call('HSET', ROWS, r.k, raw)
  return raw
end
local function cancelled(r, why, ttl)
  -- end the leased row r CANCELLED by an abort: a tombstone, never run again
  r.s = 'CANCELLED'
  r.e = why
  r.x = fmt(NOW + ttl)
  r.ow, r.lu, r.ab, r.r, r.ru, r.et, r.tb = nil, nil, nil, nil, nil, nil, nil
  redis.call('ZREM', Q, r.k)
  redis.call('ZADD', TOMB, r.x, r.k)
  save(r)
end
"""
)
