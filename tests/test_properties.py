"""Invariants under random interleavings of schedule, cancel, advance and shutdown."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from duetime import Handle, Scheduler, Status
from duetime.testing import VirtualTimeLoop

FINAL = {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED}

op = st.one_of(
    st.tuples(st.just("schedule"), st.integers(0, 5), st.sampled_from(["ok", "fail", "async"])),
    st.tuples(st.just("soon"), st.just(0), st.sampled_from(["ok", "fail", "async"])),
    st.tuples(st.just("cancel"), st.integers(0, 200), st.just("")),
    st.tuples(st.just("advance"), st.integers(0, 3), st.just("")),
)


def backends() -> list[tuple[str, dict[str, Any]]]:
    result: list[tuple[str, dict[str, Any]]] = [
        ("trio", {"clock": MockClock(autojump_threshold=0)})
    ]
    if VirtualTimeLoop is not None:
        result.append(("asyncio", {"loop_factory": VirtualTimeLoop}))
    return result


async def scenario(ops: list[tuple[str, int, str]], on_exit: str) -> None:
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
            assert len(s) == stats.pending
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


@pytest.mark.parametrize("on_exit", ["cancel", "drain"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40))
def test_random_interleavings(ops: list[tuple[str, int, str]], on_exit: str) -> None:
    for backend, options in backends():
        anyio.run(scenario, ops, on_exit, backend=backend, backend_options=options)
