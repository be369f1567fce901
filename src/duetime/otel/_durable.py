"""The durable wing's spans and metrics: what ``duetime.otel.instrument()`` plugs in.

:class:`DurableTelemetry` is the probe the durable wing's hooks call
(``duetime._instrument.DurableProbe``):

- ``send``: ``defer`` and ``defer_every`` make one PRODUCER span
  ``send {task}`` whose context is stored with the entry (the creation context);
  ``defer_many`` makes one CLIENT span ``send {task}`` for the call and a
  PRODUCER span ``create {task}`` per entry, whose context is stored with that
  entry and which the send span links to (``create_spans=False``: the send span
  is a PRODUCER span and its context is stored with every entry);
- ``process``: each run is a CONSUMER span ``process {task}`` in a new trace,
  linked to the entry's creation context (retries, re-deliveries and a series'
  runs each get their own trace, all linked to the call that deferred them);
- metrics: messages sent and consumed, processing time, lateness, dead
  letters, lost leases, aborts, and entries by status (:mod:`._status`).

The W3C Trace Context (``traceparent``, ``tracestate``) is what is stored,
whatever ``OTEL_PROPAGATORS`` says: a row outlives the process that wrote it and
is read by workers configured elsewhere, and baggage (which may carry what
should never land in a database) is not copied into the store.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, overload

import anyio
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace import Status as SpanStatus
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from ..durable._codec import TRACE_TAG as _TRACE_TAG
from ..durable._codec import trace_carrier, with_trace
from . import _semconv as sc
from ._status import StatusCounts

__all__ = ["DurableTelemetry"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: A process span's parent: none (a new trace), whatever the runner task's context.
_ROOT = Context()
#: The context a run's metrics are recorded in while no span of it records: no
#: span, so no exemplar.  Not empty: the SDK looks the current context up in
#: place of an empty one (a falsy mapping), and a span in it costs an ABC check.
_NO_SPAN = otel_context.set_value("duetime.run", True, Context())
#: At most this many per-task attribute sets are kept (task names come from rows).
_MAX_TASKS = 1000
#: At most this many error types per task get an attribute set kept for them.
_MAX_ERRORS = 100
#: While no TracerProvider is set, the global one is looked up again at most this
#: often (seconds) on the run path (a lookup reads the environment).
_RECHECK = 1.0


class _Tally:
    """A monotonic counter kept in a dict and reported when a collector asks (an
    observable counter): an event costs a dict update, not an SDK measurement,
    which matters on the per-run path."""

    def __init__(self, meter: Meter, name: str, unit: str, description: str) -> None:
        #: The counts by key (the run path adds to a key already here in place).
        self.counts: dict[Hashable, int] = {}
        self._attrs: dict[Hashable, dict[str, Any]] = {}
        meter.create_observable_counter(
            name, callbacks=[self._observe], unit=unit, description=description
        )

    def add(self, n: int, key: Hashable, attrs: dict[str, Any]) -> None:
        """Count ``n`` under ``key``, whose points carry ``attrs``."""
        counts = self.counts
        if key in counts:
            counts[key] += n
        else:
            self._attrs[key] = attrs
            counts[key] = n

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        counts = self.counts.copy()  # one step under the GIL: the loop adds meanwhile
        attrs = self._attrs
        return [Observation(n, attrs[key]) for key, n in counts.items()]


class _Processing:
    """The run in progress in one runner task: its process span (None: no tracer
    in force) and the type of the error its task raised."""

    __slots__ = ("error_type", "span")

    def __init__(self, span: trace.Span | None) -> None:
        self.span = span
        self.error_type: str | None = None


class _PerTask:
    """What every run of one task shares, made once: the span name, the span
    attributes given to ``start_span`` (what a sampler may decide on), and the
    metric attributes (plain dicts of str, shared: never mutated; the SDK cleans,
    copies and hashes them at each record, so only building them is saved)."""

    __slots__ = ("errors", "lateness", "metric", "name", "span")

    def __init__(self, task: str, old: bool) -> None:
        self.name = f"process {task}"
        self.span: dict[str, Any] = {
            sc.SYSTEM: sc.SYSTEM_NAME,
            sc.OPERATION_TYPE: "process",
            sc.OPERATION_NAME: "process",
            sc.DESTINATION: task,
        }
        if old:
            self.span[sc.OLD_OPERATION] = "deliver"
        # messaging.operation.name is required on the consumed and duration metrics.
        self.metric: dict[str, Any] = {
            sc.SYSTEM: sc.SYSTEM_NAME,
            sc.OPERATION_NAME: "process",
            sc.DESTINATION: task,
        }
        # duetime's own histogram: its name says duetime and the operation is
        # always "process"; the task is what a panel splits it by.  Each attribute
        # costs the SDK about a microsecond per record.
        self.lateness: dict[str, Any] = {sc.DESTINATION: task}
        #: The duration's attributes per error type (``error.type`` added).
        self.errors: dict[str, dict[str, Any]] = {}

    def failed(self, error_type: str) -> dict[str, Any]:
        """The duration's attributes of a run that failed with ``error_type``."""
        attrs = self.errors.get(error_type)
        if attrs is None:
            attrs = {**self.metric, sc.ERROR_TYPE: error_type}
            if len(self.errors) < _MAX_ERRORS:
                self.errors[error_type] = attrs
        return attrs


