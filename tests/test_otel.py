"""duetime.otel for in-memory callbacks (opt-in gauges and spans), and what it costs when off."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import anyio
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import duetime
import duetime.otel
from duetime import Retry, Scheduler
from tests.otel_support import Telemetry, attrs, telemetry

__all__ = ["telemetry"]  # the fixture, imported for the tests below


def test_off_imports_nothing_from_opentelemetry() -> None:
    # A program that does durable work and in-memory callbacks without turning
    # telemetry on loads no OpenTelemetry module (and no duetime.otel).
    code = textwrap.dedent(
        """
        import sys
        import anyio
        import duetime
        from duetime import Scheduler, Status
        from duetime.durable import TaskRegistry
        from duetime.testing import MemoryStore

        tasks = TaskRegistry()

        @tasks.task("t")
        async def t(x: int) -> int:
            return x

        async def main() -> None:
            async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
                await s.defer_many("t", [(1,), (2,)])
                d = await s.defer("t", 3)
                assert await d == 3
                assert await s.call_later(0.01, lambda: 4) == 4

        anyio.run(main)
        loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry", "duetime.otel")))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.anyio
async def test_observed_scheduler_gauges(telemetry: Telemetry) -> None:
    async with Scheduler() as s:
        duetime.otel.observe_scheduler(s, name="main", meter_provider=telemetry.meter_provider)
        for _ in range(3):
            s.call_later(100, lambda: None)
        gate = anyio.Event()

        async def waits() -> None:
            await gate.wait()

        s.call_soon(waits)
        late = s.call_later(1, lambda: None)
        await anyio.sleep(0.5)
        values = {
            name: [
                (p.attributes["duetime.scheduler.name"], p.value) for p in telemetry.points(name)
            ]
            for name in (
                "duetime.scheduler.pending",
                "duetime.scheduler.running",
                "duetime.scheduler.lateness.p99",
                "duetime.scheduler.lateness.max",
            )
        }
        assert values["duetime.scheduler.pending"] == [("main", 4)]
        assert values["duetime.scheduler.running"] == [("main", 1)]
        assert values["duetime.scheduler.lateness.max"][0][1] >= 0.0
        gate.set()
        await late
        st = s.statistics()
        (p99,) = telemetry.points("duetime.scheduler.lateness.p99")
        assert p99.value == st.p99_lateness


def test_observe_scheduler_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="Scheduler"):
        duetime.otel.observe_scheduler(object())
    with pytest.raises(TypeError, match="name"):
        duetime.otel.observe_scheduler(Scheduler(), name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        duetime.otel.traced(3)  # type: ignore[type-var]
    with pytest.raises(ValueError, match="status_interval"):
        duetime.otel.instrument(status_interval=0)
    with pytest.raises(TypeError, match="status_interval"):
        duetime.otel.instrument(status_interval="1")  # type: ignore[arg-type]
    assert not duetime.otel.instrumented()


@pytest.mark.anyio
async def test_traced_callbacks_are_spans_with_lateness_and_errors(telemetry: Telemetry) -> None:
    provider = telemetry.tracer_provider
    calls: list[str] = []

    def tick(x: int) -> int:
        calls.append("tick")
        return x

    async def fetch() -> str:
        await anyio.sleep(0.1)
        return "ok"

    attempts = 0

    def flaky() -> None:
        nonlocal attempts
        attempts += 1
        raise KeyError("gone")

    async with Scheduler() as s:
        h1 = s.call_later(1, duetime.otel.traced(tick, tracer_provider=provider), 5)
        h2 = s.call_soon(duetime.otel.traced(fetch, name="fetch page", tracer_provider=provider))
        h3 = s.call_soon(
            duetime.otel.traced(flaky, tracer_provider=provider),
            retry=Retry(attempts=2, backoff=0.5, jitter=0.0),
        )
        assert await h1 == 5
        assert await h2 == "ok"
        with pytest.raises(KeyError):
            await h3
    (t,) = telemetry.spans(
        "call test_traced_callbacks_are_spans_with_lateness_and_errors.<locals>.tick"
    )
    assert t.kind is SpanKind.INTERNAL
    assert attrs(t)["duetime.attempt"] == 1
    assert 0.0 <= attrs(t)["duetime.lateness"] < 0.5
    (f,) = telemetry.spans("call fetch page")
    assert f.status.status_code is StatusCode.UNSET
    failed = telemetry.spans(
        "call test_traced_callbacks_are_spans_with_lateness_and_errors.<locals>.flaky"
    )
    assert [attrs(s)["duetime.attempt"] for s in failed] == [1, 2]
    for span in failed:
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == "KeyError"
        assert [e.name for e in span.events] == ["exception"]
    assert calls == ["tick"]


def test_the_otel_extra_needs_the_api_only() -> None:
    # With the SDK and the Prometheus exporter unimportable, duetime.otel works on
    # the API's no-op providers: durable work runs, and no context is stored.
    code = textwrap.dedent(
        """
        import sys

        class NoSDK:
            def find_spec(self, name, path=None, target=None):
                if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "prometheus")):
                    raise ImportError(f"{name} is not installed")
                return None

        sys.meta_path.insert(0, NoSDK())
        import anyio
        import duetime.otel
        from duetime import Scheduler
        from duetime.durable import TaskRegistry
        from duetime.testing import MemoryStore

        tasks = TaskRegistry()

        @tasks.task("t")
        async def t(x: int) -> int:
            return x

        async def main() -> None:
            store = MemoryStore()
            async with Scheduler(store=store, tasks=tasks) as s:
                d = await s.defer("t", 3, key="k")
                assert await d == 3
            async with Scheduler(store=store, tasks=tasks, worker=False) as s:
                await s.defer("t", 4, key="p")
            (claim,) = await store.claim("me", 10)
            assert claim.payload == "[4]", claim.payload

        duetime.otel.instrument()
        anyio.run(main)
        try:
            duetime.otel.serve_metrics(0)
        except ImportError as exc:
            assert "prometheus extra" in str(exc), exc
        else:
            raise AssertionError("serve_metrics needs the prometheus extra")
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stdout + out.stderr


def test_the_metrics_endpoint_keeps_no_exemplars() -> None:
    # Prometheus text has no place for exemplars; the SDK would otherwise look at
    # the current span at every record to decide whether to keep one.
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter

    server = duetime.otel.serve_metrics(0)
    try:
        config = server.meter_provider._sdk_config  # no public accessor
        assert isinstance(config.exemplar_filter, AlwaysOffExemplarFilter)
    finally:
        server.close()
