"""VirtualTimeLoop: an asyncio event loop whose clock jumps when only timers are left.

Also the two backend-neutral hooks the runtime needs on a virtual clock:
:func:`current_mock_clock` (is trio running on a ``MockClock``?) and
:func:`hold_autojump` (let virtual time flow at the real rate while threads
work).  :class:`VirtualTimeLoop` and :func:`hold_autojump` are public through
:mod:`duetime.testing`; see there and ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import math
import queue
import selectors
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

if TYPE_CHECKING:
    from selectors import SelectorKey

    from _typeshed import FileDescriptorLike


__all__ = ["VirtualTimeLoop", "current_mock_clock", "hold_autojump"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

#: How often (real seconds) the loop re-checks for outstanding thread work while
#: it lets virtual time flow in real time. Results from threads wake the loop
#: immediately through the self-pipe; this only bounds the time spent noticing
#: that the last piece of thread work has finished without producing a wake-up.
_THREAD_POLL_INTERVAL = 0.02

#: Thread name anyio gives to its asyncio worker threads (``anyio.to_thread``).
_ANYIO_WORKER_NAME = "AnyIO worker thread"

#: Default ``io_grace``: real seconds of I/O quiet a VirtualTimeLoop waits for
#: (letting time flow at the real rate), after a reader or writer changed or
#: became ready, before it jumps. Long enough for a loopback peer (a TLS
#: handshake step in a thread, 25 at once in CPython's test_ssl) on a loaded
#: 2-core machine, where 0.05 s was not; paid only by a test that did real I/O
#: and then waits for a timer.
_IO_GRACE = 0.1

#: A real interval timer (setitimer/alarm) due within this many real seconds is
#: waited for. Longer ones are taken for watchdogs (pytest-timeout arms one for
#: the whole test) and do not stop the clock from jumping.
_SIGNAL_TIMER_HORIZON = 0.5


def _real_timer_due_within(horizon: float) -> bool:
    """Whether ``ITIMER_REAL`` (setitimer/alarm) will deliver a signal within ``horizon`` s."""
    getitimer = getattr(signal, "getitimer", None)
    if getitimer is None:  # Windows
        return False
    remaining: float = getitimer(signal.ITIMER_REAL)[0]
    return 0 < remaining <= horizon


class _AutojumpSelector(selectors.BaseSelector):
    """Delegating selector whose ``select`` is routed through the loop."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        # A weak reference avoids a loop <-> selector reference cycle.
        self._loop_ref = weakref.ref(loop)

    def _touch(self, key: SelectorKey, events: int) -> SelectorKey:
        # A reader or writer that comes or goes is real I/O starting or
        # finishing: the loop gives its peer a moment before jumping.
        loop = self._loop_ref()
        if loop is not None:
            loop._note_io(key.fd, writing=bool(events & selectors.EVENT_WRITE))
        return key

    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> SelectorKey:
        return self._touch(self._real.register(fileobj, events, data), events)

    def unregister(self, fileobj: FileDescriptorLike) -> SelectorKey:
        return self._touch(self._real.unregister(fileobj), 0)

    def modify(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> SelectorKey:
        return self._touch(self._real.modify(fileobj, events, data), events)

    def select(self, timeout: float | None = None) -> list[tuple[SelectorKey, int]]:
        loop = self._loop_ref()
        if loop is None:  # pragma: no cover - loop already garbage collected
            return self._real.select(timeout)
        return loop._virtual_select(self._real, timeout)

    def close(self) -> None:
        self._real.close()

    def get_key(self, fileobj: FileDescriptorLike) -> SelectorKey:
        return self._real.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, SelectorKey]:
        return self._real.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop running on a virtual clock with autojump.

    ``time()`` returns virtual seconds, starting at ``start`` (default ``0.0``).
    Virtual time only moves forward, and only when the loop is idle (nothing
    ready to run, no I/O event pending) and waiting for a timer, or when
    :meth:`advance` is called. When idle, the loop decides, in this order:

    1. **Outside work in flight** -- the clock *flows at the real rate* (the
       loop really waits, in slices of a few real milliseconds, for I/O or the
       timer) while any of these is outstanding:

       * ``loop.run_in_executor`` calls (this includes ``asyncio.to_thread``
         and ``loop.getaddrinfo``, hence anyio's ``connect_tcp`` name
         resolution);
       * busy ``anyio.to_thread.run_sync`` worker threads of this loop
         (detected by inspecting anyio's worker threads);
       * a subprocess started through this loop that has not exited
         (``asyncio.create_subprocess_exec`` / ``_shell``, ``anyio.open_process``,
         ``anyio.run_process``);
       * a real interval timer (``signal.setitimer(ITIMER_REAL)`` or
         ``signal.alarm``) that will fire within 0.5 real seconds and before
         the timer the loop would jump to (a longer one, such as
         pytest-timeout's watchdog, is taken for a watchdog and ignored);
       * a writer registered on a socket or pipe: data the peer has not taken
         yet (only while ``io_grace > 0``);
       * any ``with loop.hold_autojump():`` block (or :func:`hold_autojump`).

    2. **Real I/O just happened** -- while a reader or writer other than the
       loop's own wake-up pipe was added, modified or removed, or became ready,
       less than ``io_grace`` real seconds ago, the clock also flows at the
       real rate: the loop waits for I/O until that much real time has passed
       without any. So a TLS handshake or a reply from a peer thread or
       process is waited for instead of being overtaken by a pending timeout,
       and a peer that never stops talking cannot freeze the clock.

    3. Otherwise the loop waits ``autojump_threshold`` real seconds for I/O
       (``0``, the default: it only polls) and then *jumps* the clock exactly
       to the timer's due time. A test that only sleeps and schedules never
       meets (1) or (2) and jumps at once.

    When no timer is pending at all the loop blocks on the real selector, so
    ``call_soon_threadsafe``, worker threads, signals and sockets wake it up as
    usual.

    Work the loop cannot see -- a ``threading.Thread`` you start yourself that
    reports back with ``call_soon_threadsafe``, a peer that stays silent for
    longer than ``io_grace`` -- does not stop autojumping: wrap the wait in
    :func:`hold_autojump`.

    Use with anyio::

        anyio.run(main, backend="asyncio",
                  backend_options={"loop_factory": VirtualTimeLoop})

    Options other than the defaults go through :func:`functools.partial`, e.g.
    ``loop_factory=partial(VirtualTimeLoop, autojump_threshold=0.05)``.

    Args:
        selector: the real selector to poll (default :class:`selectors.DefaultSelector`).
        start: the initial virtual time.
        autojump: when ``False`` virtual time only moves through :meth:`advance`
            (and while outside work is in flight it stays frozen too).
        autojump_threshold: real seconds the loop must have been idle before it
            jumps. ``0`` jumps at once; ``math.inf`` never jumps.
        io_grace: real seconds of I/O quiet the loop waits for after real I/O
            activity before it jumps (default 0.1). ``0`` turns off step 2 and
            the registered-writer rule of step 1.

    Raises:
        ValueError: ``start`` is not finite, or ``autojump_threshold`` or
            ``io_grace`` is negative or NaN (``io_grace`` also if infinite).
    """

    def __init__(
        self,
        selector: selectors.BaseSelector | None = None,
        *,
        start: float = 0.0,
        autojump: bool = True,
        autojump_threshold: float = 0.0,
        io_grace: float = _IO_GRACE,
    ) -> None:
        self._virtual_now = 0.0
        self._autojump = bool(autojump)
        self._autojump_threshold = 0.0
        self._io_grace = _IO_GRACE
        self._held = 0
        self._held_lock = threading.Lock()
        # Real (perf_counter) time of the last I/O activity; -inf: none yet.
        self._last_io = -math.inf
        # File descriptors with a writer registered: data the peer has not taken yet.
        self._writers: set[int] = set()
        self._wakeup_fd = -1
        # Subprocess transports started through this loop whose exit is not known yet.
        self._subprocesses: list[asyncio.SubprocessTransport] = []
        real = selector if selector is not None else selectors.DefaultSelector()
        super().__init__(_AutojumpSelector(real, self))
        # Registering the loop's own wake-up pipe is not I/O in flight.
        ssock = getattr(self, "_ssock", None)
        self._wakeup_fd = ssock.fileno() if ssock is not None else -1
        self._last_io = -math.inf
        self._base_resolution: float = self._clock_resolution
        try:
            if not math.isfinite(start):
                raise ValueError("start must be a finite number")
            self._set_now(float(start))
            self.autojump_threshold = autojump_threshold
            self.io_grace = io_grace
        except BaseException:
            self.close()  # a half-built loop would complain in __del__
            raise

    # -- clock -------------------------------------------------------------------

    def time(self) -> float:
        """Return the current virtual time."""
        return self._virtual_now

    def _set_now(self, now: float) -> None:
        self._virtual_now = now
        # asyncio runs the timers due before time() + _clock_resolution. Past
        # 2**24 s a float's spacing exceeds the monotonic clock's 1 ns
        # resolution, time() + resolution == time(), and a timer due exactly
        # now would never run (the loop would spin on select(0)).
        self._clock_resolution = max(self._base_resolution, math.ulp(now))

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (must be ``>= 0``).

        Timers that become due run on the next loop iteration, e.g. after an
        ``await anyio.sleep(0)``. Call it from the loop's thread (from another
        thread use ``loop.call_soon_threadsafe(loop.advance, seconds)``).

        Raises:
            ValueError: ``seconds`` is negative, NaN or infinite.
        """
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"time cannot go backwards (advance({seconds!r}))")
        if math.isinf(seconds):
            raise ValueError("cannot advance virtual time by an infinite amount")
        self._set_now(self._virtual_now + seconds)

    @property
    def autojump(self) -> bool:
        """Whether idle waits for timers jump the clock. Assignable."""
        return self._autojump

    @autojump.setter
    def autojump(self, value: bool) -> None:
        self._autojump = bool(value)

    @property
    def autojump_threshold(self) -> float:
        """Real seconds of idleness before the clock jumps. Assignable."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, value: float) -> None:
        value = float(value)
        if not value >= 0:
            raise ValueError("autojump_threshold must be >= 0")
        self._autojump_threshold = value

    @property
    def io_grace(self) -> float:
        """Real seconds of I/O quiet awaited before a jump after real I/O. Assignable."""
        return self._io_grace

    @io_grace.setter
    def io_grace(self, value: float) -> None:
        value = float(value)
        if not value >= 0 or math.isinf(value):
            raise ValueError("io_grace must be a finite number >= 0")
        self._io_grace = value

    # -- outstanding outside work --------------------------------------------------

    @contextmanager
    def hold_autojump(self) -> Iterator[None]:
        """Suspend autojumping for the duration of the block.

        While held, an idle loop waiting for a timer lets virtual time flow at
        the real rate (it really waits) instead of jumping. Blocks nest.
        """
        self._begin_outside_work()
        try:
            yield
        finally:
            self._end_outside_work()

    def _begin_outside_work(self) -> None:
        with self._held_lock:
            self._held += 1

    def _end_outside_work(self, _fut: object = None) -> None:
        with self._held_lock:
            self._held -= 1

    def _anyio_workers_busy(self) -> bool:
        for thread in threading.enumerate():
            if thread.name != _ANYIO_WORKER_NAME or getattr(thread, "loop", None) is not self:
                continue
            if getattr(thread, "stopping", True) or not thread.is_alive():
                continue
            work_queue = getattr(thread, "queue", None)
            if isinstance(work_queue, queue.Queue) and work_queue.unfinished_tasks > 0:
                return True
        return False

    def _subprocess_running(self) -> bool:
        if not self._subprocesses:
            return False
        self._subprocesses = [p for p in self._subprocesses if p.get_returncode() is None]
        return bool(self._subprocesses)

    def _outside_work_pending(self, target: float) -> bool:
        # A real signal timer counts only if it would fire before the virtual
        # timer we are about to jump to (and soon: see _SIGNAL_TIMER_HORIZON).
        # A registered writer means the peer has not taken our data yet: its
        # reading is real work in flight (io_grace == 0 turns this off too).
        return (
            self._held > 0
            or (bool(self._writers) and self._io_grace > 0)
            or _real_timer_due_within(min(_SIGNAL_TIMER_HORIZON, target - self._virtual_now))
            or self._subprocess_running()
            or self._anyio_workers_busy()
        )

    def run_in_executor(
        self,
        executor: Executor | None,
        func: Callable[[Unpack[_Ts]], _T],
        *args: *_Ts,
    ) -> asyncio.Future[_T]:
        future = super().run_in_executor(executor, func, *args)
        self._begin_outside_work()
        future.add_done_callback(self._end_outside_work)
        return future

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        # Starting the child is outside work; once started, the transport is
        # watched until its return code is known (see _subprocess_running).
        with self.hold_autojump():
            transport = await super()._make_subprocess_transport(  # type: ignore[misc]
                *args, **kwargs
            )
        self._subprocesses.append(transport)
        return transport

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        # Joining the executor's threads happens in a helper thread; on
        # Python >= 3.12 the wait is bounded by a timer that must not autojump.
        with self.hold_autojump():
            await super().shutdown_default_executor(*args, **kwargs)

    # -- the select hook --------------------------------------------------------

    def _note_io(self, fd: int, *, writing: bool) -> None:
        if fd == self._wakeup_fd:
            return
        self._last_io = time.perf_counter()
        if writing:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)

    def _note_events(self, events: list[tuple[SelectorKey, int]]) -> list[tuple[SelectorKey, int]]:
        for key, _mask in events:
            if key.fd != self._wakeup_fd:
                self._last_io = time.perf_counter()
                break
        return events

    def _next_timer_when(self, timeout: float) -> float:
        """Exact virtual due time of the timer ``_run_once`` is waiting for."""
        scheduled: list[asyncio.TimerHandle] | None = getattr(self, "_scheduled", None)
        if scheduled:
            head = scheduled[0]
            if not head.cancelled():
                # Using the handle's own due time (rather than now + timeout)
                # keeps times exact and ignores asyncio's 24 h select cap.
                return max(self._virtual_now, head.when())
        return self._virtual_now + timeout

    def _virtual_select(
        self, real: selectors.BaseSelector, timeout: float | None
    ) -> list[tuple[SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._note_events(real.select(0))
        if timeout is None or not self._autojump:
            # No timer at all (or autojump off, so no timer can come due by
            # itself): only I/O, a thread or a signal can wake us.
            return self._note_events(real.select(None))

        target = self._next_timer_when(timeout)
        if math.isinf(target):
            # The only timers are at +inf (asyncio.sleep(inf), which is what
            # anyio.sleep_forever() does): none can ever come due, so jumping
            # would poison the clock.  Wait for I/O, a thread or a signal.
            return self._note_events(real.select(None))
        # Real work is in flight (outside work, or real I/O less than io_grace
        # ago): let virtual time flow at the real rate, as in production, so a
        # pending timeout neither overtakes the peer nor waits for ever on a
        # peer that keeps talking.
        while self._outside_work_pending(target) or (
            self._last_io + self._io_grace > time.perf_counter()
        ):
            remaining = target - self._virtual_now
            if remaining <= 0:
                return []
            started = time.perf_counter()
            events = real.select(min(remaining, _THREAD_POLL_INTERVAL))
            elapsed = time.perf_counter() - started
            self._set_now(min(self._virtual_now + elapsed, target))
            if events:
                return self._note_events(events)

        threshold = self._autojump_threshold
        if math.isinf(threshold):
            return self._note_events(real.select(None))
        events = real.select(threshold)
        if events:
            return self._note_events(events)
        if target > self._virtual_now:
            self._set_now(target)
        return []


# -- backend-neutral hooks (the runtime uses them; duetime.testing exports hold_autojump)


def current_mock_clock() -> Any:
    """The running trio MockClock, or ``None`` (also when not on trio)."""
    try:
        import trio
        from trio.testing import MockClock
    except ImportError:
        return None
    try:
        clock = trio.lowlevel.current_clock()
    except RuntimeError:
        return None
    return clock if isinstance(clock, MockClock) else None


# Per-MockClock nesting state for hold_autojump(): (depth, saved rate, saved threshold).
_trio_holds: weakref.WeakKeyDictionary[Any, tuple[int, float, float]] = weakref.WeakKeyDictionary()


@contextmanager
def hold_autojump() -> Iterator[None]:
    """Suspend autojumping while work outside the event loop is in flight.

    Inside the block an idle loop waiting for a timer lets virtual time flow
    at the *real* rate instead of jumping, so e.g. ``fail_after(5)`` around a
    thread that reports back through ``call_soon_threadsafe`` only fires after
    five real seconds. On asyncio this uses :meth:`VirtualTimeLoop.hold_autojump`;
    on trio it sets the ``MockClock``'s ``rate`` to 1 and its
    ``autojump_threshold`` to infinity, restoring both afterwards. On a real
    clock it does nothing. Blocks nest.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, VirtualTimeLoop):
        with loop.hold_autojump():
            yield
        return
    clock = current_mock_clock()
    if clock is None:
        yield
        return
    depth, rate, threshold = _trio_holds.get(clock, (0, clock.rate, clock.autojump_threshold))
    if depth == 0:
        clock.autojump_threshold = math.inf
        clock.rate = 1.0
    _trio_holds[clock] = (depth + 1, rate, threshold)
    try:
        yield
    finally:
        depth, rate, threshold = _trio_holds[clock]
        if depth == 1:
            del _trio_holds[clock]
            clock.rate = rate
            clock.autojump_threshold = threshold
        else:
            _trio_holds[clock] = (depth - 1, rate, threshold)
