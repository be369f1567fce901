"""Cron: a calendar trigger ("0 2 * * *" in a time zone) for recurring series.

The expression is parsed and evaluated by **cronsim** (the ``cron`` extra:
``pip install 'duetime[cron]'``); duetime does not parse cron itself.  cronsim
rather than croniter, because:

- **DST.** cronsim implements Debian cron's documented DST rules, which is the
  contract here (see "Semantics" below).  croniter 7.0 runs a fixed-time job
  twice on a fall-back day (``30 2 * * *`` in Europe/Paris fires at 02:30+02:00
  *and* 02:30+01:00 on 2024-10-27), and its tracker has a long history of DST
  bugs (taichino/croniter #48, #82, #90, #147; pallets-eco/croniter #25).
  aiocron switched from croniter to cronsim for this reason (gawel/aiocron #39).
- **Maintenance and weight.** cronsim is small, pure Python, typed
  (``py.typed``, clean under ``mypy --strict``) and has no dependencies;
  croniter pulls in python-dateutil, was declared abandoned in 2024-2025 and
  has since moved to pallets-eco.  cronsim is maintained by Healthchecks.io,
  which runs it in production for cron monitoring.

Semantics (wall-clock, in ``tz``; Debian cron(8), "Notes"):

- A **fixed-time** expression (neither the minute nor the hour field starts
  with ``*``; ``30 2 * * *``, ``0 9-17 * * MON-FRI``): a time inside a skipped
  hour runs once, at the first instant after the gap (02:30 in Europe/Paris on
  the spring-forward day runs at 03:00+02:00); a time inside a repeated hour
  runs once, in its first pass (02:30+02:00 on the fall-back day, not again at
  02:30+01:00).
- A **wildcard** expression (the minute or the hour field starts with ``*``:
  ``*/15 * * * *``, ``0 * * * *``, ``@hourly``) follows real elapsed time, as
  Debian's "jobs which are specified with wildcards are run based on the new
  time immediately": nothing is caught up in a skipped hour, and the repeated
  hour runs in both passes (``*/15`` fires at 02:00, 02:15, 02:30, 02:45 in
  +02:00 and again in +01:00: every 15 real minutes, 8 fires in the two passes).

Only standard five-field expressions (and the ``@yearly``, ``@annually``,
``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly`` nicknames) are
accepted: cronsim's optional seconds field opts out of the Debian DST rules.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from cronsim import CronSim

__all__ = ["Cron"]

_EXTRA_HINT: Final = "duetime.Cron needs the 'cron' extra: pip install 'duetime[cron]'"
_FIELDS: Final = ("minute", "hour", "day-of-month", "month", "day-of-week")
_NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_SPEC_KIND: Final = "cron"
_MICROSECOND: Final = timedelta(microseconds=1)
# Cron's resolution: two distinct fires are at least a minute apart.
_MINUTE: Final = 60.0
# The span searched for a zone's UTC-offset changes (see _zone_transitions).
_SCAN_FROM: Final = datetime(2000, 1, 1, 12, tzinfo=UTC)
_SCAN_TO: Final = datetime(2101, 1, 1, 12, tzinfo=UTC)


def _cronsim() -> type[CronSim]:
    """Import the parser on first use, so that ``import duetime`` never needs it."""
    try:
        from cronsim import CronSim
    except ImportError as exc:
        raise ImportError(_EXTRA_HINT) from exc
    return CronSim


def _zone(tz: object) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        if tz.key is None:
            raise ValueError(
                f"tz {tz!r} has no IANA key (loaded from a file?): pass a zone name "
                "such as 'Europe/Paris', so the schedule can be compared and stored"
            )
        return tz
    if not isinstance(tz, str):
        raise TypeError(
            f"tz must be an IANA zone name (str) or a zoneinfo.ZoneInfo, not {type(tz).__name__}"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        # ZoneInfoNotFoundError is a KeyError; a malformed key is a ValueError.
        raise ValueError(
            f"unknown time zone {tz!r}: expected an IANA name such as 'Europe/Paris'"
        ) from exc


def _fields(expr: object) -> tuple[str, ...]:
    """Check ``expr`` and return its five fields (nicknames expanded).

    :raises TypeError: if ``expr`` is not a str
    :raises ValueError: if it is not a valid five-field expression; the message
        quotes the bad field
    """
    if not isinstance(expr, str):
        raise TypeError(f"cron expression must be a str, not {type(expr).__name__}")
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in _NICKNAMES:
            raise ValueError(
                f"invalid cron expression {expr!r}: unknown nickname {text!r} "
                f"(expected one of {', '.join(_NICKNAMES)})"
            )
        text = _NICKNAMES[text.lower()]
    parts = tuple(text.split())
    if len(parts) != 5:
        raise ValueError(
            f"invalid cron expression {expr!r}: expected 5 fields "
            f"({' '.join(_FIELDS)}), got {len(parts)}"
        )
    cronsim = _cronsim()
    from cronsim import CronSimError

    try:
        cronsim(" ".join(parts), datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        # cronsim says "Bad minute"; name the field and quote its text.
        message = str(exc)
        for index, name in enumerate(_FIELDS):
            if message.lower() == f"bad {name}":
                raise ValueError(
                    f"invalid cron expression {expr!r}: bad {name} field {parts[index]!r}"
                ) from None
        raise ValueError(f"invalid cron expression {expr!r}: {message}") from None
    return parts


def _next_after(expr: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire of ``expr`` in ``zone`` strictly after ``after`` (aware, UTC)."""
    cronsim = _cronsim()
    try:
        it = cronsim(expr, after.astimezone(zone))
        while True:
            # cronsim walks naive wall time for fixed-time expressions, so from
            # the second pass of a repeated hour it can yield the first pass's
            # instant, which is in the past: step on until strictly after.
            fire = next(it).astimezone(UTC)
            if fire > after:
                return fire
    except (StopIteration, OverflowError):
        # No match for 50 years (cronsim gives up), or past datetime.max.
        return None


