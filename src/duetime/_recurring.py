"""call_every: Recurring, a fixed-rate series with misfire and overlap policies."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator
from contextvars import Context
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio import Event, current_effective_deadline

from ._cron import Cron
from ._handle import FAILED, QUEUED, Extra, Handle
from ._options import make_extra
from ._retry import Retry
from ._util import callable_name, check_aware, to_delay, to_seconds
from ._vocab import MISFIRE, OVERLAP, Misfire, Overlap, Status

if TYPE_CHECKING:
    from ._host import Host

__all__ = ["Recurring"]

T = TypeVar("T")


#: How many finished runs ``async for run in recurring`` keeps for a slow consumer.
BUFFER_SIZE = 128

_INF = math.inf


def _loop_time(host: Host, value: object, what: str) -> float:
    """A delay, timedelta or aware datetime as a loop time (from now)."""
    if isinstance(value, datetime):
        check_aware(value)
        return host.to_loop_time(value)
    return host.clock() + to_delay(value, what)


class _CronPoints:
    """The fire times of a :class:`Cron` from a start, by index (0, 1, ...).

    The series only moves forward, so points are generated one after another
    and the ones behind the armed index are dropped.
    """

    __slots__ = ("_cron", "_k0", "_pts")

    def __init__(self, cron: Cron, start: datetime) -> None:
        self._cron = cron
        self._k0 = 0
        self._pts: list[datetime | None] = [cron.next_at_or_after(start)]

    def at(self, k: int) -> datetime | None:
        """Point ``k`` (None: the expression has no fire time left)."""
        pts = self._pts
        while self._k0 + len(pts) <= k:
            last = pts[-1]
            if last is None:
                return None
            pts.append(self._cron.next_after(last))
        return pts[k - self._k0]

    def drop_before(self, k: int) -> None:
        """Forget the points before ``k`` (the last one known is always kept)."""
        n = min(k - self._k0, len(self._pts) - 1)
        if n > 0:
            del self._pts[:n]
            self._k0 += n

    def first_at_or_after(self, k: int, when: datetime) -> int:
        """The first index ``>= k`` whose point is at or after ``when``."""
        while True:
            dt = self.at(k)
            if dt is None or dt >= when:
                return k
            k += 1
            self.drop_before(k - 1)


# A clock step or a suspend can leave a per-minute cron series this many points
# behind at most before the series counts the rest in one go (misfire applies).
_MAX_CRON_SCAN = 100_000


class Recurring(Generic[T]):
    """A callback run on a fixed-rate grid: run ``k`` is due at ``start + k * interval``.

    Made by :meth:`Scheduler.call_every`, never directly.  Only the next decision
    point of the series is on the scheduler's heap at any time; each run is an
    ordinary :class:`Handle` (its ``when`` is the grid time it stands for).  The
    grid is computed by multiplication, never by adding up intervals, and the
    time a run takes never moves it.

    Status: ``PENDING`` until the first run starts, ``RUNNING`` while the series
    is active (paused included), then ``COMPLETED`` (``max_runs`` reached,
    ``until`` or an inherited deadline passed) or ``CANCELLED``.  The status is
    final as soon as no further run will start; a run already in progress is not
    interrupted, and ``await recurring`` also waits for it.
    """

    def __init__(
        self,
        host: Host,
        interval: float | timedelta | Cron,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        start: float | timedelta | datetime = 0.0,
        max_runs: int | None = None,
        until: float | timedelta | datetime | None = None,
        jitter: float | timedelta = 0.0,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
        inherit_deadline: bool = False,
        context: Context | None = None,
    ) -> None:
        cron: Cron | None = None
        if isinstance(interval, Cron):
            cron = interval
            step = _INF  # the grid is the expression's, not arithmetic
        else:
            step = to_seconds(interval, "interval")
            if not step > 0:
                raise ValueError(f"interval must be > 0, got {interval!r}")
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        spread = to_seconds(jitter, "jitter")
        if cron is not None:
            if not 0 <= spread < cron.min_gap:
                raise ValueError(
                    f"jitter must be >= 0 and < the shortest gap of {cron!r}"
                    f" ({cron.min_gap} s), got {jitter!r}"
                )
        elif not 0 <= spread < step:
            raise ValueError(f"jitter must be >= 0 and < interval ({step}), got {jitter!r}")
        if max_runs is not None:
            if isinstance(max_runs, bool) or not isinstance(max_runs, int):
                raise TypeError(f"max_runs must be an int, got {max_runs!r}")
            if max_runs < 1:
                raise ValueError(f"max_runs must be >= 1, got {max_runs}")
        if misfire not in MISFIRE:
            raise ValueError(f"misfire must be one of {MISFIRE}, got {misfire!r}")
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {OVERLAP}, got {overlap!r}")
        # The per-run options, validated once, at the call site.
        template = make_extra(func, name, timeout, retry, in_thread, False, host.sync_in_thread)
        if not isinstance(inherit_deadline, bool):
            raise TypeError(f"inherit_deadline must be a bool, got {inherit_deadline!r}")
        if context is not None and not isinstance(context, Context):
            raise TypeError(f"context must be a contextvars.Context, got {context!r}")
        # Each run gets a copy of it, so runs never see each other's variables.
        template.context = context
        host.check_open()
        self._cron: _CronPoints | None = None
        if cron is not None:
            if isinstance(start, datetime):
                check_aware(start)
                first = start
            else:
                first = host.wall_clock() + timedelta(seconds=to_delay(start, "start"))
            self._cron = _CronPoints(cron, first)
        base = _loop_time(host, start, "start")
        end = _INF if until is None else _loop_time(host, until, "until")
        deadline = current_effective_deadline() if inherit_deadline else _INF

        self._s = host
        self._func = func
        self._args = args
        self._x = template
        self._interval = step
        self._trigger: float | Cron = step if cron is None else cron
        self._base = base
        self._jitter = spread
        self._max_runs = max_runs
        self._until = end
        self._deadline = deadline
        self._misfire = misfire
        self._overlap = overlap

        self._k = 0  # grid index of the next decision point
        self._tick: Handle[Any] | None = None
        self._tick_when: float | None = None
        self._status = Status.PENDING
        self._paused = False
        self._started = 0
        self._runs = 0
        self._missed = 0
        self._unreported_missed = 0  # shown to the next run as current_run().missed
        self._active: set[Handle[Any]] = set()
        self._waiting: float | None = None  # grid time of the run waiting (overlap="wait")
        self._catching_up = False  # misfire="catch_up": point _k is armed when a run ends
        self._closing = False  # no point left: end once the waiting run has started
        self._last: Handle[T] | None = None
        self._buffer: deque[Handle[T]] = deque()
        self._dropped = 0
        self._iterating = 0
        self._wakeup: Event | None = None
        self._done: Event | None = None
        host.add_exit_hook(self)
        self._arm(0)

    # ------------------------------------------------------------------ state

    @property
    def status(self) -> Status:
        """PENDING, RUNNING, then COMPLETED or CANCELLED (see the class docs)."""
        return self._status

    @property
    def name(self) -> str:
        """The ``name=`` given, else the callback's qualified name."""
        return self._x.name if self._x.name is not None else callable_name(self._func)

    @property
    def interval(self) -> float | None:
        """The grid spacing in seconds (None for a :class:`Cron` series)."""
        return None if self._cron is not None else self._interval

    @property
    def trigger(self) -> float | Cron:
        """What the series follows: the interval in seconds, or the :class:`Cron`."""
        return self._trigger

    @property
    def runs(self) -> int:
        """Runs that finished, whatever their outcome."""
        return self._runs

    @property
    def started(self) -> int:
        """Runs that were started (what ``max_runs`` counts)."""
        return self._started

    @property
    def missed(self) -> int:
        """Grid points that passed without a run of their own (misfire or overlap)."""
        return self._missed

    @property
    def dropped(self) -> int:
        """Finished runs that ``async for`` lost because its buffer was full."""
        return self._dropped

    @property
    def next_at(self) -> float | None:
        """The loop time of the next due point, or None if paused or ended."""
        return self._tick_when

    @property
    def last(self) -> Handle[T] | None:
        """The Handle of the latest run started, or None before the first."""
        return self._last

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` is in effect."""
        return self._paused

    def done(self) -> bool:
        """Whether the series is over and its last run has finished."""
        return self._status in (Status.COMPLETED, Status.CANCELLED) and not self._active

    # ------------------------------------------------------------------ control

    def cancel(self) -> bool:
        """Stop the series: no further run starts, and a waiting run is dropped.

        A run already in progress is not interrupted (cancel ``recurring.last``
        for that).  Safe to call twice.

        :return: True if this call stopped the series, False if it had ended
        """
        if self._status in (Status.COMPLETED, Status.CANCELLED):
            return False
        self._end(Status.CANCELLED)
        return True

    def pause(self) -> None:
        """Start no runs until :meth:`resume`.  Grid points passed meanwhile are
        not runs, so they are not counted as missed.  A waiting run is dropped."""
        if self._paused or self._status in (Status.COMPLETED, Status.CANCELLED):
            return
        self._paused = True
        self._waiting = None
        self._catching_up = False
        self._closing = False
        self._disarm()
        self._drop_unstarted()

    def resume(self) -> None:
        """Continue on the original grid, at its next point not in the past."""
        if not self._paused:
            return
        self._paused = False
        if self._status in (Status.COMPLETED, Status.CANCELLED):
            return
        if self._cron is not None:
            k = self._cron.first_at_or_after(self._k, self._s.wall_clock())
        else:
            now = self._s.clock()
            k = max(self._k, math.ceil((now - self._base) / self._interval))
        self._arm(k)

    # ------------------------------------------------------------------ the grid

    def _grid(self, k: int) -> float:
        """The loop time of grid point ``k`` (inf: there is none)."""
        pts = self._cron
        if pts is None:
            return self._base + k * self._interval
        dt = pts.at(k)
        if dt is None:
            return _INF
        # Not clamped to now: a missed point keeps its place in the past.
        s = self._s
        return s.clock() + (dt - s.wall_clock()).total_seconds()

    def _latest_due(self, k: int) -> int:
        """The latest grid point due by now, from ``k`` (on time: ``k`` itself)."""
        pts = self._cron
        if pts is None:
            return max(k, math.floor((self._s.clock() - self._base) / self._interval))
        wall_now = self._s.wall_clock()
        m = k
        for _ in range(_MAX_CRON_SCAN):
            nxt = pts.at(m + 1)
            if nxt is None or nxt > wall_now:
                break
            m += 1
        return m

    def _arm(self, k: int) -> None:
        """Put decision point ``k`` on the heap, or end the series if there is none."""
        when = self._grid(k)
        if self._jitter:
            # Before the end checks: a jittered run past `until` or the deadline
            # is not created at all (rather than created and expired).
            when += random.uniform(0.0, self._jitter)
        waiting = self._waiting is not None
        runs_left = self._max_runs is None or self._started + waiting < self._max_runs
        if not (runs_left and when <= self._until and when < self._deadline):
            if waiting:
                # A run due before the end still waits (overlap="wait"): the series
                # ends once it has started.
                self._closing = True
            else:
                self._end(Status.COMPLETED)
            return
        self._k = k
        self._tick_when = when
        wall = None
        if self._cron is not None:
            self._cron.drop_before(k)
            wall = self._cron.at(k)
            if wall is not None and self._jitter:
                wall += timedelta(seconds=when - self._grid(k))
        # A cron point is a wall-clock entry: never early under a clock step.
        self._tick = self._s.schedule_internal(when, self._on_tick, wall)

    def _disarm(self) -> None:
        tick = self._tick
        self._tick = None
        self._tick_when = None
        if tick is not None:
            self._s.cancel_internal(tick)

    def _on_tick(self) -> None:
        """A grid point is due: apply the misfire, then the overlap policy."""
        due = self._tick_when  # grid point k, plus its jitter
        assert due is not None
        self._tick = None
        self._tick_when = None
        s = self._s
        if s.closed:
            self._end(Status.CANCELLED)
            return
        k = self._k
        # The latest grid point due by now.  On time it is k (jitter < interval).
        m = self._latest_due(k)
        if self._until < _INF:
            if self._cron is None:
                m = min(m, max(k, math.floor((self._until - self._base) / self._interval)))
            else:
                while m > k and self._grid(m) > self._until:
                    m -= 1
        nxt = m + 1
        if m == k:
            self._due(due)
        elif self._misfire == "coalesce":
            # One run now stands for point m; k..m-1 are missed.
            self._miss(m - k)
            self._due(self._grid(m))
        elif self._misfire == "skip":
            self._miss(m - k + 1)
        else:
            # catch_up: run k now; k+1.. follow one after another, each once the
            # previous run has ended, so they never overlap each other.
            self._due(self._grid(k))
            nxt = k + 1
            if self._active:
                self._k = nxt
                self._catching_up = True
                return
        self._arm(nxt)

    def _miss(self, n: int) -> None:
        self._missed += n
        self._unreported_missed += n

    def _due(self, when: float) -> None:
        """A run is due (its grid time ``when``): start it, or apply ``overlap``."""
        if self._active and self._overlap != "allow":
            if self._overlap == "wait" and self._waiting is None:
                self._waiting = when
            else:
                self._miss(1)
            return
        self._start_run(when)

    def _start_run(self, when: float) -> None:
        t = self._x
        x = Extra()
        x.name = t.name
        x.timeout = t.timeout
        x.retry = t.retry
        x.in_thread = t.in_thread
        if t.context is not None:
            x.context = t.context.copy()
        if self._deadline < _INF:
            x.deadline = self._deadline
        x.series = self
        x.missed = self._unreported_missed
        self._unreported_missed = 0
        h: Handle[T] = Handle(when, self._func, self._args, self._s, x)
        self._s.push(h)
        self._started += 1
        self._last = h
        self._active.add(h)
        if self._status == Status.PENDING:
            self._status = Status.RUNNING
        h.add_done_callback(self._on_run_done)

    def _on_run_done(self, h: Handle[Any]) -> None:
        self._active.discard(h)
        x = h._x
        if x is not None and not x.ran:
            # Ended before it started (cancelled while due, or expired): not a
            # run, and it no longer counts toward max_runs.
            self._started -= 1
            if self._status in (Status.COMPLETED, Status.CANCELLED) and not self._active:
                self._finish()
            return
        self._runs += 1
        if h._st == FAILED:
            # This done-callback sees every run, but it is ours: the failure is
            # the program's to observe (r.last, async for), and is reported if
            # nobody does before the run's handle goes or the block exits.
            self._s.hold_unobserved(h, h._result)
        buf = self._buffer
        if len(buf) >= BUFFER_SIZE:
            buf.popleft()
            self._dropped += 1
        buf.append(h)
        self._wake()
        if self._status in (Status.COMPLETED, Status.CANCELLED):
            if not self._active:
                self._finish()
            return
        if self._waiting is not None and not self._paused:
            when = self._waiting
            self._waiting = None
            if self._s.closed:
                self._end(Status.CANCELLED)
                return
            self._start_run(when)
            if self._closing:
                self._end(Status.COMPLETED)
        elif self._catching_up and not self._paused:
            self._catching_up = False
            self._arm(self._k)

    def _drop_unstarted(self) -> None:
        """Withdraw runs not running now: created but not started yet (due,
        waiting for a limiter), or waiting between retry attempts.

        The first never ran, so they count neither as started nor as runs; a
        run waiting for its next attempt did start, so it stays counted, and
        ends CANCELLED (its done-callback counts it as a run).
        """
        for h in [h for h in self._active if h._st <= QUEUED]:
            x = h._x
            if x is not None and x.ran:
                h.cancel()
                continue
            self._active.discard(h)
            h.remove_done_callback(self._on_run_done)
            h.cancel()
            self._started -= 1

    def _end(self, status: Status) -> None:
        self._status = status
        self._waiting = None
        self._catching_up = False
        self._closing = False
        self._disarm()
        if status == Status.CANCELLED:
            self._drop_unstarted()
        self._s.discard_exit_hook(self)
        if not self._active:
            self._finish()

    def _finish(self) -> None:
        if self._done is not None:
            self._done.set()
        self._wake()

    def _wake(self) -> None:
        ev = self._wakeup
        if ev is not None:
            self._wakeup = None
            ev.set()

    # ------------------------------------------------------------------ awaiting

    async def wait(self) -> int:
        """Wait until the series is over and its last run finished; return ``runs``."""
        if not self.done():
            if self._done is None:
                self._done = Event()
            await self._done.wait()
        return self._runs

    def __await__(self) -> Generator[Any, None, int]:
        return self.wait().__await__()

    def __aiter__(self) -> AsyncIterator[Handle[T]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Handle[T]]:
        self._iterating += 1
        try:
            while True:
                if self._buffer:
                    h = self._buffer.popleft()
                    yield h
                    continue
                if self.done():
                    return
                if self._wakeup is None:
                    self._wakeup = Event()
                await self._wakeup.wait()
        finally:
            self._iterating -= 1

    def __repr__(self) -> str:
        return (
            f"<Recurring name={self.name!r} status={self._status} every={self._trigger}"
            f" runs={self._runs} missed={self._missed}>"
        )
