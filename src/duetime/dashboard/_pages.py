"""The dashboard's pages (GET only: they read the store, never change it)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from duetime import Status
from duetime.durable import EntryQuery, Page, series_times
from duetime.durable._codec import trace_id

from ._charts import lateness_chart, throughput_chart
from ._context import Dashboard, logger
from ._security import Grant
from ._text import redact_text

__all__ = [
    "DONE",
    "describe",
    "dead_letters",
    "entries",
    "entry",
    "overview",
    "parse_query",
    "series",
    "store_error",
]

#: The largest page a visitor may ask for.
MAX_LIMIT = 200
#: The statuses shown as columns, in order.
STATUSES = tuple(Status)

#: What an action's redirect says (``?done=CODE``): fixed text, never echoed input.
DONE = {
    "retried": "Retried: the entry is PENDING again, due now.",
    "deleted": "Deleted.",
    "cancelled": "Cancelled.",
    "aborted": "Abort requested: the worker running it will stop it.",
    "unchanged": "Nothing changed: the entry was not in a state that allows it (any more).",
    "bulk-retried": "Retried {n} dead letters.",
    "bulk-deleted": "Deleted {n} dead letters.",
}


@dataclass(slots=True)
class Filters:
    """A page's filters as the form shows them, and the query they make."""

    values: dict[str, str] = field(default_factory=dict)
    query: EntryQuery | None = None
    error: str | None = None


def _time_param(text: str) -> float:
    """A time from a form: epoch seconds, or ISO 8601 (UTC unless it says otherwise).

    :raises ValueError: neither
    """
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        value = parsed.timestamp()
    if not math.isfinite(value):
        raise ValueError("not a finite time")
    return value


def parse_query(
    params: QueryParams,
    *,
    status: Status | None = None,
    series: bool | None = None,
    with_status: bool = True,
) -> Filters:
    """The filters of a listing page from its query string (``status``, ``task``,
    ``prefix``, ``due_from``, ``due_before``, ``after_due``, ``after_key``,
    ``limit``); a bad value gives an error to show instead of a query."""
    names = ("status", "task", "prefix", "due_from", "due_before", "limit")
    values = {n: params.get(n, "") for n in names}
    try:
        if with_status and values["status"]:
            name = values["status"].upper()
            if name not in Status.__members__:
                raise ValueError(f"unknown status {values['status']!r}")
            status = Status(name)
        limit = int(values["limit"]) if values["limit"] else 50
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
        after = None
        if params.get("after_due") is not None:
            after = (float(params["after_due"]), params.get("after_key", ""))
        query = EntryQuery(
            status=status,
            task=values["task"] or None,
            key_prefix=values["prefix"],
            due_from=_time_param(values["due_from"]) if values["due_from"] else None,
            due_before=_time_param(values["due_before"]) if values["due_before"] else None,
            series=series,
            after=after,
            limit=limit,
        )
    except (ValueError, TypeError, OverflowError) as exc:
        return Filters(values, None, f"bad filter: {exc}")
    return Filters(values, query)


async def _guard(dash: Dashboard, request: Request) -> Grant | Response:
    grant = await dash.grant(request)
    return dash.refused() if grant is None else grant


def describe(exc: Exception) -> str:
    """A store's error as a page or a log line may show it: its type and text,
    any URL in the text without its credentials."""
    return redact_text(f"{type(exc).__name__}: {exc}")


def store_error(dash: Dashboard, request: Request, grant: Grant, exc: Exception) -> Response:
    """The error page (503) of a store that failed: its error's type and text."""
    logger.warning("dashboard: the store failed: %s", describe(exc))
    return dash.render(
        request,
        grant,
        "error.html",
        status_code=503,
        message=f"The store did not answer: {describe(exc)}",
    )


def _done(params: QueryParams) -> str | None:
    text = DONE.get(params.get("done", ""))
    if text is None:
        return None
    n = params.get("n", "0")
    return text.format(n=int(n) if n.isdigit() and len(n) < 10 else 0)


