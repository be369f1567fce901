"""RedisStore's inspection queries, and the indexes its scripts keep for them.

Kept by every script through ``save`` and ``forget`` (:data:`INDEX`, appended
to the scripts' checks in :mod:`._redis_lua`), so no query ever scans the
whole store:

- ``{p}:cnt``: a hash, ``STATUS<TAB>task`` -> how many rows (a script adds up
  its changes and writes them once, as it ends: :func:`wrap`);
- ``{p}:s:STATUS``: for FAILED and CANCELLED, a sorted set of the rows by
  due time (the filtered pages: dead letters are ``{p}:s:FAILED``);
  ``{p}:running``: the RUNNING rows, a plain set (a page sorts its few rows).
  PENDING rows are listed from ``{p}:q`` (where they are by due time, among
  the few RUNNING ones), COMPLETED ones from ``{p}:all``;
- a row's ``ix`` field: the status it is counted under (so a save knows what
  to move without reading anything else);
- ``{p}:act``: a hash, a ring of 64 per-minute slots (``slot:m`` the minute,
  ``slot:c`` claims, ``slot:ls``/``slot:lm`` their total and largest start
  lateness, ``slot:d``/``slot:f``/``slot:r`` runs completed, failed, retried),
  bumped once per claim or finish batch;
- ``{p}:ixv``: set once every row is counted.  A store an older duetime
  wrote lacks it; the first inspection counts its rows in steps of 500
  (:data:`REINDEX`), and a store indexed from its first row (``ADD`` on an
  empty store) sets it at once.

The names derive from ``KEYS[1]`` (``{p}:q``), in the store's one hash slot.
"""

from __future__ import annotations

import math
from typing import Any

from .._vocab import Status
from . import _redis_rows as codec
from ._stats import ACTIVITY_MINUTES, Counts, EntryQuery, Minute, check_minutes, minutes_window
from ._store import Entry, EntryDetail, Page, page_from

__all__ = ["ACTIVITY", "INDEX", "PAGE", "REINDEX", "RING", "STATS", "RedisInspection", "wrap"]

RING = ACTIVITY_MINUTES + 4

#: Appended to the scripts' checks: the index upkeep (``ix_save``, ``ix_forget``,
#: declared in the prelude) and the activity ring (``act``).
INDEX = (
    r"""
local TAG = string.sub(Q, 1, -2)
local CNT, SIDX, ACT, IXV = TAG .. 'cnt', TAG .. 's:', TAG .. 'act', TAG .. 'ixv'
-- The statuses with a sorted set of their own.  PENDING rows are listed from Q
-- (by due time, like {p}:s:*), COMPLETED ones from ALL: no index for either.
-- RUNNING rows (a few: as many as the workers run) are in a plain set: a small
-- sorted set inserts in linear time, parsing every score it passes.
local INDEXED = {FAILED = true, CANCELLED = true}
local RUNNING = TAG .. 'running'
local function ix_drop(s, t, k)
  local f = s .. '\t' .. t
  IXD[f] = (IXD[f] or 0) - 1
  if s == 'RUNNING' then redis.call('SREM', RUNNING, k)
  elseif INDEXED[s] then redis.call('ZREM', SIDX .. s, k) end
end
ix_save = function(r)
  if r.ix ~= r.s then
    if type(r.ix) == 'string' and type(r.t) == 'string' then ix_drop(r.ix, r.t, r.k) end
    local f = r.s .. '\t' .. r.t
    IXD[f] = (IXD[f] or 0) + 1
    r.ix = r.s
    -- a row's due time changes only with its status (claim, finish, retry, replace)
    if r.s == 'RUNNING' then redis.call('SADD', RUNNING, r.k)
    elseif INDEXED[r.s] then redis.call('ZADD', SIDX .. r.s, r.d, r.k) end
  end
end
ix_forget = function(k)
  local raw = redis.call('HGET', ROWS, k)
  if not raw then return end
  local ok, r = pcall(cjson.decode, raw)
  if ok and type(r) == 'table' and type(r.ix) == 'string' and type(r.t) == 'string' then
    ix_drop(r.ix, r.t, k)
  end
end
act = function(c, ls, lm, d, f, rt)
  local minute = math.floor(NOW / 60)
  local p = (minute % """
    + str(RING)
    + r""") .. ':'
  if tonumber(redis.call('HGET', ACT, p .. 'm')) ~= minute then
    redis.call('HDEL', ACT, p .. 'c', p .. 'ls', p .. 'lm', p .. 'd', p .. 'f', p .. 'r')
    redis.call('HSET', ACT, p .. 'm', string.format('%d', minute))
  end
  if c > 0 then
    redis.call('HINCRBY', ACT, p .. 'c', c)
    redis.call('HINCRBYFLOAT', ACT, p .. 'ls', fmt(ls))
    if lm > (tonumber(redis.call('HGET', ACT, p .. 'lm')) or 0) then
      redis.call('HSET', ACT, p .. 'lm', fmt(lm))
    end
  end
  if d > 0 then redis.call('HINCRBY', ACT, p .. 'd', d) end
  if f > 0 then redis.call('HINCRBY', ACT, p .. 'f', f) end
  if rt > 0 then redis.call('HINCRBY', ACT, p .. 'r', rt) end
end
"""
)

