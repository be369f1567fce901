"""Aborting a series whose points may overlap (``overlap="allow"``): each point
runs as its own entry keyed ``"{key}@{k}"``; the abort stops the series and
aborts those of its occurrences that are running or waiting to run, as it does
the one running occurrence of any other series.  MemoryStore, virtual time,
both backends."""

from __future__ import annotations

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import ABORTED, MemoryStore, TaskRegistry

pytestmark = pytest.mark.anyio


async def test_abort_of_an_overlapping_series_aborts_its_running_occurrences() -> None:
    log: list[str] = []
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long() -> None:
        log.append("start")
        try:
            await anyio.sleep(25)
        except anyio.get_cancelled_exc_class():
            log.append("cancelled")
            raise
        log.append("end")

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks) as s:
        series = await s.defer_every(10, "long", key="s", overlap="allow")
        await anyio.sleep(12)  # occurrences 0 (0..25) and 1 (10..35) are running
        running = [e.key for e in await store.entries(status=Status.RUNNING)]
        assert sorted(running) == ["s@0", "s@1"]
        assert await series.cancel(abort=True)
        await anyio.sleep(100)
        assert await s.deferred("s") is None
        for key in ("s@0", "s@1"):
            e = await s.deferred(key)
            assert e is not None
            assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)
    assert log == ["start", "start", "cancelled", "cancelled"]


def test_the_abort_command_aborts_an_overlapping_series_occurrences(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from duetime.__main__ import main
    from duetime.durable.conformance import row

    store = MemoryStore()
    tasks = TaskRegistry()

    @tasks.task("long")
    async def long() -> None:
        pass  # never run: the occurrences are claimed by hand below

    async def fill() -> None:
        async with Scheduler(store=store, tasks=tasks, worker=False) as s:
            await s.defer_every(10, "long", key="s", overlap="allow", start=3600.0)
        await store.add([row("s@0", task="long"), row("s@1", task="long", delay=5.0)])
        await store.add([row("other@0", task="long")])
        assert len(await store.claim("w", 10)) == 2  # s@0 and other@0 RUNNING

    async def state() -> dict[str, tuple[Status, bool] | None]:
        out: dict[str, tuple[Status, bool] | None] = {}
        for key in ("s", "s@0", "s@1", "other@0"):
            e = await store.get(key)
            out[key] = None if e is None else (e.status, e.abort_requested)
        return out

    anyio.run(fill)
    monkeypatch.setattr("duetime.durable._url.open_store", lambda url, read_only=False: store)
    assert main(["abort", "--store", "memory://", "--key", "s"]) == 0
    capsys.readouterr()
    assert anyio.run(state) == {
        "s": None,
        "s@0": (Status.RUNNING, True),
        "s@1": None,
        "other@0": (Status.RUNNING, False),
    }