async def overview(dash: Dashboard, request: Request) -> Response:
    """Counts by status and task, the last hour's charts, the store's health."""
    grant = await _guard(dash, request)
    if not isinstance(grant, Grant):
        return grant
    t0 = time.perf_counter()
    try:
        now = await dash.store.time()
        latency = time.perf_counter() - t0
        counts = await dash.store.counts()
        minutes = await dash.store.activity(60)
    except Exception as exc:
        return store_error(dash, request, grant, exc)
    return dash.render(
        request,
        grant,
        "overview.html",
        page="overview",
        now=now,
        latency=latency,
        counts=counts,
        statuses=STATUSES,
        by_status=counts.by_status,
        by_task=sorted(counts.by_task.items())[:500],
        throughput=throughput_chart(minutes),
        lateness=lateness_chart(minutes),
    )


async def _listing(
    dash: Dashboard,
    request: Request,
    template: str,
    page_name: str,
    *,
    status: Status | None = None,
    series: bool | None = None,
    with_status: bool = True,
    **context: Any,
) -> Response:
    grant = await _guard(dash, request)
    if not isinstance(grant, Grant):
        return grant
    filters = parse_query(
        request.query_params, status=status, series=series, with_status=with_status
    )
    page = Page(())
    try:
        now = await dash.store.time()
        if filters.query is not None:
            page = await dash.store.page(filters.query)
    except Exception as exc:
        return store_error(dash, request, grant, exc)
    next_params = None
    if page.next is not None:
        next_params = {**filters.values, "after_due": repr(page.next[0]), "after_key": page.next[1]}
    return dash.render(
        request,
        grant,
        template,
        status_code=400 if filters.error else 200,
        page=page_name,
        now=now,
        filters=filters,
        entries=page.entries,
        next_params=next_params,
        statuses=STATUSES,
        done=_done(request.query_params),
        **context,
    )


async def entries(dash: Dashboard, request: Request) -> Response:
    """Entries, filtered and paginated."""
    return await _listing(dash, request, "entries.html", "entries")


async def dead_letters(dash: Dashboard, request: Request) -> Response:
    """FAILED entries, with the bulk actions."""
    return await _listing(
        dash, request, "dead_letters.html", "dead_letters", status=Status.FAILED, with_status=False
    )


async def series(dash: Dashboard, request: Request) -> Response:
    """Recurring series, with their next due times."""
    return await _listing(
        dash,
        request,
        "series.html",
        "series",
        series=True,
        next_times=_next_times,
        trigger=_trigger,
    )


def _next_times(schedule: str | None, due: datetime) -> list[float]:
    if schedule is None:
        return []
    try:
        return series_times(schedule, due.timestamp(), 5)
    except (ValueError, OverflowError):
        return []


def _trigger(schedule: str | None) -> str:
    """The trigger of a stored schedule, as text (its JSON if it is not one this
    version knows)."""
    if schedule is None:
        return ""
    try:
        spec = json.loads(schedule)
        trigger = spec["trigger"]
        if "every" in trigger:
            every = float(trigger["every"])
            return f"every {every:g} s ({spec['misfire']}, overlap {spec['overlap']})"
        if "cron" in trigger:
            return (
                f"cron {json.dumps(trigger['cron'])} ({spec['misfire']}, overlap {spec['overlap']})"
            )
    except (ValueError, TypeError, KeyError):
        pass
    return schedule


async def entry(dash: Dashboard, request: Request) -> Response:
    """One entry: everything the store knows of it, and its actions."""
    grant = await _guard(dash, request)
    if not isinstance(grant, Grant):
        return grant
    key = request.query_params.get("key")
    if key is None:
        return dash.render(request, grant, "error.html", 400, message="No key given.")
    try:
        now = await dash.store.time()
        detail = await dash.store.inspect(key)
    except Exception as exc:
        return store_error(dash, request, grant, exc)
    if detail is not None and detail.trace_id is None:
        # The deferring call's trace, read from the payload's trace element.
        detail = replace(detail, trace_id=trace_id(detail.payload))
    return dash.render(
        request,
        grant,
        "entry.html",
        status_code=200 if detail is not None else 404,
        page="entry",
        key=key,
        now=now,
        detail=detail,
        done=_done(request.query_params),
        trigger=_trigger,
    )
