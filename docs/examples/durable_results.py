"""Durable results (FastAPI): the code of docs/guide-durable.md, "Awaiting results".

One endpoint defers a report and answers at once; another awaits its result,
from any process, with a timeout.  ``python docs/examples/durable_results.py``
drives the app through httpx's ASGI transport, a worker beside it on the same
store; tests/test_docs_examples.py runs it on virtual time on both backends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import httpx
from fastapi import Depends, FastAPI, HTTPException, Request

from duetime import CallbackCancelled, DeferredFailed, Scheduler, TaskRegistry
from duetime.testing import MemoryStore

store = MemoryStore()  # in production: SQLiteStore("jobs.db") or open_store(url)
tasks = TaskRegistry()


# --8<-- [start:task]
@tasks.task("reports.render")
async def render_report(report_id: int) -> str:
    await anyio.sleep(20)  # a slow rendering
    if report_id == 13:
        raise ValueError("report 13 has no data")
    return f"https://files.example/reports/{report_id}.pdf"
    # --8<-- [end:task]


# --8<-- [start:app]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The web process defers and awaits; worker processes run the reports.
    async with Scheduler(store=store, tasks=tasks, worker=False) as scheduler:
        app.state.scheduler = scheduler
        yield


app = FastAPI(lifespan=lifespan)


async def get_scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


@app.post("/reports/{report_id}", status_code=202)
async def order_report(report_id: int, scheduler: SchedulerDep) -> dict[str, str]:
    # Stored when this returns; the key makes a retried request idempotent.
    d = await scheduler.defer(render_report, report_id, key=f"report-{report_id}")
    return {"report": d.key}


@app.get("/reports/{report_id}")
async def report_url(report_id: int, scheduler: SchedulerDep, wait: float = 10) -> dict[str, str]:
    # Any process can await it by key: the one that deferred it may be gone.
    d = scheduler.deferred_handle(f"report-{report_id}")
    try:
        url = await d.result(timeout=wait)
    except TimeoutError:
        raise HTTPException(202, "still rendering, ask again") from None
    except LookupError:
        raise HTTPException(404, "no such report") from None
    except DeferredFailed as exc:  # described, never re-raised as the remote type
        raise HTTPException(500, f"rendering failed: {exc.error_type}") from None
    except CallbackCancelled:
        raise HTTPException(410, "the report was cancelled") from None
    return {"url": url}
    # --8<-- [end:app]


async def main() -> None:
    # --8<-- [start:test]
    transport = httpx.ASGITransport(app=app)  # it does not run the lifespan...
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://reports") as client,
        app.router.lifespan_context(app),  # ...so enter it here
        Scheduler(store=store, tasks=tasks),  # a worker (another process, in production)
    ):
        r = await client.post("/reports/7")
        assert r.json() == {"report": "report-7"}
        r = await client.get("/reports/7", params={"wait": 5})
        assert r.status_code == 202  # not done within 5 s
        r = await client.get("/reports/7", params={"wait": 60})
        assert r.json() == {"url": "https://files.example/reports/7.pdf"}
        await client.post("/reports/13")
        r = await client.get("/reports/13", params={"wait": 60})
        assert r.status_code == 500
        assert r.json() == {"detail": "rendering failed: ValueError"}
        r = await client.get("/reports/99")
        assert r.status_code == 404
    # --8<-- [end:test]
    print("durable results example passed")


if __name__ == "__main__":
    anyio.run(main)