_current: contextvars.ContextVar[_Processing | None] = contextvars.ContextVar(
    "duetime_otel_processing", default=None
)
#: The event loop's clock (what ``anyio.current_time`` reads), looked up once when
#: a worker starts and inherited by its tasks: ``anyio.current_time`` finds the
#: backend anew at each call, about a microsecond on the run path.
_loop_clock: contextvars.ContextVar[Callable[[], float]] = contextvars.ContextVar(
    "duetime_otel_loop_clock", default=anyio.current_time
)


def _clock_of_this_loop() -> Callable[[], float]:
    """The running event loop's clock: asyncio's ``loop.time`` (what anyio reads
    there), else ``anyio.current_time``."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # not asyncio (trio)
        return anyio.current_time


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


_OUTCOMES = {"Done": "done", "RetryAt": "retry", "NextOccurrence": "next", "Dead": "dead"}


def _outcome_name(outcome: Any) -> str:
    """``done``, ``retry``, ``next``, ``dead``, ``release``, ``aborted``, or ``none``."""
    if outcome is None:
        return "none"
    name = type(outcome).__name__
    return _OUTCOMES.get(name) or name.lower()


class DurableTelemetry:
    """Spans and metrics for the durable wing (the probe its hooks call).

    :param tracer: where spans go
    :param meter: where metrics go
    :param create_spans: a ``create {task}`` span per entry of ``defer_many``
    :param status_interval: the least time between two counts of a store's
        entries by status (each count is taken when a collector asks)
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        meter: Meter,
        *,
        create_spans: bool = True,
        status_interval: float = 30.0,
    ) -> None:
        self._tracer = tracer
        self._create_spans = create_spans
        self._old = sc.emit_old()
        self._sent = _Tally(
            meter,
            "messaging.client.sent.messages",
            "{message}",
            "Entries deferred (stored) by this process.",
        )
        self._consumed = _Tally(
            meter,
            "messaging.client.consumed.messages",
            "{message}",
            "Claimed entries handed to their task by this process's worker.",
        )
        self._duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long a run took, from claim to outcome.",
            explicit_bucket_boundaries_advisory=sc.DURATION_BUCKETS,
        )
        self._lateness = meter.create_histogram(
            "duetime.entry.lateness",
            unit="s",
            description="How late a run started: its start minus its due time.",
            explicit_bucket_boundaries_advisory=sc.LATENESS_BUCKETS,
        )
        self._dead = _Tally(
            meter,
            "duetime.dead_letters",
            "{entry}",
            "Entries this worker dead-lettered (FAILED for good).",
        )
        self._lost = _Tally(
            meter,
            "duetime.leases.lost",
            "{lease}",
            "Runs whose lease was lost (taken over, or lapsed before the finish).",
        )
        self._aborts = _Tally(
            meter, "duetime.aborts", "{entry}", "Runs this worker ended as aborted."
        )
        self.status = StatusCounts(meter, status_interval)
        self._tasks: dict[str, _PerTask] = {}
        # A tracer that makes no spans (no TracerProvider in force): the runs are
        # measured without one.  While the global provider is still the API's
        # proxy, it is asked again at each send, when a worker starts, and at
        # most every _RECHECK seconds on the run path, until a real provider is
        # set (set once: then for good).
        self._proxy = isinstance(tracer, trace.ProxyTracer)
        self._tracing = not isinstance(tracer, trace.NoOpTracer) and not self._proxy
        self._recheck_at = 0.0

    def _per_task(self, task: str) -> _PerTask:
        """What the runs of ``task`` share (kept for at most ``_MAX_TASKS`` tasks:
        task names come from rows)."""
        per = self._tasks.get(task)
        if per is None:
            per = _PerTask(task, self._old)
            if len(self._tasks) < _MAX_TASKS:
                self._tasks[task] = per
        return per

    def _attrs(self, task: str) -> dict[str, Any]:
        """The metric attributes of ``task`` (shared: never mutate)."""
        per = self._tasks.get(task)
        return (per or self._per_task(task)).metric

    def _traces(self, now: float | None = None) -> bool:
        """Whether spans are made: a TracerProvider is in force.

        :param now: ``time.perf_counter()`` on the run path: the global provider
            is then looked up only if ``_RECHECK`` seconds passed since the last
            lookup (None: looked up now)
        """
        if self._proxy:
            if now is not None:
                if now < self._recheck_at:
                    return False
                self._recheck_at = now + _RECHECK
            provider = trace.get_tracer_provider()
            if isinstance(provider, trace.ProxyTracerProvider):
                return False
            self._proxy = False
            self._tracing = not isinstance(provider, trace.NoOpTracerProvider)
        return self._tracing

    # -- producing --------------------------------------------------------------------

    async def send(
        self,
        add: Callable[[Sequence[Any]], Awaitable[list[Any]]],
        rows: Sequence[Any],
        batch: bool,
    ) -> list[Any]:
        """Store ``rows`` through ``add`` inside a send span, each with its creation
        context; count them in ``messaging.client.sent.messages``."""
        if not rows:
            return await add(rows)
        task: str = rows[0].task
        n = len(rows)
        metric = {sc.SYSTEM: sc.SYSTEM_NAME, sc.OPERATION_NAME: "send", sc.DESTINATION: task}
        if not (self._tracing or self._traces()):
            # No span would be recorded and no context stored: only count.
            try:
                entries = await add(rows)
            except Exception as exc:
                error = _type_name(exc)
                self._sent.add(n, (task, error), {**metric, sc.ERROR_TYPE: error})
                raise
            self._sent.add(n, task, metric)
            return entries
        attrs: dict[str, Any] = {
            sc.SYSTEM: sc.SYSTEM_NAME,
            sc.OPERATION_TYPE: "send",
            sc.OPERATION_NAME: "send",
            sc.DESTINATION: task,
        }
        if self._old:
            attrs[sc.OLD_OPERATION] = "publish"
        links: list[Link] | None = None
        kind = SpanKind.PRODUCER
        stamped: list[Any] | None = None
        if batch:
            attrs[sc.BATCH_COUNT] = n
            if self._create_spans:
                kind = SpanKind.CLIENT
                links, stamped = self._create(task, rows)
        else:
            attrs[sc.MESSAGE_ID] = rows[0].key
        with self._tracer.start_as_current_span(
            f"send {task}", kind=kind, attributes=attrs, links=links
        ) as span:
            if stamped is None:  # the send span is the creation context of every row
                carrier: dict[str, str] = {}
                _PROPAGATOR.inject(carrier)
                stamped = [_stamp(row, carrier) for row in rows]
            try:
                entries = await add(stamped)
            except Exception as exc:
                error = _type_name(exc)
                span.set_attribute(sc.ERROR_TYPE, error)
                self._sent.add(n, (task, error), {**metric, sc.ERROR_TYPE: error})
                raise
        self._sent.add(n, task, metric)
        return entries

    def _create(self, task: str, rows: Sequence[Any]) -> tuple[list[Link], list[Any]]:
        """One ``create {task}`` span per row: the links the send span gets, and the
        rows stamped with their own creation contexts."""
        links: list[Link] = []
        stamped: list[Any] = []
        base = {
            sc.SYSTEM: sc.SYSTEM_NAME,
            sc.OPERATION_TYPE: "create",
            sc.OPERATION_NAME: "create",
            sc.DESTINATION: task,
        }
        if self._old:
            base[sc.OLD_OPERATION] = "create"
        name = f"create {task}"
        for row in rows:
            span = self._tracer.start_span(
                name, kind=SpanKind.PRODUCER, attributes={**base, sc.MESSAGE_ID: row.key}
            )
            span.end()
            context = span.get_span_context()
            links.append(Link(context, {sc.MESSAGE_ID: row.key}))
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
            stamped.append(_stamp(row, carrier))
        return links, stamped

    # -- consuming --------------------------------------------------------------------

    async def process(
        self,
        execute: Callable[[Any, Any], Awaitable[Any]],
        claim: Any,
        run: Any,
    ) -> Any:
        """Run ``execute(claim, run)`` inside a CONSUMER span linked to the entry's
        creation context; record lateness, duration and the outcome.

        Without a TracerProvider in force no span is made (nor its attributes,
        nor the link); the metrics are recorded all the same.  A span is started
        with the attributes a sampler may decide on and the link (read from the
        payload only if the sampler looks at it, or the span records); the
        per-message attributes are set only on a span that records.
        """
        entry = claim.entry
        task: str = entry.task
        per = self._tasks.get(task) or self._per_task(task)
        started = _loop_clock.get()()
        clock = time.perf_counter()
        # The claim's store time, plus what passed here since it came back.
        lateness = claim.lease_until - claim.lease + (started - run.claimed) - entry.due.timestamp()
        consumed = self._consumed.counts
        if task in consumed:
            consumed[task] += 1
        else:
            self._consumed.add(1, task, per.metric)
        late = lateness if lateness > 0.0 else 0.0  # the histogram takes no negative value
        if not (
            self._tracing or (self._proxy and clock >= self._recheck_at and self._traces(clock))
        ):
            self._lateness.record(late, per.lateness, _NO_SPAN)
            state = _Processing(None)
            token = _current.set(state)
            outcome: Any = None
            try:
                outcome = await execute(claim, run)
                return outcome
            finally:
                _current.reset(token)
                error = state.error_type
                if error is None and type(outcome).__name__ == "Dead":
                    error = outcome.error_type or "_OTHER"  # dead before its task ran
                self._duration.record(
                    time.perf_counter() - clock,
                    per.metric if error is None else per.failed(error),
                    _NO_SPAN,
                )
        span = self._tracer.start_span(
            per.name,
            context=_ROOT,
            kind=SpanKind.CONSUMER,
            attributes=per.span,
            links=_StoredLink(claim.payload),
        )
        # The task's own spans are children of this one, sampled or not.
        context = trace.set_span_in_context(span, _ROOT)
        if span.is_recording():
            attrs = {
                sc.MESSAGE_ID: entry.key,
                sc.ATTEMPT: entry.attempt,
                sc.DELIVERIES: entry.deliveries,
                sc.LATENESS: lateness,
            }
            if entry.schedule is not None:
                attrs[sc.OCCURRENCE] = entry.occurrence
            span.set_attributes(attrs)
            # Its metrics are recorded in its context: a sampled span is their
            # exemplar (with the default trace_based filter).
            recorded_in = context
        else:
            recorded_in = _NO_SPAN
        self._lateness.record(late, per.lateness, recorded_in)
        state = _Processing(span)
        token = _current.set(state)
        outcome = None
        attached = otel_context.attach(context)  # cheaper than use_span
        try:
            outcome = await execute(claim, run)
            return outcome
        finally:
            otel_context.detach(attached)
            _current.reset(token)
            self._ran(per, state, outcome, clock, recorded_in)
            span.end()

    def _ran(
        self, per: _PerTask, state: _Processing, outcome: Any, clock: float, context: Context
    ) -> None:
        """Record a run's duration (``clock``: its start) in ``context``, and its
        outcome on its span."""
        duration = time.perf_counter() - clock
        span = state.span
        if state.error_type is None and type(outcome).__name__ == "Dead":
            # Dead-lettered before its task ran (unknown task, bad payload...).
            state.error_type = outcome.error_type or "_OTHER"
            if span is not None and span.is_recording():
                span.set_attribute(sc.ERROR_TYPE, state.error_type)
                span.set_status(SpanStatus(StatusCode.ERROR, outcome.error[:300]))
        if span is not None and span.is_recording():
            span.set_attribute(sc.OUTCOME, _outcome_name(outcome))
        if state.error_type is None:
            self._duration.record(duration, per.metric, context)
        else:
            self._duration.record(duration, per.failed(state.error_type), context)

    def failed(self, error: BaseException) -> None:
        """Record ``error`` (the task's exception) on the process span in progress."""
        state = _current.get()
        if state is None:
            return
        state.error_type = _type_name(error)
        span = state.span
        if span is None or not span.is_recording():
            return
        span.record_exception(error)
        span.set_attribute(sc.ERROR_TYPE, state.error_type)
        span.set_status(SpanStatus(StatusCode.ERROR, f"{type(error).__qualname__}: {error}"[:300]))

    def finished(self, task: str, outcome: Any, recorded: bool, lost: bool) -> None:
        """Count a dead letter, an abort or a lost lease."""
        if recorded and not lost:
            name = type(outcome).__name__
            if name == "Dead":
                self._dead.add(1, task, self._attrs(task))
            elif name == "Aborted":
                self._aborts.add(1, task, self._attrs(task))
        elif lost or outcome is not None:
            self._lost.add(1, task, self._attrs(task))

    def worker_started(self, store: Any, tg: Any) -> None:
        """Observe ``store``'s entries by status while ``tg`` runs (and look the
        global TracerProvider up again, if none was set yet); the tasks the worker
        starts from here on read the event loop's clock directly."""
        self._traces()
        _loop_clock.set(_clock_of_this_loop())
        self.status.watch(store, tg)


