"""StoreSession (its Client and Worker) and the Scheduler over it, on MemoryStore.

On virtual time, on asyncio and trio.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from duetime import Retry, Scheduler, SchedulerClosed, Status
from duetime._exceptions import EntryExists
from duetime.durable import MemoryStore, NewRow, StoreSession, TaskRegistry, current_entry
from duetime.testing import hold_autojump
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


async def test_defer_runs_at_its_time_with_current_entry() -> None:
    tasks = TaskRegistry()
    seen: list[tuple[Any, ...]] = []

    @tasks.task("math.add")
    async def add(a: int, b: int) -> None:
        e = current_entry()
        seen.append((a + b, e.key, e.attempt, e.idempotency_key, anyio.current_time()))

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=True) as r:
        t0 = anyio.current_time()
        e = (await r.defer(add, 1, 2, delay=5, key="k1")).entry
        assert e is not None
        assert (e.key, e.task, e.args, e.status) == ("k1", "math.add", (1, 2), Status.PENDING)
        await anyio.sleep(4.9)
        assert seen == []
        await anyio.sleep(0.2)
        assert [s[:4] for s in seen] == [(3, "k1", 1, "k1")]
        assert seen[0][4] - t0 == pytest.approx(5.0, abs=1e-6)  # never early, not late
        done = await r.deferred("k1")
        assert done is not None
        assert done.status is Status.COMPLETED
    with pytest.raises(RuntimeError):
        current_entry()


async def test_defer_by_name_at_a_datetime_and_a_sync_task_in_a_thread() -> None:
    tasks = TaskRegistry()
    seen: list[str] = []

    @tasks.task("sync.job")
    def job(when: datetime) -> None:
        seen.append(f"{current_entry().key} {when.isoformat()}")

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        now = datetime.fromtimestamp(await store.time(), UTC)
        at = now + timedelta(seconds=30)
        e = await r.client.defer("sync.job", at, at=at, key="s")
        assert e.due == at
        await anyio.sleep(30)  # due now: the thread starts
        # While the thread works, let virtual time flow at the real rate (an
        # autojumping clock would race ahead of the thread: a flaky limit).
        with hold_autojump():
            await wait_for(r.client, "s", Status.COMPLETED)
    assert seen == [f"s {at.isoformat()}"]


async def test_bad_calls_fail_at_the_call_site() -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t(x: object = None) -> None: ...

    async def unregistered() -> None: ...

    r = StoreSession(MemoryStore(), tasks, worker=False)
    with pytest.raises(SchedulerClosed):
        await r.client.defer(t)
    async with r:
        with pytest.raises(LookupError):
            await r.client.defer("nope")
        with pytest.raises(TypeError):
            await r.client.defer(unregistered)
        with pytest.raises(ValueError, match="naive"):
            await r.client.defer(t, at=datetime(2030, 1, 1))
        with pytest.raises(ValueError, match="not both"):
            await r.client.defer(t, delay=1, at=datetime(2030, 1, 1, tzinfo=UTC))
        with pytest.raises(ValueError, match="delay"):
            await r.client.defer(t, delay=-1)
        with pytest.raises(TypeError, match="set"):
            await r.client.defer(t, {1, 2})
        with pytest.raises(ValueError, match="65536"):
            await r.client.defer(t, "x" * 70_000)
        with pytest.raises(ValueError, match="key"):
            await r.client.defer(t, key="")
        with pytest.raises(ValueError, match="on_conflict"):
            await r.client.defer(t, key="k", on_conflict="merge")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="misfire"):
            await r.client.defer_every(10, t, key="s", misfire="later")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await r.client.defer_every("10", t, key="s")
        with pytest.raises(ValueError, match="interval"):
            await r.client.defer_every(0, t, key="s")
        assert await r.client.entries() == []  # nothing half-stored


async def test_keys_are_idempotent_inserts() -> None:
    tasks = TaskRegistry()
    runs: list[int] = []

    @tasks.task("t")
    async def t(n: int) -> None:
        runs.append(n)

    async with StoreSession(MemoryStore(), tasks, worker=True) as r:
        a = await r.client.defer(t, 1, key="k", delay=10)
        b = await r.client.defer(t, 2, key="k", delay=10)
        assert b.args == (1,)
        assert b.due == a.due
        with pytest.raises(EntryExists):
            await r.client.defer(t, 3, key="k", on_conflict="error")
        await r.client.defer(t, 4, key="k", delay=10, on_conflict="replace")
        await wait_for(r.client, "k", Status.COMPLETED)
        # A producer retrying its defer after completion runs nothing (tombstone).
        again = await r.client.defer(t, 5, key="k")
        assert again.status is Status.COMPLETED
        await anyio.sleep(5)
    assert runs == [4]


async def test_defer_many_is_one_batch_and_every_entry_runs() -> None:
    tasks = TaskRegistry()
    runs: list[int] = []

    @tasks.task("t")
    async def t(n: int) -> None:
        runs.append(n)

    store = MemoryStore()
    adds = 0
    add = store.add

    async def counting_add(*a: Any, **k: Any) -> Any:
        nonlocal adds
        adds += 1
        return await add(*a, **k)

    store.add = counting_add  # type: ignore[method-assign]
    async with Scheduler(store=store, tasks=tasks, worker=True, max_concurrency=7) as r:
        entries = await r.defer_many(t, [(i,) for i in range(250)], delay=1)
        assert len(entries) == 250
        assert adds == 1
        with pytest.raises(ValueError, match="twice"):
            await r.defer_many(t, [(1,), (2,)], keys=["a", "a"])
        with pytest.raises(TypeError):
            await r.defer_many(t, ["ab"])
        await anyio.sleep(5)
    assert sorted(runs) == list(range(250))


async def test_retries_are_stored_across_a_restart_then_dead_letter_and_retry() -> None:
    tasks = TaskRegistry()
    attempts: list[int] = []
    reported: list[tuple[str, BaseException]] = []
    fail = True

    @tasks.task("flaky", retry=Retry(attempts=3, backoff=10, jitter=0))
    async def flaky() -> None:
        attempts.append(current_entry().attempt)
        if fail:
            raise ValueError("boom")

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(flaky, key="f")
        await anyio.sleep(1)
        e = await r.client.deferred("f")
        assert e is not None
        assert (e.status, e.attempt, e.last_error) == (Status.PENDING, 2, "ValueError: boom")
    assert attempts == [1]
    # "Restart": a new runner on the same store goes on with attempt 2.
    on_error = lambda entry, exc: reported.append((entry.key, exc))  # noqa: E731
    async with StoreSession(store, tasks, worker=True, on_error=on_error) as r:
        dead = await wait_for(r.client, "f", Status.FAILED)
        assert attempts == [1, 2, 3]
        assert dead.last_error == "ValueError: boom"
        assert [d.key for d in await r.client.dead_letters()] == ["f"]
        assert [(k, type(x)) for k, x in reported] == [("f", ValueError)]
        fail = False
        assert await r.client.retry_deferred("f")
        await wait_for(r.client, "f", Status.COMPLETED)
        assert attempts == [1, 2, 3, 1]
        assert await r.client.dead_letters() == []


async def test_unknown_task_and_bad_payload_from_another_deployment_are_dead_letters() -> None:
    tasks = TaskRegistry()
    ran: list[object] = []

    @tasks.task("ok")
    async def ok(x: object) -> None:
        ran.append(x)

    store = MemoryStore()
    now = await store.time()
    await store.add(
        [
            NewRow(key="gone", task="renamed.task", payload="[1]", due=now),
            NewRow(key="bad", task="ok", payload='[{"$pickle":"gASV"}]', due=now),
            NewRow(key="deep", task="ok", payload="[" * 5000 + "]" * 5000, due=now),
            NewRow(key="fine", task="ok", payload='[{"$dict":{"$date":"x"}}]', due=now),
        ]
    )
    reported: list[str] = []
    async with StoreSession(
        store, tasks, worker=True, on_error=lambda e, x: reported.append(e.key)
    ) as r:
        gone = await wait_for(r.client, "gone", Status.FAILED)
        bad = await wait_for(r.client, "bad", Status.FAILED)
        deep = await wait_for(r.client, "deep", Status.FAILED)
        await wait_for(r.client, "fine", Status.COMPLETED)
    assert gone.last_error is not None
    assert "unknown task" in gone.last_error
    assert bad.last_error is not None
    assert "bad payload" in bad.last_error
    assert deep.last_error is not None
    assert "bad payload" in deep.last_error
    assert ran == [{"$date": "x"}]
    assert sorted(reported) == ["bad", "deep", "gone"]


async def test_a_task_error_never_stops_the_runner() -> None:
    tasks = TaskRegistry()
    done: list[str] = []

    class Weird(BaseException):
        pass

    @tasks.task("raises")
    async def raises(kind: str) -> None:
        if kind == "exit":
            raise SystemExit(3)
        if kind == "weird":
            raise Weird()
        if kind == "group":
            raise ExceptionGroup("g", [ValueError(1)])
        raise RuntimeError(kind)

    @tasks.task("sync.raises")
    def sync_raises() -> None:
        raise KeyError("k")

    @tasks.task("fine")
    async def fine() -> None:
        done.append("fine")

    async with StoreSession(MemoryStore(), tasks, worker=True, on_error=lambda e, x: None) as r:
        for kind in ("exit", "weird", "group", "plain"):
            await r.client.defer(raises, kind, key=kind)
        await r.client.defer("sync.raises", key="sync")
        with hold_autojump():  # a thread runs sync.raises: see the sync-task test
            for key in ("exit", "weird", "group", "plain", "sync"):
                e = await wait_for(r.client, key, Status.FAILED)
                assert e.last_error
        await r.client.defer(fine, key="after", delay=1)
        await wait_for(r.client, "after", Status.COMPLETED)
    assert done == ["fine"]


async def test_timeout_is_a_failed_attempt() -> None:
    tasks = TaskRegistry()

    @tasks.task("slow", timeout=5)
    async def slow() -> None:
        await anyio.sleep(100)

    async with StoreSession(MemoryStore(), tasks, worker=True, on_error=lambda e, x: None) as r:
        t0 = anyio.current_time()
        await r.client.defer(slow, key="s")
        e = await wait_for(r.client, "s", Status.FAILED)
        assert e.last_error is not None
        assert e.last_error.startswith("TimeoutError")
        assert anyio.current_time() - t0 < 6


async def test_lease_renewal_keeps_a_long_task_from_running_twice() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("long", lease=3)
    async def long() -> None:
        runs.append(current_entry().key)
        await anyio.sleep(100)  # 33 leases long

    store = MemoryStore()
    extends = 0
    extend = store.extend

    async def counting_extend(claims: Any) -> Any:
        nonlocal extends
        extends += 1
        return await extend(claims)

    store.extend = counting_extend  # type: ignore[method-assign]
    async with (
        StoreSession(store, tasks, worker=True, owner="w1") as r1,
        StoreSession(store, tasks, worker=True, owner="w2"),
    ):
        await r1.client.defer_many(long, [()] * 5, keys=[f"k{i}" for i in range(5)])
        await anyio.sleep(150)
        for i in range(5):
            e = await r1.client.deferred(f"k{i}")
            assert e is not None
            assert e.status is Status.COMPLETED
    assert sorted(runs) == [f"k{i}" for i in range(5)]
    # One batched extend per process every lease/3, not one per entry.
    assert extends <= 2 * (100 / 1 + 5)


async def test_worker_that_keeps_crashing_is_poison_after_max_deliveries() -> None:
    tasks = TaskRegistry()
    store = MemoryStore()
    deliveries: list[int] = []
    cancelled = 0

    @tasks.task("killer", max_deliveries=3, lease=10)
    async def killer() -> None:
        nonlocal cancelled
        deliveries.append(current_entry().deliveries)
        try:
            await anyio.sleep_forever()
        finally:
            cancelled += 1

    async with StoreSession(store, tasks, worker=True, owner="w1") as r:
        await r.client.defer(killer, key="p")
        for n in (1, 2, 3):
            while len(deliveries) < n:
                await anyio.sleep(0.5)
            store.crash("w1")  # the worker "dies": its lease lapses now
        e = await wait_for(r.client, "p", Status.FAILED)
        # Each run learns at its next renewal (lease/3) that its lease was taken
        # over: it is cancelled and never finishes the entry.
        await anyio.sleep(10 / 3 + 0.1)
        assert cancelled == 3
    assert deliveries == [1, 2, 3]
    assert e.last_error is not None
    assert "poison" in e.last_error


async def test_crashed_worker_entry_is_recovered_by_another() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("job", lease=10)
    async def job() -> None:
        runs.append(current_entry().key)

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=False) as producer:
        await producer.client.defer(job, key="j")
    claims = await store.claim("ghost", 10)  # a worker that dies at once
    assert [c.entry.key for c in claims] == ["j"]
    async with StoreSession(store, tasks, worker=True) as r:
        t0 = anyio.current_time()
        e = await wait_for(r.client, "j", Status.COMPLETED)
        assert anyio.current_time() - t0 <= 10 + 0.1  # within the lease
        assert e.status is Status.COMPLETED
    assert runs == ["j"]
    # The dead worker's token can no longer finish anything.
    from duetime.durable import Done

    assert not (await store.finish_many([("j", claims[0].token, Done())]))[0]


async def test_shutdown_releases_running_tasks_after_grace() -> None:
    tasks = TaskRegistry()
    started: list[int] = []
    cancelled: list[int] = []

    @tasks.task("hang", lease=30)
    async def hang() -> None:
        started.append(current_entry().deliveries)
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.append(1)

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=True, grace=2) as r:
        await r.defer(hang, key="h")
        await anyio.sleep(1)
        t0 = anyio.current_time()
    assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-6)
    assert started == [1]
    assert cancelled == [1]
    e = await store.get("h")
    assert e is not None
    assert e.status is Status.PENDING
    assert e.deliveries == 0
    # Released, not left to lapse: the next worker takes it at once.
    async with Scheduler(store=store, tasks=tasks, worker=True, grace=0) as r:
        await anyio.sleep(0.5)
        assert started == [1, 1]


async def test_shutdown_waits_for_a_task_that_finishes_within_grace() -> None:
    tasks = TaskRegistry()

    @tasks.task("short")
    async def short() -> None:
        await anyio.sleep(3)

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=True, grace=10) as r:
        await r.defer(short, key="s")
        await anyio.sleep(1)
        t0 = anyio.current_time()
    assert anyio.current_time() - t0 == pytest.approx(2.0, abs=1e-6)
    e = await store.get("s")
    assert e is not None
    assert e.status is Status.COMPLETED


async def test_a_series_runs_each_occurrence_once_with_two_runners() -> None:
    tasks = TaskRegistry()
    runs: list[tuple[str, datetime, float]] = []

    @tasks.task("tick")
    async def tick() -> None:
        e = current_entry()
        runs.append((e.idempotency_key, e.due, anyio.current_time()))
        await anyio.sleep(1)

    store = MemoryStore()
    async with (
        StoreSession(store, tasks, worker=True, owner="a") as r1,
        StoreSession(store, tasks, worker=True, owner="b"),
    ):
        t0 = anyio.current_time()
        s = await r1.client.defer_every(10, tick, key="series")
        assert s.schedule is not None
        again = await r1.client.defer_every(10, tick, key="series")  # startup code run twice
        assert again.due == s.due
        await anyio.sleep(95)
        assert await r1.client.cancel_deferred("series")
    keys = [k for k, _, _ in runs]
    assert keys == [f"series@{i}" for i in range(10)]
    # On the grid, drift-free, never early.
    for i, (_, due, at) in enumerate(runs):
        assert due == s.due + timedelta(seconds=10 * i)
        assert at - t0 == pytest.approx(10 * i, abs=1e-6)


async def test_a_cron_series_runs_on_its_wall_clock_points() -> None:
    from duetime import Cron

    tasks = TaskRegistry()
    runs: list[str] = []

    # Async: a sync task runs in a thread, and virtual time would race ahead
    # while the thread works (trio's MockClock autojumps then): a flaky test.
    @tasks.task("quarter")
    async def quarter() -> None:
        runs.append(current_entry().due.strftime("%H:%M"))

    store = MemoryStore()  # its clock starts at 2024-01-01T00:00Z
    async with Scheduler(store=store, tasks=tasks, worker=True) as r:
        await anyio.sleep(60)  # 00:01: the first point is 00:15, not now
        s = (await r.defer_every(Cron("*/15 * * * *"), quarter, key="q")).entry
        assert s is not None
        assert s.due == datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
        with anyio.fail_after(3600):
            while len(runs) < 4:
                await anyio.sleep(1)
    assert runs == ["00:15", "00:30", "00:45", "01:00"]


@pytest.mark.parametrize(
    ("misfire", "expected"),
    [("coalesce", [30.0, 40.0]), ("skip", [40.0]), ("catch_up", [0.0, 10.0, 20.0, 30.0, 40.0])],
)
async def test_misfire_policies_when_workers_were_down(misfire: str, expected: list[float]) -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("tick")
    async def tick() -> None:
        runs.append(current_entry().due.timestamp())

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=False) as producer:
        s = await producer.client.defer_every(10, tick, key="s", misfire=misfire)  # type: ignore[arg-type]
    base = s.due.timestamp()
    await anyio.sleep(35)  # no worker for 35 s
    async with StoreSession(store, tasks, worker=True):
        await anyio.sleep(9)
    assert [r - base for r in runs] == expected


async def test_overlap_allow_inserts_occurrence_rows() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("slow")
    async def slow() -> None:
        runs.append(current_entry().idempotency_key)
        await anyio.sleep(25)

    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=True) as r:
        await r.defer_every(10, slow, key="s", overlap="allow")
        await anyio.sleep(35)
        assert sorted(runs) == ["s@0", "s@1", "s@2", "s@3"]
        first = await r.deferred("s@0")
        assert first is not None
        assert first.status is Status.COMPLETED
        running = await r.deferred("s@3")
        assert running is not None
        assert running.status is Status.RUNNING


async def test_overlap_skip_skips_points_that_come_while_it_runs() -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("slow")
    async def slow() -> None:
        runs.append(anyio.current_time())
        await anyio.sleep(25)

    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=True) as r:
        t0 = anyio.current_time()
        await r.defer_every(10, slow, key="s")
        await anyio.sleep(65)
    assert [round(t - t0, 6) for t in runs] == [0.0, 30.0, 60.0]


async def test_a_failed_occurrence_is_recorded_and_the_series_goes_on() -> None:
    tasks = TaskRegistry()
    attempts: list[tuple[int, int]] = []

    @tasks.task("bad", retry=Retry(attempts=2, backoff=1, jitter=0))
    async def bad() -> None:
        e = current_entry()
        attempts.append((e.occurrence, e.attempt))
        raise ValueError("nope")

    async with StoreSession(MemoryStore(), tasks, worker=True, on_error=lambda e, x: None) as r:
        await r.client.defer_every(10, bad, key="s")
        await anyio.sleep(25)
        e = await r.client.deferred("s")
        assert e is not None
        assert e.status is Status.PENDING
        assert e.last_error == "ValueError: nope"
    assert attempts == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]


async def test_idle_worker_does_not_poll_per_entry() -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    store = MemoryStore()
    claims = 0
    claim = store.claim

    async def counting_claim(owner: str, limit: int) -> Any:
        nonlocal claims
        claims += 1
        return await claim(owner, limit)

    store.claim = counting_claim  # type: ignore[method-assign]
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer_many(t, [()] * 50, delay=7200)
        await anyio.sleep(3600)
        assert claims <= 3600 / 10 + 5  # the safety poll only
    async with StoreSession(store, tasks, worker=False):
        pass


async def test_store_errors_in_the_claim_loop_back_off_and_never_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("t")
    async def t() -> None:
        runs.append(anyio.current_time())

    store = MemoryStore()
    failures = 0
    claim = store.claim

    async def flaky_claim(owner: str, limit: int) -> Any:
        nonlocal failures
        if failures < 5:
            failures += 1
            raise OSError("database is locked")
        return await claim(owner, limit)

    store.claim = flaky_claim  # type: ignore[method-assign]
    async with StoreSession(store, tasks, worker=True) as r:
        t0 = anyio.current_time()
        await r.client.defer(t, key="k")
        await wait_for(r.client, "k", Status.COMPLETED)
    assert failures == 5
    # Backoff 0.1, 0.2, 0.4, 0.8, 1.6 s: not a crash loop, not a long stall.
    assert runs[0] - t0 == pytest.approx(3.1, abs=0.15)
    # The outage is logged once when it starts and once when it ends.
    assert sum("claim failed" in m for m in caplog.messages) == 1
    assert sum("answers again" in m for m in caplog.messages) == 1


class CountingStore(MemoryStore):
    """A MemoryStore that records the size of each finish_many call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def finish_many(self, items: Any) -> list[bool]:
        self.batches.append(len(items))
        return await super().finish_many(items)


