"""duetime.otel on durable work: spans, links and metrics, on virtual time, both backends."""

from __future__ import annotations

import anyio
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import duetime.otel
from duetime import Retry, Scheduler, Status
from duetime._instrument import probes
from duetime.durable import NewRow, StoreSession, TaskRegistry, current_entry
from duetime.testing import MemoryStore
from tests.durable.waiting import wait_for
from tests.otel_support import Telemetry, attrs, telemetry

pytestmark = pytest.mark.anyio
__all__ = ["telemetry"]  # the fixture, imported for the tests below
DESTINATION = "messaging.destination.name"


def _registry() -> tuple[TaskRegistry, list[str]]:
    tasks = TaskRegistry()
    seen: list[str] = []

    @tasks.task("t.add")
    async def add(a: int, b: int) -> int:
        seen.append(f"add {a + b}")
        return a + b

    @tasks.task("t.sync")
    def sync_add(a: int) -> int:
        seen.append(f"sync {a}")
        return a

    @tasks.task("t.flaky", retry=Retry(attempts=2, backoff=1.0, jitter=0.0))
    async def flaky() -> None:
        raise ValueError("boom")

    return tasks, seen


async def test_defer_is_a_producer_span_and_its_run_a_linked_consumer_span(
    telemetry: Telemetry,
) -> None:
    tasks, seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k1", delay=5)
        await s.defer("t.sync", 7, key="k2")
        await wait_for(s, "k1", Status.COMPLETED)
        await wait_for(s, "k2", Status.COMPLETED)
    assert sorted(seen) == ["add 3", "sync 7"]
    (send,) = telemetry.spans("send t.add")
    assert send.kind is SpanKind.PRODUCER
    assert attrs(send) == {
        "messaging.system": "duetime",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "t.add",
        "messaging.message.id": "k1",
    }
    (run,) = telemetry.spans("process t.add")
    assert run.kind is SpanKind.CONSUMER
    got = attrs(run)
    assert got["messaging.system"] == "duetime"
    assert got["messaging.operation.type"] == "process"
    assert got["messaging.operation.name"] == "process"
    assert got["messaging.destination.name"] == "t.add"
    assert got["messaging.message.id"] == "k1"
    assert got["messaging.duetime.attempt"] == 1
    assert got["messaging.duetime.deliveries"] == 1
    assert got["messaging.duetime.outcome"] == "done"
    assert 0 <= got["messaging.duetime.lateness"] < 1.0
    # A new trace, not a child of the send span: linked to it.
    assert run.parent is None
    assert send.context is not None
    assert run.context is not None
    assert run.context.trace_id != send.context.trace_id
    assert [link.context.span_id for link in run.links] == [send.context.span_id]
    assert run.status.status_code is StatusCode.UNSET
    # The sync task's run is linked to its own send span.
    (send2,) = telemetry.spans("send t.sync")
    (run2,) = telemetry.spans("process t.sync")
    assert send2.context is not None
    assert [link.context.span_id for link in run2.links] == [send2.context.span_id]


async def test_the_stored_trace_context_leaves_the_entry_arguments_alone(
    telemetry: Telemetry,
) -> None:
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        d = await s.defer("t.add", 1, 2, key="k")
        assert d.entry is not None
        assert d.entry.args == (1, 2)
        entry = await s.deferred("k")
        assert entry is not None
        assert entry.args == (1, 2)
        assert [e.args for e in await s.deferred_entries()] == [(1, 2)]


async def test_defer_many_is_one_send_span_and_a_create_span_per_entry(
    telemetry: Telemetry,
) -> None:
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer_many("t.add", [(1, 1), (2, 2), (3, 3)], keys=["a", "b", "c"])
        for key in "abc":
            await wait_for(s, key, Status.COMPLETED)
    (send,) = telemetry.spans("send t.add")
    assert send.kind is SpanKind.CLIENT
    assert attrs(send)["messaging.batch.message_count"] == 3
    assert "messaging.message.id" not in attrs(send)
    creates = {attrs(s)["messaging.message.id"]: s for s in telemetry.spans("create t.add")}
    assert sorted(creates) == ["a", "b", "c"]
    for create in creates.values():
        assert create.kind is SpanKind.PRODUCER
        assert attrs(create)["messaging.operation.type"] == "create"
    linked = {attrs(link)["messaging.message.id"]: link.context.span_id for link in send.links}
    assert linked == {key: span.context.span_id for key, span in creates.items() if span.context}
    runs = telemetry.spans("process t.add")
    assert len(runs) == 3
    for run in runs:
        key = attrs(run)["messaging.message.id"]
        created = creates[key].context
        assert created is not None
        assert [link.context.span_id for link in run.links] == [created.span_id]
    assert (
        telemetry.total("messaging.client.sent.messages", messaging__destination__name="t.add") == 3
    )