_WRAP_HEAD = """local IXD = {}  -- the changes of {p}:cnt this script makes, written as it ends
local function __script()
"""
_WRAP_TAIL = """
end
local __out = __script()
if next(IXD) then
  local cnt = string.sub(KEYS[1], 1, -2) .. 'cnt'
  for f, n in pairs(IXD) do
    if n ~= 0 and redis.call('HINCRBY', cnt, f, n) <= 0 then redis.call('HDEL', cnt, f) end
  end
end
return __out
"""


def wrap(script: str) -> str:
    """``script`` run as a function, after which the count changes it added up
    (``IXD``) are written to ``{p}:cnt``, one ``HINCRBY`` per task and status
    rather than two per row."""
    return _WRAP_HEAD + script + _WRAP_TAIL


#: Returns the store's time, then the fields and values of {p}:act.
ACTIVITY = r"""
local out = {fmt(NOW)}
for _, v in ipairs(redis.call('HGETALL', ACT)) do table.insert(out, v) end
return out
"""

#: ARGV[3]: '1' if read-only.  Returns {indexed '1'/'0', field, count, ...} of {p}:cnt.
STATS = r"""
READONLY = ARGV[3] == '1'
purge()
local out = {redis.call('EXISTS', IXV) == 1 and '1' or '0'}
for _, v in ipairs(redis.call('HGETALL', CNT)) do table.insert(out, v) end
return out
"""

#: ARGV[3]: an HSCAN cursor.  Counts up to 500 rows saved by an older duetime;
#: returns the next cursor ('0': done, and {p}:ixv is set).
REINDEX = r"""
local scan = redis.call('HSCAN', ROWS, ARGV[3], 'COUNT', 500)
local fields = scan[2]
for i = 1, #fields, 2 do
  local r = load(fields[i])
  if r and r.ix ~= r.s then save(r) end
end
if scan[1] == '0' then redis.call('SET', IXV, '1') end
return scan[1]
"""

#: ARGV[3]: status or '', [4] task or '' (with [5] '1' when a task is given),
#: [6] key prefix, [7] due from or '', [8] due before or '', [9] after due or '',
#: [10] after key, [11] limit, [12] '1' if read-only, [13] series: '1' only, '0' none,
#: '' all.  Scans at most 5000 members.
#: Returns {'more'|'end', last due, last key, then key, due, row JSON per match}.
PAGE = r"""
READONLY = ARGV[12] == '1'
local status, task, has_task, prefix = ARGV[3], ARGV[4], ARGV[5] == '1', ARGV[6]
local lo, hi, after_due, after_key = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local limit = tonumber(ARGV[11])
local series = ARGV[13]
local src = ALL
if status == 'PENDING' then src = Q elseif INDEXED[status] then src = SIDX .. status end
local min = '-inf'
if lo ~= '' then min = lo end
if after_due ~= '' and (lo == '' or tonumber(after_due) >= tonumber(lo)) then min = after_due end
local max = '+inf'
if hi ~= '' then max = '(' .. hi end
local ad = tonumber(after_due)
local running = nil  -- RUNNING: the set's rows in the window, sorted by (due, key)
if status == 'RUNNING' then
  running = {}
  for _, k in ipairs(redis.call('SMEMBERS', RUNNING)) do
    local r = read(k)
    local d = r and r.s == 'RUNNING' and num(r.d)
    if d and (lo == '' or d >= tonumber(lo)) and (hi == '' or d < tonumber(hi))
        and (ad == nil or d >= ad) then
      table.insert(running, {d, k, r.d})
    end
  end
  table.sort(running, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
end
local function batch(offset)
  if running == nil then
    return redis.call('ZRANGEBYSCORE', src, min, max, 'WITHSCORES', 'LIMIT', offset, 500)
  end
  local got = {}
  for i = offset + 1, math.min(offset + 500, #running) do
    table.insert(got, running[i][2])
    table.insert(got, running[i][3])
  end
  return got
end
local out = {'end', '', ''}
local budget, offset = 5000, 0
local plen = #prefix
while budget > 0 do
  local got = batch(offset)
  if #got == 0 then return out end
  offset = offset + 500
  for i = 1, #got, 2 do
    local k, score = got[i], got[i + 1]
    local skip = ad ~= nil and tonumber(score) == ad and k <= after_key
    if not skip and (plen == 0 or string.sub(k, 1, plen) == prefix) then
      local r, raw = read(k)
      if r and not (r.x and num(r.x) <= NOW) and (status == '' or r.s == status)
          and (not has_task or r.t == task)
          and (series == '' or (series == '1') == (r.sch ~= nil)) then
        table.insert(out, k)
        table.insert(out, score)
        table.insert(out, raw)
        if (#out - 3) / 3 > limit then return out end
      end
    end
    budget = budget - 1
    if budget <= 0 then
      out[1], out[2], out[3] = 'more', score, k
      return out
    end
  end
end
return out
"""


