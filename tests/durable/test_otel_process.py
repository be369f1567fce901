"""Telemetry across processes: the producer here, ``python -m duetime worker`` in a
subprocess (asyncio and trio), its spans written to a file and its ``/metrics``
scraped over HTTP.

Real processes, real time: every wait has a generous deadline, no assertion is
about a duration.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import duetime
import duetime.otel
from duetime import Status
from duetime.durable import SQLiteStore, TaskRegistry

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX signals")

SRC = str(Path(duetime.__file__).resolve().parents[1])

# The worker's task module turns tracing on the way an application would: the
# global TracerProvider, here with an exporter that writes each span as a JSON line.
JOBS = textwrap.dedent(
    """
    import json
    import os

    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    import duetime.otel
    from duetime.durable import TaskRegistry

    class FileExporter(SpanExporter):
        def export(self, spans):
            with open(os.environ["SPANS_FILE"], "a") as f:
                for s in spans:
                    f.write(json.dumps({
                        "name": s.name,
                        "kind": s.kind.name,
                        "trace_id": s.context.trace_id,
                        "parent": s.parent.span_id if s.parent else None,
                        "links": [[l.context.trace_id, l.context.span_id] for l in s.links],
                        "attributes": dict(s.attributes),
                    }) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter()))
    trace.set_tracer_provider(provider)
    duetime.otel.instrument()

    tasks = TaskRegistry()

    @tasks.task("jobs.add")
    async def add(a: int, b: int) -> int:
        return a + b

    @tasks.task("jobs.fail")
    def fail() -> None:
        raise RuntimeError("no luck")
    """
)

producer = TaskRegistry()
producer.task("jobs.add")(lambda a, b: None)
producer.task("jobs.fail")(lambda: None)


class Worker:
    """A ``python -m duetime worker`` process whose stderr a thread collects."""

    def __init__(self, cwd: Path, url: str, *extra: str) -> None:
        (cwd / "otel_jobs.py").write_text(JOBS)
        self.spans_file = cwd / "spans.jsonl"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([SRC, str(cwd)]),
            "SPANS_FILE": str(self.spans_file),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "duetime", "worker", "otel_jobs:tasks", "--store", url, *extra],
            cwd=cwd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: Callable[[], bool], limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while not what():
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"the worker exited ({self.proc.returncode}):\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out:\n{self.text}")
            time.sleep(0.05)

    def spans(self) -> list[dict[str, object]]:
        if not self.spans_file.exists():
            return []
        lines = self.spans_file.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def metrics_url(self) -> str:
        found = re.search(r"serving Prometheus metrics on (http://\S+/metrics)", self.text)
        return found.group(1) if found else ""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running 60 s after SIGTERM:\n{self.text}") from None
        self._reader.join(5)
        return status


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the Prometheus sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_trace_crosses_processes_and_metrics_are_scraped(tmp_path: Path, backend: str) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    duetime.otel.instrument(tracer_provider=provider)

    async def defer() -> None:
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer, worker=False) as s:
            await s.defer("jobs.add", 2, 3, key="sum")
            await s.defer("jobs.fail", key="bad")

    async def status(key: str) -> Status | None:
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer, worker=False) as s:
            e = await s.deferred(key)
            return None if e is None else e.status

    try:
        anyio.run(defer, backend=backend)
    finally:
        duetime.otel.uninstrument()
    (send,) = [s for s in exporter.get_finished_spans() if s.name == "send jobs.add"]
    assert send.kind is SpanKind.PRODUCER
    assert send.context is not None

    worker = Worker(tmp_path, url, "--metrics-port", "0", "--backend", backend)
    try:
        worker.wait_for(lambda: len(worker.spans()) >= 2)
        worker.wait_for(lambda: worker.metrics_url() != "")
        runs = {s["name"]: s for s in worker.spans()}
        run = runs["process jobs.add"]
        assert run["kind"] == "CONSUMER"
        assert run["parent"] is None  # a new trace in the worker ...
        assert run["trace_id"] != send.context.trace_id
        # ... linked to the producer's span in this process.
        assert run["links"] == [[send.context.trace_id, send.context.span_id]]
        attrs = run["attributes"]
        assert isinstance(attrs, dict)
        assert attrs["messaging.message.id"] == "sum"
        assert attrs["messaging.destination.name"] == "jobs.add"
        failed = runs["process jobs.fail"]
        assert isinstance(failed["attributes"], dict)
        assert failed["attributes"]["error.type"] == "RuntimeError"
        assert anyio.run(status, "sum", backend=backend) is Status.COMPLETED
        assert anyio.run(status, "bad", backend=backend) is Status.FAILED

        # /metrics over HTTP, from the worker's thread server.
        assert worker.metrics_url().startswith("http://127.0.0.1:")
        text = scrape(worker.metrics_url())
        add = {"messaging_destination_name": "jobs.add", "messaging_system": "duetime"}
        assert sample(text, "messaging_client_consumed_messages_total", **add) == 1
        assert sample(text, "messaging_process_duration_seconds_count", **add) == 1
        lateness = {"messaging_destination_name": "jobs.add"}
        assert sample(text, "duetime_entry_lateness_seconds_count", **lateness) == 1
        (late,) = [
            line
            for line in text.splitlines()
            if line.startswith("duetime_entry_lateness_seconds_count{") and "jobs.add" in line
        ]
        assert "messaging_system" not in late  # the metric's name says duetime
        fail = {"messaging_destination_name": "jobs.fail"}
        assert sample(text, "duetime_dead_letters_total", **fail) == 1
        assert (
            sample(text, "messaging_process_duration_seconds_count", error_type="RuntimeError") == 1
        )

        # Entries by status: the scrape asked the worker's loop for a count; the
        # next scrape reports it.
        def counted() -> bool:
            return (
                sample(
                    scrape(worker.metrics_url()),
                    "duetime_entries",
                    duetime_entry_status="COMPLETED",
                )
                == 1
            )

        worker.wait_for(counted)
        text = scrape(worker.metrics_url())
        assert sample(text, "duetime_entries", duetime_entry_status="FAILED") == 1
        assert sample(text, "duetime_entries", duetime_entry_status="PENDING") == 0
    finally:
        status_code = worker.stop()
    assert status_code == 0, worker.text


def test_metrics_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = Worker(tmp_path, f"sqlite:///{tmp_path / 'j.db'}", "--metrics-port", str(port))
        assert worker.proc.wait(timeout=60) == 2
        worker._reader.join(5)
    assert f"--metrics-port: cannot listen on 127.0.0.1:{port}" in worker.text
    assert "Traceback" not in worker.text