def _stamp(row: Any, carrier: dict[str, str]) -> Any:
    """``row`` with ``carrier`` (a trace context) stored in its payload."""
    if not carrier:
        return row
    payload = with_trace(row.payload, carrier)
    return row if payload is row.payload else dataclasses.replace(row, payload=payload)


class _StoredLink(Sequence[Link]):
    """A run's link to the creation context stored in its payload: none, or one.

    The payload is read when the link is first asked for: a sampler that never
    looks at links (``TraceIdRatioBased``, ``ParentBased`` on a new trace) and a
    span that does not record cost no parse.  Truth is answered without a parse
    (a trace-context element is stored); a stored context that turns out not to
    be valid is an empty sequence.
    """

    __slots__ = ("_links", "_payload")

    def __init__(self, payload: str) -> None:
        self._payload = payload
        self._links: tuple[Link, ...] | None = None

    def _read(self) -> tuple[Link, ...]:
        links = self._links
        if links is None:
            created = _created(self._payload)
            links = self._links = () if created is None else (Link(created),)
        return links

    def __bool__(self) -> bool:
        if self._links is None:
            return self._payload.endswith("}]") and _TRACE_START in self._payload
        return bool(self._links)

    def __len__(self) -> int:
        return len(self._read())

    @overload
    def __getitem__(self, index: int) -> Link: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Link]: ...
    def __getitem__(self, index: int | slice) -> Link | Sequence[Link]:
        return self._read()[index]

    def __iter__(self) -> Iterator[Link]:
        return iter(self._read())


