"""Invariants under random interleavings of schedule, cancel, advance and shutdown."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from duetime import Handle, Scheduler, Status, current_run
from duetime.testing import VirtualTimeLoop

FINAL = {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED}

op = st.one_of(
    st.tuples(st.just("schedule"), st.integers(0, 5), st.sampled_from(["ok", "fail", "async"])),
    st.tuples(st.just("soon"), st.just(0), st.sampled_from(["ok", "fail", "async"])),
    st.tuples(st.just("cancel"), st.integers(0, 200), st.just("")),
    st.tuples(st.just("advance"), st.integers(0, 3), st.just("")),
)


def backends() -> list[tuple[str, dict[str, Any]]]:
    """Both backends, each on virtual time: every example runs on each."""
    return [
        ("trio", {"clock": MockClock(autojump_threshold=0)}),
        ("asyncio", {"loop_factory": VirtualTimeLoop}),
    ]


def virtual_backend() -> str:
    """The backend this code runs on; it must be on virtual time."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        assert isinstance(trio.lowlevel.current_clock(), MockClock)
        return "trio"
    assert isinstance(loop, VirtualTimeLoop)
    return "asyncio"


def run_on_both(func: Callable[..., Awaitable[str]], *args: Any) -> None:
    """Run ``func(*args)`` on each backend; check that each really ran."""
    ran = [
        anyio.run(func, *args, backend=backend, backend_options=options)
        for backend, options in backends()
    ]
    assert ran == ["trio", "asyncio"]


async def scenario(ops: list[tuple[str, int, str]], on_exit: str) -> str:
    fired: list[tuple[float, int]] = []
    handles: list[Handle[Any]] = []
    explicit = 0

    def record(h_id: list[int], kind: str) -> None:
        h = handles[h_id[0]]
        fired.append((h.when, h.id))
        if kind == "fail":
            raise ValueError("planned")

    async def arecord(h_id: list[int]) -> None:
        h = handles[h_id[0]]
        fired.append((h.when, h.id))
        await anyio.sleep(0.5)

    async with Scheduler(on_exit=on_exit, on_error=lambda h, e: None) as s:  # type: ignore[arg-type]
        for name, n, kind in ops:
            if name in ("schedule", "soon"):
                ref = [len(handles)]
                if name == "soon":
                    if kind == "async":
                        handles.append(s.call_soon(arecord, ref))
                    else:
                        handles.append(s.call_soon(record, ref, kind))
                elif kind == "async":
                    handles.append(s.call_later(n, arecord, ref))
                else:
                    handles.append(s.call_later(n, record, ref, kind))
            elif name == "cancel" and handles:
                explicit += handles[n % len(handles)].cancel()
            elif name == "advance":
                await anyio.sleep(n)
            stats = s.statistics()
            total = (
                stats.pending
                + stats.running
                + stats.completed
                + stats.failed
                + stats.cancelled
                + stats.expired
            )
            assert total == len(handles)
    # Every handle ended in exactly one final state, and the counters add up.
    assert all(h.status in FINAL for h in handles)
    stats = s.statistics()
    assert stats.pending == stats.running == 0
    counts = {status: sum(h.status is status for h in handles) for status in FINAL}
    assert counts[Status.COMPLETED] == stats.completed
    assert counts[Status.FAILED] == stats.failed
    assert counts[Status.CANCELLED] == stats.cancelled
    # Callbacks started in (when, seq) order.
    assert fired == sorted(fired)
    if on_exit == "drain":
        # Draining cancels nothing by itself: only explicit cancel() calls did.
        assert counts[Status.CANCELLED] == explicit
    return virtual_backend()


@pytest.mark.parametrize("on_exit", ["cancel", "drain"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40))
def test_random_interleavings(ops: list[tuple[str, int, str]], on_exit: str) -> None:
    run_on_both(scenario, ops, on_exit)


async def recurring_scenario(
    interval: int, durations: list[int], misfire: Any, overlap: Any, max_runs: int, stop_at: int
) -> str:
    runs: list[tuple[float, float, float]] = []  # (scheduled, started, ended)

    async with Scheduler() as s:
        t0 = anyio.current_time()

        async def job() -> None:
            info = current_run()
            started = anyio.current_time()
            await anyio.sleep(durations[len(runs) % len(durations)] / 2)
            runs.append((info.scheduled - t0, started - t0, anyio.current_time() - t0))

        r = s.call_every(
            interval,
            job,
            max_runs=max_runs,
            misfire=misfire,
            overlap=overlap,
        )
        with anyio.move_on_after(stop_at):
            await r
        r.cancel()
        total = await r
    assert r.done()
    assert r.status in (Status.COMPLETED, Status.CANCELLED)
    assert total == r.runs == r.started == len(runs)
    assert r.started <= max_runs
    for scheduled, started, _ended in runs:
        assert started >= scheduled  # never early
        assert scheduled / interval == int(scheduled / interval)  # on the grid
    by_start = sorted(runs, key=lambda run: run[1])
    scheduled_times = [sch for sch, _, _ in by_start]
    assert scheduled_times == sorted(scheduled_times)  # grid order is start order
    assert len(set(scheduled_times)) == len(scheduled_times)  # no grid point twice
    if overlap != "allow":
        for (_, _, ended), (_, started, _) in itertools.pairwise(by_start):
            assert started >= ended  # runs never overlap
    return virtual_backend()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    interval=st.integers(1, 3),
    durations=st.lists(st.integers(0, 12), min_size=1, max_size=5),
    misfire=st.sampled_from(["coalesce", "skip", "catch_up"]),
    overlap=st.sampled_from(["skip", "wait", "allow"]),
    max_runs=st.integers(1, 8),
    stop_at=st.integers(1, 40),
)
def test_recurring_invariants(
    interval: int, durations: list[int], misfire: str, overlap: str, max_runs: int, stop_at: int
) -> None:
    run_on_both(recurring_scenario, interval, durations, misfire, overlap, max_runs, stop_at)