async def test_runs_that_end_together_finish_as_one_group() -> None:
    tasks = TaskRegistry()

    @tasks.task("noop")
    async def noop(i: int) -> None:
        pass

    store = CountingStore()
    async with StoreSession(store, tasks, worker=True, concurrency=100) as r:
        await r.client.defer_many(
            noop, [(i,) for i in range(60)], keys=[f"k{i}" for i in range(60)]
        )
        await wait_for(r.client, "k59", Status.COMPLETED)
        await anyio.sleep(1)
        done = await r.client.entries(status=Status.COMPLETED)
    assert len(done) == 60
    assert sum(store.batches) == 60
    assert len(store.batches) <= 3  # one group per claim, not one call per entry


async def test_a_lost_lease_cancels_only_its_own_run() -> None:
    # Runs share their runner task's cancel scope, a streak at a time: cancelling
    # the run whose lease was lost must not reach the next run of the same runner.
    tasks = TaskRegistry()
    events: list[str] = []

    @tasks.task("job", lease=3)
    async def job(name: str) -> None:
        events.append(f"{name} start")
        await anyio.sleep(2 if name == "a" else 1)
        events.append(f"{name} done")

    class LosesAOnce(MemoryStore):
        lost = False

        async def extend(self, claims: Any) -> list[bool]:
            got = await super().extend(claims)
            if not self.lost and any(key == "a" for key, _token in claims):
                self.lost = True
                return [ok and key != "a" for (key, _token), ok in zip(claims, got, strict=True)]
            return got

    store = LosesAOnce()
    async with StoreSession(store, tasks, worker=True, concurrency=1) as r:
        await r.client.defer(job, "a", key="a")
        await r.client.defer(job, "b", key="b", delay=0.5)
        await wait_for(r.client, "b", Status.COMPLETED)
        await wait_for(r.client, "a", Status.COMPLETED)
    # a's first run is cancelled at its first renewal (1 s); b runs next, whole,
    # in the same runner; a lapses (3 s) and runs again.
    assert events == ["a start", "b start", "b done", "a start", "a done"]