class RedisInspection:
    """The inspection half of RedisStore (a mixin: it runs the store's scripts)."""

    read_only: bool
    _indexed: bool

    async def _run(self, name: str, *args: str | int) -> Any:
        raise NotImplementedError

    async def get(self, key: str) -> Entry | None:
        raise NotImplementedError

    async def time(self) -> float:
        raise NotImplementedError

    @property
    def _ro_flag(self) -> str:
        raise NotImplementedError

    async def _reindex(self) -> None:
        """Count the rows an older duetime saved (once per store; see the module docstring)."""
        cursor = "0"
        while True:
            cursor = codec.text(await self._run("REINDEX", cursor))
            if cursor == "0":
                break
        self._indexed = True

    async def counts(self) -> Counts:
        """How many entries, per task and status, from the counters the scripts keep."""
        reply = await self._run("STATS", self._ro_flag)
        if codec.text(reply[0]) != "1" and not self.read_only and not self._indexed:
            await self._reindex()
            reply = await self._run("STATS", self._ro_flag)
        pairs = []
        for i in range(1, len(reply), 2):
            status, _, task = codec.text(reply[i]).partition("\t")
            if status in Status.__members__:
                pairs.append((task, Status(status), int(reply[i + 1])))
        return Counts.of(pairs)

    async def page(self, query: EntryQuery) -> Page:
        """One page of the entries ``query`` matches, in ``(due, key)`` order
        (at most 5000 index members read per call: a sparse filter may return
        a short page with a ``next``).

        :raises TypeError: a query that is not an EntryQuery
        """
        if not isinstance(query, EntryQuery):
            raise TypeError(f"page() takes an EntryQuery, not {type(query).__name__}")
        if query.status is not None and not self.read_only and not self._indexed:
            await self.counts()  # builds the per-status indexes of an older store
        after_due, after_key = ("", "") if query.after is None else query.after
        reply = await self._run(
            "PAGE",
            "" if query.status is None else query.status.value,
            query.task or "",
            "" if query.task is None else "1",
            query.key_prefix,
            "" if query.due_from is None else repr(query.due_from),
            "" if query.due_before is None else repr(query.due_before),
            "" if query.after is None else repr(float(after_due)),
            after_key,
            query.limit,
            self._ro_flag,
            "" if query.series is None else ("1" if query.series else "0"),
        )
        rows = [
            (float(codec.text(reply[i + 1])), codec.read(reply[i], reply[i + 2]))
            for i in range(3, len(reply), 3)
        ]
        page = page_from(rows, query.limit)
        if page.next is None and codec.text(reply[0]) == "more":
            return Page(page.entries, (float(codec.text(reply[1])), codec.text(reply[2])))
        return page

    async def activity(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes of claims and finishes, oldest first.

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to 60
        """
        check_minutes(minutes)
        reply = await self._run("ACTIVITY")
        now = float(codec.text(reply[0]))
        ring: dict[str, str] = {
            codec.text(reply[i]): codec.text(reply[i + 1]) for i in range(1, len(reply), 2)
        }
        out = []
        for minute in minutes_window(now, minutes):
            p = f"{minute % RING}:"
            if ring.get(p + "m") != str(minute):
                out.append(Minute(minute * 60.0))
                continue

            c, d, f, r, ls, lm = (
                _ring_number(ring, p + n) for n in ("c", "d", "f", "r", "ls", "lm")
            )
            out.append(Minute(minute * 60.0, int(c), int(d), int(f), int(r), ls, lm))
        return out

    async def inspect(self, key: str) -> EntryDetail | None:
        """Everything the store knows of ``key`` (its row's fields), or None."""
        reply = await self._run("GET", key, self._ro_flag)
        if reply is None:
            return None
        raw, now = reply
        found = codec.read(key, raw, float(codec.text(now)))
        try:
            fields = codec.row(raw)
        except (ValueError, TypeError, RecursionError):
            fields = {}
        running = found.status is Status.RUNNING

        def num(name: str) -> float | None:
            value = fields.get(name)
            try:
                f = float(value) if isinstance(value, str | int | float) else None
            except ValueError:
                return None
            return f if f is not None and math.isfinite(f) else None

        token: Any = fields.get("tok")
        owner = fields.get("ow")
        max_deliveries = fields.get("md")
        payload = fields.get("p")
        return EntryDetail(
            entry=found,
            payload=payload if type(payload) is str else "",
            owner=owner if running and type(owner) is str else None,
            lease_until=num("lu") if running else None,
            token=int(token) if type(token) in (int, float) and math.isfinite(token) else 0,
            lease=num("l") or 0.0,
            max_deliveries=max_deliveries if type(max_deliveries) is int else 0,
            expires_at=num("x"),
        )


def _ring_number(ring: dict[str, str], name: str) -> float:
    """A field of the activity ring as a finite number (0 if absent or garbled)."""
    try:
        value = float(ring.get(name, "0"))
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0
