"""Observing durable work: the code of docs/guide-observing.md.

Run it with ``python docs/examples/observing.py`` (it needs the OpenTelemetry
SDK: ``pip install 'duetime[otel]' opentelemetry-sdk``);
tests/test_docs_examples.py runs ``main()`` on virtual time on asyncio and on trio.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import anyio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import duetime.otel
from duetime import Scheduler, Status
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore

tasks = TaskRegistry()


@tasks.task("billing.charge")
async def charge(customer: str, cents: int) -> str:
    if cents < 0:
        raise ValueError(f"refunds go elsewhere ({cents})")
    return f"charged {customer}"


# --8<-- [start:json-logs]
# The attributes every LogRecord has; anything else came in through extra=.
STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in STANDARD})
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def log_as_json(stream: Any) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("duetime")  # the core, duetime.durable, duetime.durable.store
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler
    # --8<-- [end:json-logs]


async def json_logs() -> None:
    out = io.StringIO()
    handler = log_as_json(out)
    try:
        async with Scheduler(store=MemoryStore(), tasks=tasks) as scheduler:
            await scheduler.defer(charge, "acme", -5, key="refund-7")
            while (e := await scheduler.deferred("refund-7")) and e.status is not Status.FAILED:
                await anyio.sleep(0.1)
    finally:
        logging.getLogger("duetime").removeHandler(handler)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    (dead,) = [r for r in records if r["level"] == "ERROR"]
    assert dead["logger"] == "duetime.durable"
    assert (dead["key"], dead["task"], dead["attempt"]) == ("refund-7", "billing.charge", 1)
    assert "ValueError: refunds go elsewhere (-5)" in dead["traceback"]
    assert [r["message"].split()[0] for r in records if r["level"] == "INFO"] == ["duetime"] * 2


async def traces_and_metrics() -> None:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    # --8<-- [start:instrument]
    duetime.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    # --8<-- [end:instrument]
    try:
        async with Scheduler(store=MemoryStore(), tasks=tasks) as scheduler:
            handle = await scheduler.defer(charge, "acme", 500, key="invoice-1")
            assert await handle == "charged acme"
    finally:
        duetime.otel.uninstrument()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    send, run = spans["send billing.charge"], spans["process billing.charge"]
    assert send.context is not None
    assert run.parent is None  # a trace of its own, linked to the deferring call
    assert [link.context.span_id for link in run.links] == [send.context.span_id]
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"messaging.client.sent.messages", "messaging.process.duration"} <= names


async def main() -> None:
    await json_logs()
    await traces_and_metrics()
    print("observing: every check passed")


if __name__ == "__main__":
    anyio.run(main)