#: How the element ``with_trace`` writes begins.
_TRACE_START = '{"' + _TRACE_TAG + '":'
#: How the element ``with_trace`` writes for a bare traceparent begins.
_BARE = '{"$trace":{"traceparent":"'


def _created(payload: str) -> SpanContext | None:
    """The creation context stored in ``payload`` (its W3C ``traceparent`` and
    ``tracestate``), or None: none stored, or not a valid version-00 one."""
    # The common case, a traceparent alone, read without decoding JSON.
    tail = len(_BARE) + 60  # the element, its 55-character value, and "," or "["
    if len(payload) >= tail and payload.endswith('"}}]') and payload[-tail] in ",[":
        i = len(payload) - len(_BARE) - 59
        if payload.startswith(_BARE, i):
            return _span_context(payload[i + len(_BARE) : -4], None)
    carrier = trace_carrier(payload)
    if not carrier:
        return None
    return _span_context(carrier.get("traceparent", ""), carrier.get("tracestate"))


def _span_context(parent: str, state: str | None) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (version 00), or None."""
    # 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>, parsed by hand: this
    # runs once per run, and the propagator's regular expression costs more.
    if len(parent) != 55 or parent[:3] != "00-" or parent[35] != "-" or parent[52] != "-":
        return None
    try:
        trace_id = int(parent[3:35], 16)
        span_id = int(parent[36:52], 16)
        flags = int(parent[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(
        trace_id, span_id, True, _FLAGS[flags], TraceState.from_header([state]) if state else None
    )


#: Every W3C trace-flags byte, made once.
_FLAGS = tuple(TraceFlags(flags) for flags in range(256))
