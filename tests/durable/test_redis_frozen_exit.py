"""A RedisStore whose server froze (SIGSTOP: the connection stays open, nothing
answers) while the Scheduler on it has runs in flight: leaving its ``async
with`` does not wait out the store's ``timeout`` or the leases; the outcomes it
cannot record are left to their lease.  Real server, real time."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import RedisStore, TaskRegistry, current_entry

from .redis_server import RedisServer

pytestmark = pytest.mark.anyio

#: Generous, yet well under the store's timeout and the lease (30 s each), which
#: bounded leaving before: each outcome gets 5 s after the grace, closing 5 s.
BOUND = 20.0


async def test_leaving_with_runs_in_flight_on_a_frozen_redis_is_bounded(
    real_time: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = TaskRegistry()
    started: list[str] = []
    all_started = anyio.Event()

    @tasks.task("slow")  # the store's lease (30 s)
    async def slow() -> None:
        started.append(current_entry().key)
        if len(started) == 3:
            all_started.set()
        await anyio.sleep_forever()

    keys = ["a", "b", "c"]
    with RedisServer(tmp_path) as server:
        assert server.proc is not None
        proc = server.proc
        frozen = False
        try:
            async with Scheduler(store=RedisStore(server.url), tasks=tasks, grace=0) as s:
                for key in keys:
                    await s.defer("slow", key=key)
                with anyio.fail_after(60):
                    await all_started.wait()
                proc.send_signal(signal.SIGSTOP)
                frozen = True
                left = time.monotonic()
            assert time.monotonic() - left < BOUND
        finally:
            if frozen:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
        assert any(
            "3 outcome(s) not recorded" in r.getMessage() and r.levelname == "WARNING"
            for r in caplog.records
        )
        # Nothing lost, nothing ran to its end (a release whose reply the
        # freeze held back may have landed).
        async with RedisStore(server.url) as again:
            for key in keys:
                e = await again.get(key)
                assert e is not None
                # Still leased, or released (the release undoes its delivery).
                assert (e.status, e.deliveries) in {(Status.RUNNING, 1), (Status.PENDING, 0)}
