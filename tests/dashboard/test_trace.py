"""The entry page shows the trace id the entry was deferred in (duetime.otel), on every store."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from duetime import Scheduler
from duetime.dashboard import create_app
from duetime.durable import NewRow, Store, TaskRegistry
from duetime.durable._codec import trace_id
from duetime.testing import hold_autojump
from tests.otel_support import Telemetry, telemetry

pytestmark = pytest.mark.anyio
__all__ = ["telemetry"]  # the fixture, imported for the tests below


async def _page(store: Store, key: str) -> str:
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        r = await client.get("/entry", params={"key": key})
    assert r.status_code == 200
    return r.text


async def test_an_entry_deferred_under_instrument_shows_its_trace_id(
    telemetry: Telemetry, make_store: Callable[[], Store]
) -> None:
    tasks = TaskRegistry()

    @tasks.task("t.later")
    async def later(n: int) -> None:
        pass

    store = make_store()
    with hold_autojump():
        async with Scheduler(store=store, tasks=tasks) as s:
            await s.defer("t.later", 1, key="traced", delay=3600)
            detail = await store.inspect("traced")
            page = await _page(store, "traced")
    (send,) = telemetry.spans("send t.later")
    expected = format(send.context.trace_id, "032x")
    assert detail is not None
    assert f"<code>{expected}</code>" in page
    assert json.loads(detail.payload)[0] == 1  # the argument, then the trace element


@pytest.mark.parametrize(
    "element",
    [
        {"traceparent": "<script>alert(1)</script>"},
        {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"},  # an all-zero id
        {"traceparent": "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"},
        {"traceparent": ["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]},
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ],
)
async def test_a_garbage_trace_element_shows_no_trace_id(store: Store, element: Any) -> None:
    payload = json.dumps([1, {"$trace": element}])
    await store.add([NewRow(key="odd", task="t", payload=payload, delay=3600.0)])
    page = await _page(store, "odd")
    assert "none recorded" in page
    assert "<script>alert(1)" not in page


def test_trace_id_reads_a_valid_traceparent_only() -> None:
    good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id(json.dumps([{"$trace": {"traceparent": good}}])) == good[3:35]
    assert trace_id(json.dumps([1, {"$trace": {"traceparent": good[:-1]}}])) is None
    assert trace_id("[1, 2]") is None
    assert trace_id("not json}]") is None
