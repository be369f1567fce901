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
- ``{p}:tomb``: a sorted set of COMPLETED and CANCELLED tombstones by expiry; scripts purge the
  expired ones as they pass (no Redis key expiry: the server clock plus the
  test offset decides, like for leases).
- ``{p}:seq``: the fencing-token counter (INCR, never reset, never reused).
- ``{p}:bad``: a hash, entry key -> the raw bytes of a row set aside (below).
- channel ``{p}:wake``: a message (the new head) when a write moves the head
  earlier.
- channel ``{p}:done``: a message when rows finish (COMPLETED, FAILED or
  CANCELLED), are cancelled or deleted, for the processes awaiting entries.
- channel ``{p}:abort``: a message (the key) when a RUNNING row gets an abort
  request, for the workers (``RedisStore.wait_aborted``).

A row's JSON fields: ``k`` key, ``t`` task, ``p`` payload, ``d`` due, ``s``
status, ``a`` attempt, ``e`` last error, ``o`` occurrence, ``sch`` schedule,
``dl`` deliveries (claims of this attempt, the live one included), ``l`` lease,
``md`` max deliveries, ``tok`` token, ``lu`` lease end, ``ow`` owner, ``x``
tombstone expiry, ``qr`` set on a row that was set aside (below), ``r`` a
COMPLETED row's encoded return value and ``ru`` until when it is kept, ``et``
and ``tb`` a FAILED row's exception type and traceback text, ``ab`` (1) an abort
request, only ever on a RUNNING row.

An abort request never lets its row run again: FINISH ends it CANCELLED (a
tombstone with ``e`` 'aborted') for any outcome but done, and CLAIM does so
instead of handing it out once its lease lapsed.  The request is dropped
when the row leaves RUNNING.

Every script reads a row through ``load``, which never raises on what it finds:
a row that is not a JSON object, not UTF-8, whose ``k`` is not its hash field,
or with a field of the wrong type or out of range (a due time that is not a
finite decimal, a lease <= 0, an unknown status, ...) is *set aside*: its raw
bytes move to ``{p}:bad`` and a FAILED row takes
its place, with ``e`` naming the field and ``qr`` set.  That row lists, cancels
and deletes like any dead letter (deleting it drops the raw bytes too) but is
never retried: nothing in it can be trusted to run.  The rest of the batch goes
on, so one malformed row never stops a claim.

A store opened read-only (``RedisStore(read_only=True)``) lists through GET and
ENTRIES with ``READONLY`` set: expired tombstones are skipped instead of purged,
and a malformed row is reported as it would be set aside, without moving it.

Every script reads the server's clock (``TIME``) and adds ``ARGV[2]``, an offset
that is 0 except in tests (:meth:`RedisStore.advance_clock`).  Lua returns
numbers to Redis as integers, so scripts return times as strings.
"""

from __future__ import annotations

from . import _redis_stats as _stats
from ._redis_lua_check import CHECK

__all__ = ["ABORT", "ABORTS", "ADD", "CANCEL", "CLAIM", "DELETE", "ENTRIES", "EXTEND", "FINISH"]
__all__ += ["GET", "RETRY", "TIME"]

# KEYS: q, all, tomb, seq, rows, bad.  ARGV[1]: the wake channel, ARGV[2]: clock offset.
_PRELUDE = r"""
local Q, ALL, TOMB, SEQ, ROWS, BAD = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local CHAN = ARGV[1]
local ix_save, ix_forget, act  -- the inspection indexes: defined after the checks (_redis_stats)
local DONE_CHAN = string.sub(CHAN, 1, -5) .. 'done'  -- '{p}:wake' -> '{p}:done'
local ABORT_CHAN = string.sub(CHAN, 1, -5) .. 'abort'
-- set by GET and ENTRIES for a store opened read-only: nothing is purged or set aside
local READONLY = false
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
  if ix_forget then ix_forget(k) end
  redis.call('HDEL', ROWS, k)
  redis.call('HDEL', BAD, k)
  redis.call('ZREM', Q, k)
  redis.call('ZREM', ALL, k)
  redis.call('ZREM', TOMB, k)
end
local function purge()
  if READONLY then return end
  local gone = redis.call('ZRANGEBYSCORE', TOMB, '-inf', fmt(NOW), 'LIMIT', 0, 100)
  for _, k in ipairs(gone) do forget(k) end
end
"""

# The checks of a stored row (see ._redis_lua_check), then the inspection indexes.
_CHECK = CHECK + _stats.INDEX

#: ARGV[3]: on_conflict; then per row: key, JSON of the new row's fields, due, delay
#: ('' for the one not given).  Returns {'ok', row JSON...} or {'exists', key}.
ADD = (
    _PRELUDE
    + _CHECK
    + r"""
