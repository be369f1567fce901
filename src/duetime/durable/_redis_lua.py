"""The Lua scripts of :class:`~duetime.durable.RedisStore` (one concept: the data model).

Every key of one store shares the hash tag ``{prefix}``, and every script declares
all of them, so a store lives in one Redis Cluster slot:

- ``{p}:rows``: a hash, entry key -> the row as JSON (cjson).  Times are kept as
  *strings* (``%.17g``): cjson writes numbers with 14 significant digits, which
  would round an epoch time to 0.1 ms.
- ``{p}:q``: a sorted set of claimable rows by ``visible_at``: the due time of a
  PENDING row, the lease end of a RUNNING one.  FAILED and COMPLETED rows are not
  in it.  Its first member is the store's head.
- ``{p}:all``: a sorted set of every row by due time, for listing.
- ``{p}:tomb``: a sorted set of COMPLETED tombstones by expiry; scripts purge the
  expired ones as they pass (no Redis key expiry: the server clock plus the
  test offset decides, like for leases).
- ``{p}:seq``: the fencing-token counter (INCR, never reset, never reused).
- channel ``{p}:wake``: a message (the new head) when a write moves the head
  earlier.

A row's JSON fields: ``k`` key, ``t`` task, ``p`` payload, ``d`` due, ``s``
status, ``a`` attempt, ``e`` last error, ``o`` occurrence, ``sch`` schedule,
``dl`` deliveries (claims of this attempt, the live one included), ``l`` lease,
``md`` max deliveries, ``tok`` token, ``lu`` lease end, ``ow`` owner, ``x``
tombstone expiry.

Every script reads the server's clock (``TIME``) and adds ``ARGV[2]``, an offset
that is 0 except in tests (:meth:`RedisStore.advance_clock`).  Lua returns
numbers to Redis as integers, so scripts return times as strings.
"""

from __future__ import annotations

__all__ = ["ADD", "CANCEL", "CLAIM", "DELETE", "ENTRIES", "EXTEND", "FINISH"]
__all__ += ["GET", "RETRY", "TIME"]

# KEYS: q, all, tomb, seq, rows.  ARGV[1]: the wake channel, ARGV[2]: clock offset.
_PRELUDE = r"""
local Q, ALL, TOMB, SEQ, ROWS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local CHAN = ARGV[1]
local t = redis.call('TIME')
local NOW = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
local function fmt(x) return string.format('%.17g', x) end
local function head()
  local h = redis.call('ZRANGE', Q, 0, 0, 'WITHSCORES')
  if h[2] then return tonumber(h[2]) end
  return nil
end
local function wake(old)
  local new = head()
  if new and (old == nil or new < old) then redis.call('PUBLISH', CHAN, fmt(new)) end
end
local function forget(k)
  redis.call('HDEL', ROWS, k)
  redis.call('ZREM', Q, k)
  redis.call('ZREM', ALL, k)
  redis.call('ZREM', TOMB, k)
end
local function purge()
  local gone = redis.call('ZRANGEBYSCORE', TOMB, '-inf', fmt(NOW), 'LIMIT', 0, 100)
  for _, k in ipairs(gone) do forget(k) end
end
local function load(k)
  local raw = redis.call('HGET', ROWS, k)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if r.x and tonumber(r.x) <= NOW then
    forget(k)
    return nil
  end
  return r
end
local function save(r)
  local raw = cjson.encode(r)
  redis.call('HSET', ROWS, r.k, raw)
  return raw
end
"""

#: ARGV[3]: on_conflict; then per row: key, JSON of the new row's fields, due, delay
#: ('' for the one not given).  Returns {'ok', row JSON...} or {'exists', key}.
ADD = (
    _PRELUDE
    + r"""
purge()
local mode = ARGV[3]
local n = (#ARGV - 3) / 4
if mode ~= 'keep' then
  local seen = {}
  for i = 0, n - 1 do
    local k = ARGV[4 + 4 * i]
    local r = load(k)
    if seen[k] or (r and (mode == 'error' or r.s == 'RUNNING')) then
      return {'exists', k}
    end
    seen[k] = true
  end
end
local old = head()
local out = {'ok'}
for i = 0, n - 1 do
  local k = ARGV[4 + 4 * i]
  local r = load(k)
  if r and mode == 'keep' then
    table.insert(out, cjson.encode(r))
  else
    if r then forget(k) end
    local new = cjson.decode(ARGV[5 + 4 * i])
    local due = ARGV[6 + 4 * i]
    if due == '' then due = fmt(NOW + tonumber(ARGV[7 + 4 * i])) end
    new.k = k
    new.d = due
    new.s = 'PENDING'
    new.a = 1
    new.o = 0
    new.dl = 0
    redis.call('ZADD', Q, due, k)
    redis.call('ZADD', ALL, due, k)
    table.insert(out, save(new))
  end
end
wake(old)
return out
"""
)

