"""duetime.otel's run path when runs are not traced: sampled out, or no tracer in
force (metrics only).  Virtual time, both backends."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

import duetime.otel
import duetime.otel._durable as durable_otel
from duetime import Retry, Scheduler, Status
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore
from tests.durable.waiting import wait_for
from tests.otel_support import Telemetry

pytestmark = pytest.mark.anyio


class _Drop(Sampler):
    """Drops every span, keeping what it was asked to decide on."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int, SpanKind | None, dict[str, Any], list[Link]]] = []

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        self.asked.append((name, trace_id, kind, dict(attributes or {}), list(links or ())))
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "drop"


def _registry() -> tuple[TaskRegistry, list[str]]:
    tasks = TaskRegistry()
    seen: list[str] = []

    @tasks.task("t.add")
    async def add(a: int, b: int) -> int:
        seen.append(f"add {a + b}")
        return a + b

    @tasks.task("t.flaky", retry=Retry(attempts=2, backoff=1.0, jitter=0.0))
    async def flaky() -> None:
        raise ValueError("boom")

    return tasks, seen


@pytest.fixture
def dropped() -> Iterator[tuple[Telemetry, _Drop]]:
    """Instrumented with a sampler that drops every span."""
    sampler = _Drop()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    duetime.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(exporter, reader, tracer_provider, meter_provider), sampler
    finally:
        duetime.otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def metrics_only() -> Iterator[Telemetry]:
    """Instrumented with a meter provider and a tracer provider that makes no spans."""
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    duetime.otel.instrument(
        tracer_provider=trace.NoOpTracerProvider(), meter_provider=meter_provider
    )
    try:
        yield Telemetry(exporter, reader, TracerProvider(), meter_provider)
    finally:
        duetime.otel.uninstrument()
        meter_provider.shutdown()


async def test_a_sampler_decides_on_the_link_and_the_messaging_attributes(
    dropped: tuple[Telemetry, _Drop],
) -> None:
    telemetry, sampler = dropped
    tasks, seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k1")
        await wait_for(s, "k1", Status.COMPLETED)
    assert seen == ["add 3"]
    assert telemetry.spans() == []
    ((_, _, kind, attributes, links),) = [a for a in sampler.asked if a[0] == "process t.add"]
    assert kind is SpanKind.CONSUMER
    # What describes the operation is given at the start; the per-message
    # attributes only to a span that records (see test_otel.py).
    assert attributes == {
        "messaging.system": "duetime",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "t.add",
    }
    # The send span was dropped too, but its context was stored and is the link.
    ((_, send_trace, *_),) = [a for a in sampler.asked if a[0] == "send t.add"]
    (link,) = links
    assert link.context.trace_id == send_trace
    # Metrics do not depend on sampling.
    assert telemetry.total("messaging.client.consumed.messages") == 1
    assert telemetry.total("messaging.process.duration") == 1
    assert telemetry.total("duetime.entry.lateness") == 1


async def test_an_untraced_runs_metrics_have_no_exemplar(
    dropped: tuple[Telemetry, _Drop],
) -> None:
    # The worker starts inside the application's own sampled span: its runs'
    # tasks inherit that context, but a run whose span is sampled out has no
    # span to point at, so its metrics keep no exemplar of the application's.
    telemetry, _sampler = dropped
    app = TracerProvider()
    tasks, seen = _registry()
    try:
        with app.get_tracer("app").start_as_current_span("app start"):
            async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
                await s.defer("t.add", 1, 2, key="k1")
                await s.defer("t.flaky", key="f")
                await wait_for(s, "k1", Status.COMPLETED)
                await wait_for(s, "f", Status.FAILED)
    finally:
        app.shutdown()
    assert seen == ["add 3"]
    collected = telemetry.collect()
    for metric in ("messaging.process.duration", "duetime.entry.lateness"):
        points = collected[metric]
        assert sum(p.count for p in points) == 3
        assert [list(p.exemplars) for p in points] == [[]] * len(points)


async def test_a_sampled_out_failure_is_measured_with_its_error_type(
    dropped: tuple[Telemetry, _Drop],
) -> None:
    telemetry, _sampler = dropped
    tasks, _seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.flaky", key="f")
        await wait_for(s, "f", Status.FAILED)
    assert telemetry.spans() == []
    assert telemetry.total("messaging.process.duration", error__type="ValueError") == 2
    assert telemetry.total("duetime.dead_letters", messaging__destination__name="t.flaky") == 1