purge()
if redis.call('HLEN', ROWS) == 0 then redis.call('SET', TAG .. 'ixv', '1') end
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
  local r, raw = load(k)
  if r and mode == 'keep' then
    table.insert(out, raw)
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

#: ARGV[3]: owner, ARGV[4]: limit, ARGV[5]: dedupe_ttl.  Returns key, token, row JSON
#: for each claimed row.
CLAIM = (
    _PRELUDE
    + _CHECK
    + r"""
purge()
local owner = ARGV[3]
local due = redis.call('ZRANGEBYSCORE', Q, '-inf', fmt(NOW), 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
local late_n, late_t, late_m = 0, 0, 0  -- claims and their start lateness (act)
local ended = false
for _, k in ipairs(due) do
  local r = load(k)
  if not r or (r.s ~= 'PENDING' and r.s ~= 'RUNNING') then
    redis.call('ZREM', Q, k)
  elseif r.ab then
    -- its worker died before it learnt of the abort: nobody runs it again
    cancelled(r, 'aborted', tonumber(ARGV[5]))
    ended = true
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
      local late = math.max(0, NOW - num(r.d))
      late_n, late_t, late_m = late_n + 1, late_t + late, math.max(late_m, late)
      r.dl = r.dl + 1
      r.s = 'RUNNING'
      r.tok = redis.call('INCR', SEQ)
      r.ow = owner
      r.lu = fmt(NOW + tonumber(r.l))
      redis.call('ZADD', Q, r.lu, k)
      table.insert(out, k)
      table.insert(out, r.tok)
      table.insert(out, save(r))
    end
  end
end
if late_n > 0 then act(late_n, late_t, late_m, 0, 0, 0) end
if ended then redis.call('PUBLISH', DONE_CHAN, '1') end
return out
"""
)

