"""The web guide's FastAPI app (docs/examples/web.py), attacked through httpx's ASGI transport.

Runs on asyncio and on trio (FastAPI and Starlette run on trio through anyio), on
virtual time; ``def`` endpoints run in real worker threads, so requests that
reach them are sent under ``hold_autojump()``.
"""

from __future__ import annotations

import runpy
import threading
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from duetime import Handle, Scheduler, SchedulerClosed, Status
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "web.py"
FINAL = {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED}


class Burst:
    """A ``def`` endpoint added to the example's app: schedule ``n`` callbacks from its thread."""

    def __init__(self, app: FastAPI) -> None:
        self.handles: list[Handle[None]] = []
        self.ran: list[int] = []
        self.threads: set[int] = set()
        self.refused = 0
        self.lock = threading.Lock()
        # gated requests stop half-way until the test opens the gate
        self.gate = threading.Event()
        self.at_gate = 0
        app_state = app.state

        def burst(n: int, delay: float, spread: float = 1.0, gated: bool = False) -> dict[str, int]:
            scheduler: Scheduler = app_state.scheduler
            self.threads.add(threading.get_ident())
            made = 0
            try:
                for i in range(n):
                    if gated and i == n // 2:
                        with self.lock:
                            self.at_gate += 1
                        assert self.gate.wait(timeout=10)
                    h = scheduler.call_later(delay + (i % 5) * spread, self.ran.append, i)
                    self.handles.append(h)  # list.append: safe from several threads
                    made += 1
                    if i % 7 == 0:
                        h.cancel()  # from the worker thread too
            except SchedulerClosed:
                with self.lock:
                    self.refused += 1
            return {"scheduled": made}

        app.add_api_route("/burst", burst, methods=["POST"])


def fresh_app() -> FastAPI:
    """A new copy of the example's app (its module state too)."""
    app = runpy.run_path(str(EXAMPLE))["app"]
    assert isinstance(app, FastAPI)
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shop")


async def test_def_endpoints_schedule_200_callbacks_each_from_concurrent_requests() -> None:
    app = fresh_app()
    burst = Burst(app)
    loop_thread = threading.get_ident()
    async with client(app) as c, app.router.lifespan_context(app):
        scheduler: Scheduler = app.state.scheduler
        with hold_autojump():  # real worker threads at work
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(partial(c.post, "/burst", params={"n": 200, "delay": 60}))
            # The same, with the response checked.
            r = await c.post("/burst", params={"n": 200, "delay": 60})
            assert r.json() == {"scheduled": 200}
        await anyio.sleep(70)  # virtual: every callback is due by 60 + 4
        stats = scheduler.statistics()
        assert stats.pending == stats.running == 0
    assert loop_thread not in burst.threads  # the def endpoint really ran in threads
    assert len(burst.handles) == 6 * 200
    assert all(h.status in FINAL for h in burst.handles)
    cancelled = [h for h in burst.handles if h.status is Status.CANCELLED]
    completed = [h for h in burst.handles if h.status is Status.COMPLETED]
    assert len(cancelled) == 6 * len(range(0, 200, 7))
    assert len(completed) + len(cancelled) == len(burst.handles)
    assert len(burst.ran) == len(completed)


async def test_def_endpoints_racing_the_shutdown_leave_nothing_behind() -> None:
    # Requests still scheduling from their threads while the lifespan exits:
    # each call either returns a Handle that ends in a final state, or raises
    # SchedulerClosed and changes nothing.  Gated requests schedule half their
    # callbacks, wait until the exit has begun, then try the other half (all
    # refused); free ones race the exit wherever it lands.
    app = fresh_app()
    burst = Burst(app)
    statuses: list[int] = []
    async with client(app) as c:
        with hold_autojump():  # real worker threads at work
            async with anyio.create_task_group() as tg:

                async def post(gated: bool) -> None:
                    params = {"n": 200, "delay": 0, "spread": 0, "gated": gated}
                    r = await c.post("/burst", params=params)
                    statuses.append(r.status_code)

                async with app.router.lifespan_context(app):
                    scheduler: Scheduler = app.state.scheduler
                    for gated in (True, True, True, False, False):
                        tg.start_soon(post, gated)
                    with anyio.fail_after(10):
                        while burst.at_gate < 3:
                            await anyio.sleep(0.001)

                    async def open_gate_once_closing() -> None:
                        while not scheduler.closed:
                            await anyio.sleep(0.001)
                        burst.gate.set()

                    tg.start_soon(open_gate_once_closing)
                # the lifespan has exited; the requests finish after it
    assert statuses == [200] * 5
    assert burst.refused >= 3  # every gated request met the closed scheduler
    assert len(burst.handles) >= 3 * 100
    assert all(h.status in FINAL for h in burst.handles)
    stats = scheduler.statistics()
    assert stats.pending == stats.running == 0
    done = stats.completed + stats.failed + stats.cancelled + stats.expired
    assert done == len(burst.handles)


async def test_the_guide_flow_and_the_thread_wait() -> None:
    app = fresh_app()
    ns: dict[str, Any] = {}
    async with client(app) as c:
        async with app.router.lifespan_context(app):
            ns["scheduler"] = app.state.scheduler
            with hold_autojump():
                r = await c.get("/v1/quote/fig")  # anyio.from_thread.run(handle.wait)
                assert r.json() == {"sku": "fig", "price": 9.99}
                r = await c.post("/v1/orders/7")
                assert r.status_code == 202
                r = await c.delete("/orders/7")
                assert r.json() == {"reminder_cancelled": True}
                r = await c.delete("/orders/7")
                assert r.json() == {"reminder_cancelled": False}
        r = await c.post("/v1/orders/8")  # a def endpoint after the shutdown
        assert r.status_code == 503
    assert ns["scheduler"].statistics().pending == 0
