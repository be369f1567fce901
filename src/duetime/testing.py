"""Deterministic, virtual-time testing helpers for code built on duetime / anyio.

The pieces:

* :class:`VirtualTimeLoop` -- an :class:`asyncio.SelectorEventLoop` whose clock
  (``loop.time()`` and therefore :func:`anyio.current_time`) is virtual. When
  nothing is ready to run and the loop would only be waiting for a timer, the
  clock *autojumps* straight to that timer's due time instead of sleeping.
  Real I/O (sockets, the self-pipe used by ``call_soon_threadsafe`` and signal
  wake-ups) keeps working because the real selector is always polled first,
  and real work in flight (a TLS handshake, a peer's reply, a subprocess, a
  near signal timer, thread work) is waited for before the clock jumps.
  It is the asyncio counterpart of :class:`trio.testing.MockClock` with
  ``autojump_threshold=0``.
* :class:`VirtualWallClock` -- a ``Callable[[], datetime]`` (aware, UTC) that
  advances with the event loop's clock on both backends and can be *stepped*
  to simulate a system-clock change.
* :func:`virtual_time_backend`, :data:`virtual_time_backends` and
  :func:`anyio_backend_fixture` -- glue for anyio's pytest plugin, giving every
  test a fresh virtual clock on asyncio and on trio.
* :func:`advance_time` and :func:`hold_autojump` -- backend-neutral helpers to
  move virtual time by hand and to pause autojumping while work happens
  outside the event loop.
* :class:`MemoryStore` -- the in-process durable store, for tests of code that
  defers durable entries without a database.

Typical ``conftest.py``::

    from duetime.testing import anyio_backend_fixture

    anyio_backend = anyio_backend_fixture()

See ``docs/testing.md`` for the full guide, including the known limit around
worker threads.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, TypeVarTuple

import anyio

from ._virtual import VirtualTimeLoop, current_mock_clock, hold_autojump
from .durable import MemoryStore

# Documented, and shown, as duetime.testing's.
VirtualTimeLoop.__module__ = __name__
hold_autojump.__module__ = __name__

__all__ = [
    "DEFAULT_WALL_START",
    "MemoryStore",
    "VirtualTimeLoop",
    "VirtualWallClock",
    "advance_time",
    "anyio_backend_fixture",
    "hold_autojump",
    "virtual_time_backend",
    "virtual_time_backends",
]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

#: Wall-clock reading a :class:`VirtualWallClock` starts at when no ``start`` is
#: given. A fixed value keeps tests deterministic.
DEFAULT_WALL_START = datetime(2024, 1, 1, tzinfo=UTC)


class VirtualWallClock:
    """A wall clock (aware UTC :class:`~datetime.datetime`) that follows the loop clock.

    Calling the instance returns ``start + (anyio.current_time() - t0) + steps``,
    where ``t0`` is the event loop's time when the clock was created (if created
    inside a running event loop) or else when it was first called. On a virtual
    clock (``VirtualTimeLoop`` / ``MockClock``) it therefore advances exactly with
    virtual time, on both backends. Pass it wherever a
    ``wall_clock: Callable[[], datetime]`` is accepted.

    :meth:`step` and :meth:`set` simulate a system-clock step (NTP correction,
    DST-unaware admin, suspend/resume): the wall clock jumps, the loop clock
    does not.

    Args:
        start: the first reading; must be timezone-aware (it is converted to
            UTC). Defaults to :data:`DEFAULT_WALL_START` (2024-01-01T00:00Z) so
            tests are deterministic.
    """

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = DEFAULT_WALL_START
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("VirtualWallClock needs a timezone-aware start datetime")
        self._base = start.astimezone(UTC)
        self._listeners: list[weakref.WeakMethod[Callable[[], object]]] = []
        self._t0: float | None = None
        try:
            self._t0 = anyio.current_time()
        except Exception:  # not inside an event loop yet: anchor on first call
            self._t0 = None

    def _elapsed(self) -> float:
        now = anyio.current_time()
        if self._t0 is None:
            self._t0 = now
        return now - self._t0

    def __call__(self) -> datetime:
        """Return the current virtual wall-clock time (aware, UTC)."""
        return self._base + timedelta(seconds=self._elapsed())

    def step(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative steps go back in time)."""
        self._base += timedelta(seconds=seconds)
        self._announce()

    def set(self, when: datetime) -> None:
        """Step the wall clock so that it now reads ``when`` (timezone-aware)."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("VirtualWallClock.set() needs a timezone-aware datetime")
        self._base = when.astimezone(UTC) - timedelta(seconds=self._elapsed())
        self._announce()

    def add_step_listener(self, listener: Callable[[], object]) -> None:
        """Call the bound method ``listener()`` after each :meth:`step` or :meth:`set`.

        A Scheduler whose ``wall_clock`` offers this trusts the clock to follow
        the loop clock exactly between steps, so it re-checks its datetime
        entries only when told, instead of once a (virtual) second.  Listeners
        are held weakly.
        """
        self._listeners.append(weakref.WeakMethod(listener))

    def _announce(self) -> None:
        alive = []
        for ref in self._listeners:
            fn = ref()
            if fn is not None:
                alive.append(ref)
                fn()
        self._listeners = alive

    def __repr__(self) -> str:
        return f"<VirtualWallClock base={self._base.isoformat()} t0={self._t0!r}>"


# -- anyio pytest plugin glue ---------------------------------------------------------

#: Backend names to parametrize an ``anyio_backend`` fixture over; turn each
#: into a fresh fixture value with :func:`virtual_time_backend`. (Plain strings
#: on purpose: a ``trio.testing.MockClock`` must not be shared between tests, so
#: the options are built per test.)
virtual_time_backends: tuple[str, ...] = ("asyncio", "trio")


def virtual_time_backend(name: str) -> tuple[str, dict[str, Any]]:
    """Return a fresh ``anyio_backend`` value running ``name`` on virtual time.

    * ``"asyncio"`` -> ``("asyncio", {"loop_factory": VirtualTimeLoop})``
    * ``"trio"`` -> ``("trio", {"clock": MockClock(autojump_threshold=0)})``
      with a new :class:`trio.testing.MockClock` on every call (trio is
      imported lazily, so this module works without trio installed).
    """
    if name == "asyncio":
        return ("asyncio", {"loop_factory": VirtualTimeLoop})
    if name == "trio":
        from trio.testing import MockClock

        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    raise ValueError(f"unknown backend {name!r}; expected 'asyncio' or 'trio'")


def anyio_backend_fixture(backends: Iterable[str] = virtual_time_backends) -> Any:
    """Build an ``anyio_backend`` pytest fixture running every test on virtual time.

    Usage, in a ``conftest.py`` or test module::

        anyio_backend = anyio_backend_fixture()               # both backends
        anyio_backend = anyio_backend_fixture(["asyncio"])    # asyncio only

    The fixture is function-scoped and parametrized by backend name (test ids
    ``[asyncio]`` / ``[trio]``), and returns a fresh value per test.
    """
    import pytest

    names = list(backends)
    for name in names:
        virtual_time_backend(name)  # validate early (and fail early if trio is missing)

    def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
        return virtual_time_backend(request.param)

    return pytest.fixture(params=names, name="anyio_backend")(anyio_backend)


# -- backend-neutral helpers -------------------------------------------------------


def advance_time(seconds: float) -> None:
    """Move the running event loop's virtual clock forward by ``seconds``.

    Works on a :class:`VirtualTimeLoop` (asyncio) and on a trio
    ``MockClock``; raises :class:`RuntimeError` on a real clock. Timers that
    become due run at the next checkpoint (e.g. ``await anyio.sleep(0)``).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, VirtualTimeLoop):
        loop.advance(seconds)
        return
    clock = current_mock_clock()
    if clock is not None:
        clock.jump(seconds)
        return
    raise RuntimeError("advance_time() needs a VirtualTimeLoop or a trio MockClock")
