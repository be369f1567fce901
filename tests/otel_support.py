"""OpenTelemetry's SDK set up for a test: spans and metrics kept in memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import duetime.otel


def attrs(item: Any) -> dict[str, Any]:
    """The attributes of a span, a link or an event, as a plain dict."""
    return dict(item.attributes or {})


@dataclass
class Telemetry:
    """What a test reads: the finished spans, and the metrics collected now."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def points(self, metric: str) -> list[Any]:
        """The data points of ``metric`` in one collection (empty if none)."""
        return self.collect().get(metric, [])

    def collect(self) -> dict[str, list[Any]]:
        """Every metric's data points, by name, in one collection (a collection
        hands each kept exemplar out once)."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out

    def total(self, metric: str, **attrs: Any) -> float:
        """The sum (counters) or count (histograms) of ``metric`` over the points
        whose attributes include ``attrs`` (dots written as ``__``)."""
        want = {k.replace("__", "."): v for k, v in attrs.items()}
        n = 0.0
        for p in self.points(metric):
            if all(p.attributes.get(k) == v for k, v in want.items()):
                n += p.count if hasattr(p, "bucket_counts") else p.value
        return n


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    duetime.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    try:
        yield Telemetry(exporter, reader, tracer_provider, meter_provider)
    finally:
        duetime.otel.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()
