"""In-memory ``call_*`` callbacks: opt-in gauges of a Scheduler, and opt-in spans.

Neither touches the Scheduler's hot path: the gauges read
``Scheduler.statistics()`` when a collector asks, and a span exists only for a
callback wrapped in :func:`traced`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace import StatusCode

from .._handle import current_run

__all__ = ["SchedulerGauges", "traced_with"]

F = TypeVar("F", bound=Callable[..., Any])


class SchedulerGauges:
    """``duetime.scheduler.*`` gauges over the Schedulers observed on one meter."""

    def __init__(self, meter: Meter) -> None:
        self._schedulers: list[tuple[weakref.ref[Any], dict[str, str]]] = []
        self._last: list[tuple[dict[str, str], Any]] = []
        meter.create_observable_gauge(
            "duetime.scheduler.pending",
            callbacks=[self._pending],
            unit="{callback}",
            description="Callbacks scheduled and not started.",
        )
        meter.create_observable_gauge(
            "duetime.scheduler.running",
            callbacks=[self._running],
            unit="{callback}",
            description="Callbacks started and not finished.",
        )
        meter.create_observable_gauge(
            "duetime.scheduler.lateness.p99",
            callbacks=[self._p99],
            unit="s",
            description="The 99th percentile of the last 1024 start delays past the due time.",
        )
        meter.create_observable_gauge(
            "duetime.scheduler.lateness.max",
            callbacks=[self._max],
            unit="s",
            description="The largest start delay past the due time seen.",
        )

    def add(self, scheduler: Any, name: str) -> None:
        """Observe ``scheduler`` (held weakly) under the attribute ``duetime.scheduler.name``."""
        self._schedulers.append((weakref.ref(scheduler), {"duetime.scheduler.name": name}))

    def _snapshots(self) -> list[tuple[dict[str, str], Any]]:
        out = []
        alive = []
        for ref, attrs in self._schedulers:
            s = ref()
            if s is None:
                continue
            alive.append((ref, attrs))
            # RuntimeError: its lateness deque changed meanwhile (another thread).
            with contextlib.suppress(RuntimeError):
                out.append((attrs, s.statistics()))
        self._schedulers = alive
        self._last = out
        return out

    def _pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        # The first gauge of a collection takes the snapshots the others reuse.
        return [Observation(st.pending, attrs) for attrs, st in self._snapshots()]

    def _running(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(st.running, attrs) for attrs, st in self._last]

    def _p99(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(st.p99_lateness, attrs) for attrs, st in self._last]

    def _max(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(st.max_lateness, attrs) for attrs, st in self._last]


def traced_with(tracer: trace.Tracer, func: F, name: str | None) -> F:
    """``func`` wrapped so that each run is an INTERNAL span ``call {name}``."""
    span_name = f"call {name or getattr(func, '__qualname__', repr(func))}"

    def start() -> trace.Span:
        attrs: dict[str, Any] = {"code.function.name": span_name[5:]}
        info = current_run()
        if info is not None:
            attrs["duetime.lateness"] = max(info.started - info.scheduled, 0.0)
            attrs["duetime.attempt"] = info.attempt
        return tracer.start_span(span_name, attributes=attrs)

    def fail(span: trace.Span, exc: BaseException) -> None:
        span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(SpanStatus(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"[:300]))

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            span = start()
            try:
                with trace.use_span(
                    span, end_on_exit=False, record_exception=False, set_status_on_exception=False
                ):
                    return await func(*args, **kwargs)
            except Exception as exc:
                fail(span, exc)
                raise
            finally:
                span.end()

        return run_async  # type: ignore[return-value]

    @functools.wraps(func)
    def run_sync(*args: Any, **kwargs: Any) -> Any:
        span = start()
        try:
            with trace.use_span(
                span, end_on_exit=False, record_exception=False, set_status_on_exception=False
            ):
                return func(*args, **kwargs)
        except Exception as exc:
            fail(span, exc)
            raise
        finally:
            span.end()

    return run_sync  # type: ignore[return-value]