#: ARGV[3..]: key, token pairs.  Returns a string of '1'/'0', one per pair.
EXTEND = (
    _PRELUDE
    + _CHECK
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
local function apply(k, tok, kind, at, err, ttl, res, rttl, etype, tb)
  local r = load(k)
  if not r or r.s ~= 'RUNNING' or r.tok ~= tonumber(tok) then return 0 end
  if kind == 'abort' then
    cancelled(r, err, ttl)
    return 2
  elseif r.ab and kind ~= 'done' then
    -- the run was aborted: whatever it ended with, it never runs again
    cancelled(r, 'aborted', ttl)
    return 2
  end
  r.ow = nil
  r.lu = nil
  r.ab = nil
  if kind == 'done' then
    r.s = 'COMPLETED'
    r.x = fmt(NOW + ttl)
    if res ~= '' then
      r.r = res
      r.ru = fmt(NOW + rttl)
    end
    if err ~= '' then r.e = err end
    redis.call('ZREM', Q, k)
    redis.call('ZADD', TOMB, r.x, k)
  elseif kind == 'dead' then
    r.s = 'FAILED'
    r.e = err
    if etype ~= '' then r.et = etype else r.et = nil end
    if tb ~= '' then r.tb = tb else r.tb = nil end
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

#: ARGV[3]: dedupe_ttl, ARGV[4]: result_ttl, then per finish: key, token,
#: done|retry|next|dead|release|abort, a time or '', an error or '', a result or
#: '', an error type or '', a traceback or ''.  Returns a string of '1'/'0'
#: (applied or not).
FINISH = (
    _PRELUDE
    + _CHECK
    + _APPLY
    + r"""
local ttl, rttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = head()
local out = {}
local ended = false
local n_done, n_failed, n_retried = 0, 0, 0  -- runs ended, by outcome (act)
for i = 5, #ARGV, 8 do
  local kind = ARGV[i + 2]
  local ok = apply(ARGV[i], ARGV[i + 1], kind, ARGV[i + 3], ARGV[i + 4], ttl,
                   ARGV[i + 5], rttl, ARGV[i + 6], ARGV[i + 7])
  if ok == 2 or (ok == 1 and (kind == 'done' or kind == 'dead')) then ended = true end
  if ok == 1 then  -- a run an abort ended (2) counts in none of the columns
    if kind == 'done' or (kind == 'next' and ARGV[i + 4] == '') then n_done = n_done + 1
    elseif kind == 'dead' or kind == 'next' then n_failed = n_failed + 1
    elseif kind == 'retry' then n_retried = n_retried + 1 end
  end
  table.insert(out, ok == 0 and '0' or '1')
end
if n_done + n_failed + n_retried > 0 then act(0, 0, 0, n_done, n_failed, n_retried) end
wake(old)
if ended then redis.call('PUBLISH', DONE_CHAN, '1') end
return table.concat(out)
"""
)

#: ARGV[3]: key.  Deletes a PENDING or FAILED row; returns 1 or 0.
CANCEL = (
    _PRELUDE
    + _CHECK
    + r"""
local r = load(ARGV[3])
if not r or (r.s ~= 'PENDING' and r.s ~= 'FAILED') then return 0 end
forget(ARGV[3])
redis.call('PUBLISH', DONE_CHAN, '1')
return 1
"""
)

#: ARGV[3]: key.  Deletes a PENDING or FAILED row, or stores an abort request in a
#: RUNNING one and announces it (the key, on ``{p}:abort``); returns 1 or 0.
ABORT = (
    _PRELUDE
    + _CHECK
    + r"""
local k = ARGV[3]
local r = load(k)
if not r then return 0 end
if r.s == 'PENDING' or r.s == 'FAILED' then
  forget(k)
  redis.call('PUBLISH', DONE_CHAN, '1')
  return 1
end
if r.s ~= 'RUNNING' then return 0 end
r.ab = 1
save(r)
redis.call('PUBLISH', ABORT_CHAN, k)
return 1
"""
)

#: ARGV[3]: '1' to write nothing (read-only), then key, token pairs.  Returns a
#: string of '1'/'0': the row is RUNNING under that token with an abort request.
ABORTS = (
    _PRELUDE
    + _CHECK
    + r"""
READONLY = ARGV[3] == '1'
local out = {}
for i = 4, #ARGV, 2 do
  local r = load(ARGV[i])
  if r and r.s == 'RUNNING' and r.tok == tonumber(ARGV[i + 1]) and r.ab then
    table.insert(out, '1')
  else
    table.insert(out, '0')
  end
end
return table.concat(out)
"""
)

#: ARGV[3]: key.  Deletes a row that is not RUNNING; returns 1 or 0.
DELETE = (
    _PRELUDE
    + _CHECK
    + r"""
local r = load(ARGV[3])
if not r or r.s == 'RUNNING' then return 0 end
forget(ARGV[3])
redis.call('PUBLISH', DONE_CHAN, '1')
return 1
"""
)

#: ARGV[3]: key.  A FAILED row becomes PENDING, due now, attempt 1; returns 1 or 0
#: (0 for a row set aside as malformed).
RETRY = (
    _PRELUDE
    + _CHECK
    + r"""
local r = load(ARGV[3])
if not r or r.s ~= 'FAILED' or r.qr then return 0 end
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

#: ARGV[3]: key, ARGV[4]: '1' to write nothing (read-only).  Returns the row's JSON
#: and the store's time (to judge ``ru``), or false.
GET = (
    _PRELUDE
    + _CHECK
    + r"""
READONLY = ARGV[4] == '1'
local r, raw = load(ARGV[3])
if not r then return false end
return {raw, fmt(NOW)}
"""
)

#: ARGV[3]: a status or '', ARGV[4]: limit, ARGV[5]: '1' to write nothing (read-only).
#: Returns key, row JSON pairs by due time.
ENTRIES = (
    _PRELUDE
    + _CHECK
    + r"""
READONLY = ARGV[5] == '1'
purge()
local want, limit = ARGV[3], tonumber(ARGV[4])
local out = {}
local start = 0
while #out < 2 * limit do
  local ks = redis.call('ZRANGE', ALL, start, start + 499)
  if #ks == 0 then break end
  for _, k in ipairs(ks) do
    -- read, not load: a tombstone forgotten here would shift the pages of ALL
    local r, raw = read(k)
    if r then
      if (want == '' or r.s == want) and not (r.x and num(r.x) <= NOW) then
        table.insert(out, k)
        table.insert(out, raw)
        if #out >= 2 * limit then break end
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


# -- inspection (the queries' own scripts: see ._redis_stats) ---------------------------

ACTIVITY = _PRELUDE + _CHECK + _stats.ACTIVITY
PAGE = _PRELUDE + _CHECK + _stats.PAGE
REINDEX = _PRELUDE + _CHECK + _stats.REINDEX
STATS = _PRELUDE + _CHECK + _stats.STATS
__all__ += ["ACTIVITY", "PAGE", "REINDEX", "STATS"]

# Every script, each run as a function that writes its count changes as it ends.
for _name in __all__:
    globals()[_name] = _stats.wrap(globals()[_name])