async def test_defer_many_without_create_spans_stores_the_send_context(
    telemetry: Telemetry,
) -> None:
    duetime.otel.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        create_spans=False,
    )
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer_many("t.add", [(1, 1), (2, 2)], keys=["a", "b"])
        await wait_for(s, "a", Status.COMPLETED)
        await wait_for(s, "b", Status.COMPLETED)
    assert telemetry.spans("create t.add") == []
    (send,) = telemetry.spans("send t.add")
    assert send.kind is SpanKind.PRODUCER
    assert send.context is not None
    for run in telemetry.spans("process t.add"):
        assert [link.context.span_id for link in run.links] == [send.context.span_id]


async def test_a_failed_attempt_records_its_exception_and_a_retry_links_the_same_send(
    telemetry: Telemetry,
) -> None:
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.flaky", key="f")
        await wait_for(s, "f", Status.FAILED)
    (send,) = telemetry.spans("send t.flaky")
    assert send.context is not None
    runs = sorted(
        telemetry.spans("process t.flaky"),
        key=lambda s: attrs(s)["messaging.duetime.attempt"],
    )
    assert [attrs(r)["messaging.duetime.attempt"] for r in runs] == [1, 2]
    assert [attrs(r)["messaging.duetime.outcome"] for r in runs] == ["retry", "dead"]
    for run in runs:
        assert run.status.status_code is StatusCode.ERROR
        assert attrs(run)["error.type"] == "ValueError"
        (event,) = [e for e in run.events if e.name == "exception"]
        assert attrs(event)["exception.type"] == "ValueError"
        assert attrs(event)["exception.message"] == "boom"
        assert [link.context.span_id for link in run.links] == [send.context.span_id]
    assert runs[0].context is not None
    assert runs[1].context is not None
    assert runs[0].context.trace_id != runs[1].context.trace_id  # each run its own trace
    assert telemetry.total("duetime.dead_letters", messaging__destination__name="t.flaky") == 1
    assert telemetry.total("messaging.process.duration", error__type="ValueError") == 2


async def test_a_row_without_trace_context_runs_in_an_unlinked_span(telemetry: Telemetry) -> None:
    # A row an earlier version (or another program) wrote: no creation context.
    tasks, seen = _registry()
    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as session:
        await store.add([NewRow("old", "t.add", "[4,5]", delay=0.0)])
        await store.add([NewRow("lost", "t.nope", "[]", delay=0.0)])  # an unknown task
        await wait_for(session.client, "old", Status.COMPLETED)
        await wait_for(session.client, "lost", Status.FAILED)
    assert seen == ["add 9"]
    (run,) = telemetry.spans("process t.add")
    assert run.links == ()
    (dead,) = telemetry.spans("process t.nope")
    assert dead.status.status_code is StatusCode.ERROR
    assert attrs(dead)["error.type"] == "LookupError"
    assert attrs(dead)["messaging.duetime.outcome"] == "dead"
    assert telemetry.total("duetime.dead_letters") == 1