#: ARGV[3]: owner, ARGV[4]: limit.  Returns the claimed rows' JSON.
CLAIM = (
    _PRELUDE
    + r"""
purge()
local owner = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', Q, '-inf', fmt(NOW), 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, k in ipairs(due) do
  local r = load(k)
  if not r or (r.s ~= 'PENDING' and r.s ~= 'RUNNING') then
    redis.call('ZREM', Q, k)
  else
    r.ow = nil
    r.lu = nil
    if r.dl >= r.md then
      -- poison: every delivery of this attempt ended without a fenced finish
      r.s = 'FAILED'
      r.e = 'poison: delivered ' .. r.dl .. ' times (max_deliveries=' .. r.md .. ')'
      redis.call('ZREM', Q, k)
      save(r)
    else
      r.dl = r.dl + 1
      r.s = 'RUNNING'
      r.tok = redis.call('INCR', SEQ)
      r.ow = owner
      r.lu = fmt(NOW + tonumber(r.l))
      redis.call('ZADD', Q, r.lu, k)
      table.insert(out, save(r))
    end
  end
end
return out
"""
)

#: ARGV[3..]: key, token pairs.  Returns a string of '1'/'0', one per pair.
EXTEND = (
    _PRELUDE
    + r"""
local out = {}
for i = 3, #ARGV, 2 do
  local k = ARGV[i]
  local r = load(k)
  if r and r.s == 'RUNNING' and r.tok == tonumber(ARGV[i + 1]) then
    r.lu = fmt(NOW + tonumber(r.l))
    redis.call('ZADD', Q, r.lu, k)
    save(r)
    table.insert(out, '1')
  else
    table.insert(out, '0')
  end
end
return table.concat(out)
"""
)

_APPLY = r"""
local function apply(k, tok, kind, at, err, ttl)
  local r = load(k)
  if not r or r.s ~= 'RUNNING' or r.tok ~= tonumber(tok) then return 0 end
  r.ow = nil
  r.lu = nil
  if kind == 'done' then
    r.s = 'COMPLETED'
    r.x = fmt(NOW + ttl)
    redis.call('ZREM', Q, k)
    redis.call('ZADD', TOMB, r.x, k)
  elseif kind == 'dead' then
    r.s = 'FAILED'
    r.e = err
    redis.call('ZREM', Q, k)
  else
    r.s = 'PENDING'
    if kind == 'retry' then
      r.a = r.a + 1
      r.dl = 0
      r.d = at
      r.e = err
    elseif kind == 'next' then
      r.o = r.o + 1
      r.a = 1
      r.dl = 0
      r.d = at
      if err ~= '' then r.e = err else r.e = nil end
    elseif kind == 'release' then
      r.dl = math.max(0, r.dl - 1)
    end
    redis.call('ZADD', Q, r.d, k)
    redis.call('ZADD', ALL, r.d, k)
  end
  save(r)
  return 1
end
"""

#: ARGV[3]: dedupe_ttl, then per finish: key, token, done|retry|next|dead|release,
#: a time or '', an error or ''.  Returns a string of '1'/'0' (applied or not).
FINISH = (
    _PRELUDE
    + _APPLY
    + r"""
local ttl = tonumber(ARGV[3])
local old = head()
local out = {}
for i = 4, #ARGV, 5 do
  local ok = apply(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ttl)
  table.insert(out, tostring(ok))
end
wake(old)
return table.concat(out)
"""
)

#: ARGV[3]: key.  Deletes a PENDING or FAILED row; returns 1 or 0.
CANCEL = (
    _PRELUDE
    + r"""
local r = load(ARGV[3])
if not r or (r.s ~= 'PENDING' and r.s ~= 'FAILED') then return 0 end
forget(ARGV[3])
return 1
"""
)

#: ARGV[3]: key.  Deletes a row that is not RUNNING; returns 1 or 0.
DELETE = (
    _PRELUDE
    + r"""
local r = load(ARGV[3])
if not r or r.s == 'RUNNING' then return 0 end
forget(ARGV[3])
return 1
"""
)

#: ARGV[3]: key.  A FAILED row becomes PENDING, due now, attempt 1; returns 1 or 0.
RETRY = (
    _PRELUDE
    + r"""
local r = load(ARGV[3])
if not r or r.s ~= 'FAILED' then return 0 end
local old = head()
r.s = 'PENDING'
r.d = fmt(NOW)
r.a = 1
r.dl = 0
redis.call('ZADD', Q, r.d, r.k)
redis.call('ZADD', ALL, r.d, r.k)
save(r)
wake(old)
return 1
"""
)

#: ARGV[3]: key.  Returns the row's JSON, or false.
GET = (
    _PRELUDE
    + r"""
local r = load(ARGV[3])
if not r then return false end
return cjson.encode(r)
"""
)

#: ARGV[3]: a status or '', ARGV[4]: limit.  Returns rows' JSON by due time.
ENTRIES = (
    _PRELUDE
    + r"""
purge()
local want, limit = ARGV[3], tonumber(ARGV[4])
local out = {}
local start = 0
while #out < limit do
  local ks = redis.call('ZRANGE', ALL, start, start + 499)
  if #ks == 0 then break end
  for _, k in ipairs(ks) do
    local raw = redis.call('HGET', ROWS, k)
    if raw then
      local r = cjson.decode(raw)
      if (want == '' or r.s == want) and not (r.x and tonumber(r.x) <= NOW) then
        table.insert(out, raw)
        if #out >= limit then break end
      end
    end
  end
  start = start + 500
end
return out
"""
)

#: Returns the store clock (server TIME + offset) as a string.
TIME = (
    _PRELUDE
    + r"""
return fmt(NOW)
"""
)
