"""duetime.otel's counts when runs end together: many finishes recorded in one
store call, on a file store, with failures among them.  Both backends, real time."""

from __future__ import annotations

from pathlib import Path

import pytest

from duetime import Scheduler, SQLiteStore, Status
from duetime.durable import TaskRegistry
from tests.durable.waiting import wait_for
from tests.otel_support import Telemetry, telemetry

pytestmark = pytest.mark.anyio
__all__ = ["telemetry"]  # the fixture, imported for the tests below

N = 60


def _registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("t.ok")
    async def ok(i: int) -> int:
        return i

    @tasks.task("t.bad")
    async def bad(i: int) -> None:
        raise (KeyError if i % 2 else ValueError)(i)

    return tasks


@pytest.mark.usefixtures("real_time")  # a file store: its threads run in real time
async def test_runs_finished_in_batches_are_counted_exactly(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    tasks = _registry()
    async with Scheduler(
        store=SQLiteStore(tmp_path / "jobs.db"), tasks=tasks, max_concurrency=32
    ) as s:
        await s.defer_many("t.ok", [(i,) for i in range(N)], keys=[f"ok{i}" for i in range(N)])
        await s.defer_many("t.bad", [(i,) for i in range(10)], keys=[f"bad{i}" for i in range(10)])
        await s.defer("t.ok", -1, key="single")
        for i in range(N):
            await wait_for(s, f"ok{i}", Status.COMPLETED)
        for i in range(10):
            await wait_for(s, f"bad{i}", Status.FAILED)
        await wait_for(s, "single", Status.COMPLETED)
    ok = {"messaging__destination__name": "t.ok"}
    bad = {"messaging__destination__name": "t.bad"}
    assert telemetry.total("messaging.client.sent.messages", **ok) == N + 1
    assert telemetry.total("messaging.client.sent.messages", **bad) == 10
    assert telemetry.total("messaging.client.consumed.messages", **ok) == N + 1
    assert telemetry.total("messaging.client.consumed.messages", **bad) == 10
    assert telemetry.total("messaging.process.duration", **ok) == N + 1
    assert telemetry.total("duetime.entry.lateness") == N + 11
    # One point per error type, each with its runs.
    failed = {
        p.attributes["error.type"]: p.count
        for p in telemetry.points("messaging.process.duration")
        if "error.type" in p.attributes
    }
    assert failed == {"KeyError": 5, "ValueError": 5}
    assert telemetry.total("duetime.dead_letters", **bad) == 10
    assert telemetry.total("duetime.dead_letters", **ok) == 0
    assert telemetry.total("duetime.leases.lost") == 0
    assert len(telemetry.spans("process t.ok")) == N + 1