@functools.lru_cache(maxsize=64)
def _zone_transitions(zone: ZoneInfo) -> tuple[datetime, ...]:
    """One UTC instant for each kind of UTC-offset change ``zone`` has in 2000-2100.

    A kind is (local wall time of the change, offset before, offset after);
    around two changes of one kind, an expression whose day fields are ``*``
    fires in the same pattern.  The zone is sampled daily and each change is
    bisected to the second; a zone without changes gives ``()``.
    """
    kinds: dict[tuple[int, timedelta | None, timedelta | None], datetime] = {}
    step = 86400
    t = int(_SCAN_FROM.timestamp())
    end = int(_SCAN_TO.timestamp())

    def offset(ts: int) -> timedelta | None:
        return datetime.fromtimestamp(ts, zone).utcoffset()

    before = offset(t)
    while t < end:
        after = offset(t + step)
        if after != before:
            lo, hi = t, t + step
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == before:
                    lo = mid
                else:
                    hi = mid
            assert before is not None
            wall = int(hi + before.total_seconds()) % 86400
            kinds.setdefault((wall, before, after), datetime.fromtimestamp(hi, UTC))
            before = after
        t += step
    return tuple(kinds.values())


class Cron:
    """A cron expression in a time zone: a calendar trigger for ``call_every``.

    ``Cron("0 2 * * *", tz="Europe/Paris")`` fires every day at 02:00 Paris
    time.  Fire times are wall-clock times in ``tz`` with Debian cron's DST
    rules (see the module docstring and the periodic-jobs guide); they are
    returned as aware UTC datetimes.  Instances are immutable, hashable, and
    round-trip through :meth:`to_spec` / :meth:`from_spec`.

    :param expr: a five-field cron expression (minute, hour, day of month,
        month, day of week) or a nickname (``@daily``, ``@hourly``, ...)
    :param tz: an IANA zone name or a :class:`zoneinfo.ZoneInfo`; default UTC
    :raises ImportError: if the ``cron`` extra (cronsim) is not installed
    :raises TypeError: if ``expr`` is not a str, or ``tz`` is neither a str nor
        a ZoneInfo
    :raises ValueError: if ``expr`` is invalid (the message quotes the bad
        field), or ``tz`` is not a known zone
    """

    __slots__ = ("_expr", "_min_gap", "_parts", "_tz")

    _expr: str
    _parts: str
    _tz: ZoneInfo
    _min_gap: float | None

    def __init__(self, expr: str, tz: str | ZoneInfo = "UTC") -> None:
        _cronsim()  # the missing extra first: it explains every other failure
        parts = _fields(expr)
        # Immutable (it is hashed and stored): slots are set past __setattr__.
        object.__setattr__(self, "_tz", _zone(tz))
        object.__setattr__(self, "_expr", " ".join(expr.split()))
        object.__setattr__(self, "_parts", " ".join(parts))
        object.__setattr__(self, "_min_gap", None)

    @property
    def expr(self) -> str:
        """The expression as given, with runs of whitespace collapsed."""
        return self._expr

    @property
    def tz(self) -> ZoneInfo:
        """The zone whose wall clock the expression is read in."""
        return self._tz

    def next_after(self, t: datetime) -> datetime | None:
        """The first fire time strictly after ``t``.

        This gives the next run of a series from the previous run's scheduled
        time.

        :param t: an aware datetime, in any zone
        :returns: an aware UTC datetime, or None if the expression has no fire
            time left (none within 50 years, or past ``datetime.max``): the
            series ends
        :raises TypeError: if ``t`` is not a datetime
        :raises ValueError: if ``t`` is naive
        """
        return _next_after(self._parts, self._tz, _aware(t))

    def next_at_or_after(self, t: datetime) -> datetime | None:
        """The first fire time at or after ``t``: the first run of a series.

        A series starting at ``start`` first runs at
        ``cron.next_at_or_after(start)``, which is ``start`` itself only if
        ``start`` is a fire time; never an immediate run otherwise.

        :param t: an aware datetime, in any zone
        :returns: an aware UTC datetime, or None as for :meth:`next_after`
        :raises TypeError: if ``t`` is not a datetime
        :raises ValueError: if ``t`` is naive
        """
        t = _aware(t)
        try:
            before = t.astimezone(UTC) - _MICROSECOND
        except OverflowError:
            return None
        # Fire times are whole seconds, so "after t - 1 us" is "at or after t".
        return _next_after(self._parts, self._tz, before)

    @property
    def min_gap(self) -> float:
        """The shortest gap, in real seconds, between two consecutive fires.

        ``jitter`` must be less than this.  It is computed once, on first use,
        as if the day-of-month, month and day-of-week fields were ``*``, which
        can only add fire times and so only shorten gaps: the value is exact
        for such expressions and a lower bound for the others (``0 2 * * MON``
        gives 23 h in Europe/Paris, not 7 days).  The wall-clock gaps come from
        one day in UTC; then, for each kind of UTC-offset change the zone has
        in 2000-2100 (one or two for most zones), the real gaps over the two
        days either side of one such change, which is where DST shortens
        them: ``0 2 * * *`` in Europe/Paris is 23 h (03:00+02:00 on the
        spring-forward day to 02:00+02:00 the next), ``59 1,2 * * *`` is 60 s
        (01:59+01:00 to the skipped 02:59, run at 03:00+02:00).  It is never
        less than 60 s, cron's resolution.
        """
        gap = self._min_gap
        if gap is None:
            gap = self._compute_min_gap()
            object.__setattr__(self, "_min_gap", gap)
        return gap

    def _compute_min_gap(self) -> float:
        minute, hour = self._parts.split()[:2]
        every_day = f"{minute} {hour} * * *"
        utc = ZoneInfo("UTC")
        gap = float("inf")
        day = datetime(2001, 1, 1, tzinfo=UTC)
        prev = _next_after(every_day, utc, day - _MICROSECOND)
        assert prev is not None  # a daily expression always fires
        while prev <= day + timedelta(days=1) and gap > _MINUTE:
            fire = _next_after(every_day, utc, prev)
            assert fire is not None
            gap = min(gap, (fire - prev).total_seconds())
            prev = fire
        for change in _zone_transitions(self._tz) if gap > _MINUTE else ():
            end = change + timedelta(days=2)
            prev = _next_after(every_day, self._tz, change - timedelta(days=2))
            while prev is not None and prev <= end:
                fire = _next_after(every_day, self._tz, prev)
                if fire is None:
                    break
                gap = min(gap, (fire - prev).total_seconds())
                prev = fire
        return max(gap, _MINUTE)

    def to_spec(self) -> dict[str, Any]:
        """A JSON-able dict that :meth:`from_spec` turns back into an equal Cron."""
        key = self._tz.key
        return {"kind": _SPEC_KIND, "expr": self._expr, "tz": key}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Cron:
        """The Cron that :meth:`to_spec` described.

        :raises TypeError: if ``spec`` is not a dict, or a value has the wrong type
        :raises ValueError: if ``spec`` is not a cron spec, or its expression or
            zone is invalid
        """
        if not isinstance(spec, dict):
            raise TypeError(f"a cron spec must be a dict, not {type(spec).__name__}")
        if spec.get("kind") != _SPEC_KIND or set(spec) != {"kind", "expr", "tz"}:
            raise ValueError(
                f"not a cron spec: {spec!r} (expected keys 'kind' = 'cron', 'expr', 'tz')"
            )
        return cls(spec["expr"], spec["tz"])

    def __repr__(self) -> str:
        return f"Cron({self._expr!r}, tz={self._tz.key!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Cron):
            return NotImplemented
        return (self._expr, self._tz.key) == (other._expr, other._tz.key)

    def __hash__(self) -> int:
        return hash((Cron, self._expr, self._tz.key))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Cron is immutable: cannot set {name!r}")


def _aware(t: object) -> datetime:
    if not isinstance(t, datetime):
        raise TypeError(f"expected an aware datetime, not {type(t).__name__}")
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: pass an aware datetime (e.g. tzinfo=UTC)")
    return t