async def test_metrics_after_known_work(telemetry: Telemetry) -> None:
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer_many("t.add", [(i, i) for i in range(5)], keys=[f"k{i}" for i in range(5)])
        await s.defer("t.sync", 1, key="s", delay=2)
        await s.defer("t.add", 0, 0, key="later", delay=3600)
        for i in range(5):
            await wait_for(s, f"k{i}", Status.COMPLETED)
        await wait_for(s, "s", Status.COMPLETED)
        add = {"messaging__destination__name": "t.add"}
        assert telemetry.total("messaging.client.sent.messages", **add) == 6
        assert telemetry.total("messaging.client.sent.messages") == 7
        assert telemetry.total("messaging.client.consumed.messages", **add) == 5
        assert telemetry.total("messaging.client.consumed.messages") == 6
        assert telemetry.total("messaging.process.duration") == 6
        assert telemetry.total("duetime.entry.lateness") == 6
        # The conventions require messaging.operation.name on both consumer metrics.
        for metric in ("messaging.client.consumed.messages", "messaging.process.duration"):
            assert telemetry.total(metric, messaging__operation__name="process") == 6
        # duetime's lateness: the task alone (its name says duetime; the operation
        # is always "process").
        lateness = [dict(p.attributes) for p in telemetry.points("duetime.entry.lateness")]
        assert sorted(lateness, key=str) == [
            {"messaging.destination.name": task} for task in ("t.add", "t.sync")
        ]
        # messaging.process.duration: what the conventions require, nothing more.
        durations = [dict(p.attributes) for p in telemetry.points("messaging.process.duration")]
        assert sorted(durations, key=str) == [
            {
                "messaging.system": "duetime",
                "messaging.operation.name": "process",
                "messaging.destination.name": task,
            }
            for task in ("t.add", "t.sync")
        ]
        (sent,) = [
            p
            for p in telemetry.points("messaging.client.sent.messages")
            if p.attributes["messaging.destination.name"] == "t.sync"
        ]
        assert dict(sent.attributes) == {
            "messaging.system": "duetime",
            "messaging.operation.name": "send",
            "messaging.destination.name": "t.sync",
        }
        # Entries by status: counted by the worker's loop when a collection asks,
        # at most once per status_interval (30 s).
        telemetry.points("duetime.entries")
        await anyio.sleep(30)
        by_status = {
            p.attributes["duetime.entry.status"]: p.value
            for p in telemetry.points("duetime.entries")
        }
        assert by_status["COMPLETED"] == 6
        assert by_status["PENDING"] == 1
        assert by_status["FAILED"] == 0
    assert telemetry.total("duetime.dead_letters") == 0
    assert telemetry.total("duetime.leases.lost") == 0


async def test_a_traced_runs_metrics_have_its_span_as_exemplar(telemetry: Telemetry) -> None:
    # The default exemplar filter keeps a measurement recorded in a sampled span's
    # context: a run's duration and lateness point at its process span.
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k1")
        await s.defer("t.flaky", key="f")
        await wait_for(s, "k1", Status.COMPLETED)
        await wait_for(s, "f", Status.FAILED)
    runs = {
        (span.context.trace_id, span.context.span_id): span
        for span in telemetry.spans()
        if span.name.startswith("process ")
    }
    assert len(runs) == 3
    collected = telemetry.collect()
    for metric in ("messaging.process.duration", "duetime.entry.lateness"):
        points = collected[metric]
        assert points
        for point in points:
            assert point.exemplars, (metric, dict(point.attributes))
            for exemplar in point.exemplars:
                task = attrs(runs[(exemplar.trace_id, exemplar.span_id)])[DESTINATION]
                assert task == point.attributes[DESTINATION]
    (failed,) = [p for p in collected["messaging.process.duration"] if "error.type" in p.attributes]
    (exemplar,) = failed.exemplars  # the last failed attempt's (one kept per bucket)
    assert runs[(exemplar.trace_id, exemplar.span_id)].status.status_code is StatusCode.ERROR


async def test_a_lost_lease_is_counted(telemetry: Telemetry) -> None:
    tasks = TaskRegistry()
    deliveries: list[int] = []

    @tasks.task("t.stuck", lease=10)
    async def stuck() -> None:
        deliveries.append(current_entry().deliveries)
        await anyio.sleep_forever()

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True, owner="w1", grace=0) as session:
        await session.client.defer(stuck, key="s")
        while not deliveries:
            await anyio.sleep(0.5)
        store.crash("w1")  # its lease lapses: the row is claimed again
        while len(deliveries) < 2:
            await anyio.sleep(0.5)
        # The first run learns at its next renewal (lease/3) that its lease is lost.
        await anyio.sleep(10 / 3 + 0.1)
        assert telemetry.total("duetime.leases.lost", messaging__destination__name="t.stuck") == 1
    assert deliveries == [1, 2]


