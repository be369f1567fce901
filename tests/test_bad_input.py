"""Every bad input raises TypeError or ValueError at the call site."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from duetime import Retry, Scheduler

pytestmark = pytest.mark.anyio


def noop() -> None:
    pass


async def anoop() -> None:
    pass


BAD_DELAYS: list[tuple[Any, type[Exception]]] = [
    (-1, ValueError),
    (-0.001, ValueError),
    (math.nan, ValueError),
    (math.inf, ValueError),
    (timedelta(seconds=-1), ValueError),
    ("1", TypeError),
    (None, TypeError),
    (True, TypeError),
]


@pytest.mark.parametrize(("delay", "exc"), BAD_DELAYS)
async def test_bad_delay(delay: Any, exc: type[Exception]) -> None:
    async with Scheduler() as s:
        with pytest.raises(exc):
            s.call_later(delay, noop)
        assert s.statistics().pending == 0


@pytest.mark.parametrize(
    ("when", "exc"),
    [
        (math.nan, ValueError),
        (math.inf, ValueError),
        (datetime(2030, 1, 1), ValueError),  # naive
        ("tomorrow", TypeError),
        (False, TypeError),
    ],
)
async def test_bad_call_at(when: Any, exc: type[Exception]) -> None:
    async with Scheduler() as s:
        with pytest.raises(exc):
            s.call_at(when, noop)
        assert s.statistics().pending == 0


async def test_naive_datetime_message() -> None:
    async with Scheduler() as s:
        with pytest.raises(ValueError, match="naive"):
            s.call_at(datetime(2030, 1, 1), noop)


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
async def test_not_callable(method: str) -> None:
    async with Scheduler() as s:
        args: tuple[Any, ...] = () if method == "call_soon" else (anyio.current_time() + 1,)
        with pytest.raises(TypeError, match="callable"):
            getattr(s, method)(*args, 42)
        with pytest.raises(TypeError, match="callable"):
            getattr(s, method)(*args, "noop", name="x")


@pytest.mark.parametrize(
    ("opts", "exc"),
    [
        ({"timeout": 1.0}, ValueError),  # inline sync: cannot be enforced
        ({"timeout": 0, "in_thread": True}, ValueError),
        ({"timeout": -1, "in_thread": True}, ValueError),
        ({"timeout": math.nan, "in_thread": True}, ValueError),
        ({"timeout": "1", "in_thread": True}, TypeError),
        ({"retry": 3}, TypeError),
        ({"name": 42}, TypeError),
        ({"in_thread": "yes"}, TypeError),
        ({"inherit_deadline": 1}, TypeError),
    ],
)
async def test_bad_options(opts: dict[str, Any], exc: type[Exception]) -> None:
    async with Scheduler() as s:
        with pytest.raises(exc):
            s.call_later(1, noop, **opts)
        assert s.statistics().pending == 0


async def test_timeout_allowed_where_enforceable() -> None:
    async with Scheduler() as s:
        s.call_later(1, anoop, timeout=1).cancel()
        s.call_later(1, noop, timeout=1, in_thread=True).cancel()
    async with Scheduler(sync_in_thread=True) as s:
        s.call_later(1, noop, timeout=1).cancel()


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"max_concurrency": 0}, ValueError),
        ({"max_concurrency": 1.5}, TypeError),
        ({"on_exit": "wait"}, ValueError),
        ({"grace": -1}, ValueError),
        ({"grace": math.nan}, ValueError),
        ({"on_error": "log"}, TypeError),
        ({"wall_clock": 5}, TypeError),
    ],
)
def test_bad_constructor_arguments(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Scheduler(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 1.5}, TypeError),
        ({"backoff": -1}, ValueError),
        ({"factor": 0.5}, ValueError),
        ({"max_backoff": 0.01, "backoff": 1}, ValueError),
        ({"jitter": 1.0}, ValueError),
        ({"jitter": math.nan}, ValueError),
        ({"on": (int,)}, TypeError),
        ({"on": ()}, TypeError),
    ],
)
def test_bad_retry(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        Retry(**kwargs)


def test_retry_pause_grows_and_is_capped() -> None:
    r = Retry(attempts=10, backoff=1, factor=3, max_backoff=20, jitter=0)
    assert [r.pause(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    r2 = Retry(backoff=1, factor=1, jitter=0.5)
    assert all(0.5 <= r2.pause(1) <= 1.5 for _ in range(100))
    assert Retry(on=KeyError).on == (KeyError,)  # type: ignore[arg-type]
