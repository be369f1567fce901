"""OpenTelemetry traces and metrics for duetime (the ``otel`` extra).

One line switches it on for the whole process::

    import duetime.otel

    duetime.otel.instrument()  # the global TracerProvider and MeterProvider

From then on ``defer`` makes a ``send {task}`` span and stores its W3C trace
context with the entry, each run of a durable entry is a ``process {task}``
span linked to it (in whichever process runs it), and the messaging metrics
count what is sent, consumed and how long it took (see the guide "Observing
durable work").  :func:`uninstrument` switches it off.  Only this module
imports OpenTelemetry: a program that never imports it pays nothing.

It is one switch per process rather than a Scheduler argument because a
worker run by ``python -m duetime worker`` has no Scheduler call to pass it to,
and a web process that only defers has no worker: the task module, or the
program's start, turns it on once, as OpenTelemetry's own instrumentations do.

In-memory ``call_*`` callbacks are not traced unless asked, one by one, with
:func:`traced`; :func:`observe_scheduler` adds gauges of a Scheduler's
statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import metrics, trace

from .._instrument import probes
from ._calls import SchedulerGauges, traced_with
from ._durable import DurableTelemetry
from ._prometheus import MetricsServer, serve_metrics

__all__ = [
    "MetricsServer",
    "instrument",
    "instrumented",
    "observe_scheduler",
    "serve_metrics",
    "traced",
    "uninstrument",
]

F = TypeVar("F", bound=Callable[..., Any])

_SCOPE = "duetime"
_gauges: dict[int, tuple[Any, SchedulerGauges]] = {}


def _version() -> str:
    from .. import __version__

    return __version__


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    create_spans: bool = True,
    status_interval: float = 30.0,
) -> None:
    """Trace and measure durable work in this process from now on.

    Calling it again replaces the previous settings.

    :param tracer_provider: where spans go (default: the global one)
    :param meter_provider: where metrics go (default: the global one)
    :param create_spans: give each entry of a ``defer_many`` batch a ``create
        {task}`` span of its own, linked from the batch's ``send`` span (False:
        the send span's context is stored with every entry of the batch)
    :param status_interval: the least time, in seconds, between two counts of
        a worker's store for the ``duetime.entries`` gauge
    :raises TypeError: ``status_interval`` is not a number
    :raises ValueError: ``status_interval`` is not positive and finite
    """
    if isinstance(status_interval, bool) or not isinstance(status_interval, int | float):
        raise TypeError(f"status_interval must be a number, got {status_interval!r}")
    if not 0 < status_interval < float("inf"):
        raise ValueError(f"status_interval must be positive and finite, got {status_interval!r}")
    version = _version()
    tracer = trace.get_tracer(_SCOPE, version, tracer_provider)
    meter = metrics.get_meter(_SCOPE, version, meter_provider)
    probes.durable = DurableTelemetry(
        tracer, meter, create_spans=bool(create_spans), status_interval=float(status_interval)
    )


def uninstrument() -> None:
    """Stop tracing and measuring durable work (a run in progress ends its span)."""
    probes.durable = None


def instrumented() -> bool:
    """Whether :func:`instrument` is in force."""
    return probes.durable is not None


def observe_scheduler(
    scheduler: Any,
    *,
    name: str = "default",
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Report ``scheduler``'s in-memory statistics as gauges: ``duetime.scheduler.pending``,
    ``.running``, ``.lateness.p99`` and ``.lateness.max`` (read from
    :meth:`Scheduler.statistics <duetime.Scheduler.statistics>` at each
    collection), with the attribute ``duetime.scheduler.name``.

    The scheduler is held weakly: a collected one is no longer reported.

    :param scheduler: a :class:`~duetime.Scheduler` (or ThreadedScheduler)
    :param name: tells several schedulers of one process apart
    :param meter_provider: where the gauges go (default: the global one)
    :raises TypeError: ``scheduler`` has no ``statistics()``, or ``name`` is no str
    """
    if not callable(getattr(scheduler, "statistics", None)):
        raise TypeError(f"scheduler must be a duetime Scheduler, got {scheduler!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    held = _gauges.get(id(provider))
    if held is None or held[0] is not provider:
        meter = metrics.get_meter(_SCOPE, _version(), provider)
        held = (provider, SchedulerGauges(meter))
        _gauges[id(provider)] = held
    held[1].add(scheduler, name)


def traced(func: F, *, name: str | None = None, tracer_provider: Any = None) -> F:
    """``func`` wrapped so that each of its runs is a span ``call {name}``, for an
    in-memory ``call_*``: ``scheduler.call_later(5, traced(refresh))``.

    The span has the run's lateness (``duetime.lateness``, seconds) and attempt
    (``duetime.attempt``) when it runs as a Scheduler callback, and records the
    exception it raises.  A sync function stays sync, an async one async.

    :param func: the callback
    :param name: the span's name after ``call`` (default: ``func``'s qualified name)
    :param tracer_provider: where spans go (default: the global one)
    :raises TypeError: ``func`` is not callable
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {func!r}")
    tracer = trace.get_tracer(_SCOPE, _version(), tracer_provider)
    return traced_with(tracer, func, name)