async def test_an_aborted_outcome_is_counted(telemetry: Telemetry) -> None:
    # The worker records Aborted when a run is aborted; the probe counts it by its
    # outcome's type, whichever module defines it.
    class Aborted:
        reason = "aborted"

    probe = probes.durable
    assert probe is not None
    probe.finished("t.x", Aborted(), True, False)
    probe.finished("t.x", Aborted(), False, False)  # not recorded: a lost lease
    assert telemetry.total("duetime.aborts", messaging__destination__name="t.x") == 1
    assert telemetry.total("duetime.leases.lost", messaging__destination__name="t.x") == 1


async def test_the_trace_context_is_stored_in_the_payload_only_when_on(
    telemetry: Telemetry,
) -> None:
    tasks, _seen = _registry()
    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=False) as s:
        await s.defer("t.add", 1, 2, key="on")
        duetime.otel.uninstrument()
        assert not duetime.otel.instrumented()
        await s.defer("t.add", 1, 2, key="off")
    claims = {c.entry.key: c for c in await store.claim("me", 10)}
    (send,) = telemetry.spans("send t.add")  # none for "off"
    assert send.context is not None
    ctx = send.context
    traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    assert claims["on"].payload == f'[1,2,{{"$trace":{{"traceparent":"{traceparent}"}}}}]'
    assert claims["off"].payload == "[1,2]"
    assert claims["on"].entry.args == claims["off"].entry.args == (1, 2)


async def test_the_tracestate_travels_with_the_creation_context(telemetry: Telemetry) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    from opentelemetry.trace.span import TraceState

    tasks, _seen = _registry()
    caller = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x1")]),
    )
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        with trace.use_span(NonRecordingSpan(caller)):  # the request that defers
            await s.defer("t.add", 1, 2, key="k")
        await wait_for(s, "k", Status.COMPLETED)
    (send,) = telemetry.spans("send t.add")
    assert send.parent is not None
    assert send.parent.span_id == caller.span_id  # a child of the request
    (run,) = telemetry.spans("process t.add")
    (link,) = run.links
    assert send.context is not None
    assert link.context.span_id == send.context.span_id
    assert link.context.trace_state.get("vendor") == "x1"


async def test_every_run_of_a_series_links_to_the_defer_every_call(telemetry: Telemetry) -> None:
    tasks = TaskRegistry()
    runs: list[int] = []

    @tasks.task("t.tick")
    async def tick() -> None:
        runs.append(current_entry().occurrence)

    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer_every(10, tick, key="series")
        while len(runs) < 3:
            await anyio.sleep(1)
    (send,) = telemetry.spans("send t.tick")
    assert send.context is not None
    assert attrs(send)["messaging.message.id"] == "series"
    spans = telemetry.spans("process t.tick")
    assert len(spans) >= 3
    occurrences = sorted(attrs(s)["messaging.duetime.occurrence"] for s in spans)
    assert occurrences[:3] == [0, 1, 2]
    for span in spans:
        assert attrs(span)["messaging.duetime.outcome"] == "next"
        assert [link.context.span_id for link in span.links] == [send.context.span_id]
    assert len({s.context.trace_id for s in spans if s.context}) == len(spans)


async def test_semconv_opt_in_dup_adds_the_old_operation_attribute(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, messaging/dup")
    duetime.otel.instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k")
        await s.defer_many("t.add", [(1, 1)], keys=["m"])
        await wait_for(s, "k", Status.COMPLETED)
        await wait_for(s, "m", Status.COMPLETED)
    old = sorted(
        (s.name, attrs(s)["messaging.operation"], attrs(s)["messaging.operation.type"])
        for s in telemetry.spans()
    )
    assert old == [
        ("create t.add", "create", "create"),
        ("process t.add", "deliver", "process"),
        ("process t.add", "deliver", "process"),
        ("send t.add", "publish", "send"),
        ("send t.add", "publish", "send"),
    ]
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "messaging")
    duetime.otel.instrument(tracer_provider=telemetry.tracer_provider)
    telemetry.exporter.clear()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k")
        await wait_for(s, "k", Status.COMPLETED)
    assert all("messaging.operation" not in attrs(s) for s in telemetry.spans())