class _DropUnseen(Sampler):
    """Drops every span without looking at its links (as TraceIdRatioBased does)."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "drop, links unseen"


async def test_a_dropped_run_whose_sampler_ignores_links_reads_no_trace_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    read: list[str] = []
    created = durable_otel._created

    def counting(payload: str) -> Any:
        read.append(payload)
        return created(payload)

    monkeypatch.setattr(durable_otel, "_created", counting)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=_DropUnseen())
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    duetime.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    telemetry = Telemetry(exporter, reader, tracer_provider, meter_provider)
    tasks = TaskRegistry()
    inner = tracer_provider.get_tracer("test")

    @tasks.task("t.inner")
    async def with_span() -> None:
        with inner.start_as_current_span("inner") as span:
            # A child of the dropped process span: dropped with it.
            assert not span.is_recording()

    try:
        async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
            await s.defer("t.inner", key="k1")
            await wait_for(s, "k1", Status.COMPLETED)
    finally:
        duetime.otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
    assert read == []  # the stored context was never needed
    assert telemetry.spans() == []
    assert telemetry.total("messaging.client.consumed.messages") == 1


async def test_without_a_tracer_a_run_reads_no_trace_context_and_is_measured(
    metrics_only: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[str] = []
    created = durable_otel._created

    def counting(payload: str) -> Any:
        read.append(payload)
        return created(payload)

    monkeypatch.setattr(durable_otel, "_created", counting)
    tasks, seen = _registry()
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.add", 1, 2, key="k1")
        await s.defer("t.flaky", key="f")
        await wait_for(s, "k1", Status.COMPLETED)
        await wait_for(s, "f", Status.FAILED)
    assert seen == ["add 3"]
    assert read == []  # no span to link: the stored context is not parsed
    assert metrics_only.total("messaging.client.consumed.messages") == 3
    assert metrics_only.total("messaging.process.duration", error__type="ValueError") == 2
    assert metrics_only.total("duetime.entry.lateness") == 3
    assert metrics_only.total("duetime.dead_letters") == 1
    # No span, no exemplar (and the lateness points carry the task alone).
    collected = metrics_only.collect()
    for metric in ("messaging.process.duration", "duetime.entry.lateness"):
        assert [list(p.exemplars) for p in collected[metric]] == [[]] * 2
    assert sorted((dict(p.attributes) for p in collected["duetime.entry.lateness"]), key=str) == [
        {"messaging.destination.name": "t.add"},
        {"messaging.destination.name": "t.flaky"},
    ]


_LATE_PROVIDER = """
import sys
import anyio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import duetime.otel
from duetime import Scheduler, Status
from duetime.durable import NewRow, TaskRegistry
from duetime.testing import MemoryStore

tasks = TaskRegistry()


@tasks.task("t.a")
async def a() -> None:
    pass


exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))


async def done(s, key):
    with anyio.fail_after(120):
        while (e := await s.deferred(key)) is None or e.status is not Status.COMPLETED:
            await anyio.sleep(0.01)


async def defers():
    duetime.otel.instrument()  # the global tracer provider: none set yet
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer("t.a", key="before")
        await done(s, "before")
        trace.set_tracer_provider(provider)
        await s.defer("t.a", key="after")
        await done(s, "after")


async def works():
    # A worker that never defers: it looks the provider up again at most every
    # second between runs.
    duetime.otel.instrument()
    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks) as s:
        await store.add([NewRow("before", "t.a", "[]", delay=0.0)])
        await done(s, "before")
        trace.set_tracer_provider(provider)
        await anyio.sleep(1.5)
        await store.add([NewRow("after", "t.a", "[]", delay=0.0)])
        await done(s, "after")


async def main():
    await (defers if sys.argv[2] == "defers" else works)()
    for span in exporter.get_finished_spans():
        key = span.attributes["messaging.message.id"]
        print(span.name, key, len(span.links))


anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("role", "spans"),
    [
        ("defers", ["process t.a after 1", "send t.a after 0"]),
        ("works", ["process t.a after 0"]),
    ],
)
def test_a_global_tracer_provider_set_after_instrument_is_used_from_then_on(
    tmp_path: Path, backend: str, role: str, spans: list[str]
) -> None:
    # Set once per process: in a process of its own.
    script = tmp_path / "late.py"
    script.write_text(_LATE_PROVIDER)
    out = subprocess.run(
        [sys.executable, str(script), backend, role],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert sorted(out.splitlines()) == spans
