"""A web service (FastAPI): the code of docs/guide-web.md.

Serve it with ``uvicorn docs.examples.web:app`` (any ASGI server will do).
``python docs/examples/web.py`` drives the app through httpx's ASGI transport,
lifespan included, and checks the answers; tests/test_docs_examples.py runs that
on virtual time on asyncio and on trio, and tests/test_web_example.py attacks it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

import anyio
import anyio.from_thread
import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from duetime import Handle, Retry, Scheduler, SchedulerClosed, Status
from duetime.testing import hold_autojump

logger = logging.getLogger("shop")
sent: list[str] = []  # what send_reminder has "e-mailed"


# --8<-- [start:app]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One Scheduler for the process, open exactly while the app serves.
    async with Scheduler(on_exit="drain", grace=10.0) as scheduler:
        app.state.scheduler = scheduler
        yield
    # Here every callback has ended: run, or cancelled at the exit.


app = FastAPI(lifespan=lifespan)


async def get_scheduler(request: Request) -> Scheduler:
    scheduler: Scheduler = request.app.state.scheduler
    return scheduler


SchedulerDep = Annotated[Scheduler, Depends(get_scheduler)]


@app.exception_handler(SchedulerClosed)
async def shutting_down(request: Request, exc: SchedulerClosed) -> JSONResponse:
    # A request that arrives while the app is stopping cannot schedule any more.
    return JSONResponse({"detail": "shutting down, try again"}, status_code=503)
    # --8<-- [end:app]


# --8<-- [start:async]
reminders: dict[str, Handle[None]] = {}  # order id -> its pending reminder


async def send_reminder(order_id: str) -> None:
    sent.append(order_id)  # e.g. an e-mail; nobody awaits it, on_error logs its failures


async def price_of(sku: str) -> float:
    await anyio.sleep(0.05)  # a slow pricing service
    return 9.99


@app.post("/orders/{order_id}", status_code=202)
async def place_order(order_id: str, scheduler: SchedulerDep) -> dict[str, str]:
    # A follow-up: schedule it and answer at once; the response does not wait.
    reminders[order_id] = scheduler.call_later(
        timedelta(minutes=30), send_reminder, order_id, name=f"reminder {order_id}"
    )
    return {"order": order_id, "status": "placed"}


@app.get("/quote/{sku}")
async def quote(sku: str, scheduler: SchedulerDep) -> dict[str, str | float]:
    # Await a scheduled call: its result, or its exception, in the endpoint.
    handle = scheduler.call_later(0, price_of, sku, timeout=1.0, retry=Retry(attempts=2))
    try:
        price = await handle
    except TimeoutError:
        raise HTTPException(504, "the pricing service is slow") from None
    return {"sku": sku, "price": price}
    # --8<-- [end:async]


# --8<-- [start:sync]
@app.post("/v1/orders/{order_id}", status_code=202)
def place_order_blocking(order_id: str, scheduler: SchedulerDep) -> dict[str, str]:
    # A plain `def` endpoint: FastAPI runs it in a worker thread.  call_* and
    # Handle.cancel() are thread-safe: the call is handed to the event loop
    # and the Handle comes back at once.
    reminders[order_id] = scheduler.call_later(
        timedelta(minutes=30), send_reminder, order_id, name=f"reminder {order_id}"
    )
    return {"order": order_id, "status": "placed"}


@app.delete("/orders/{order_id}")
def cancel_order(order_id: str) -> dict[str, bool]:
    handle = reminders.pop(order_id, None)
    # True: it will not run.  False: no such order, or it has already run.
    return {"reminder_cancelled": handle is not None and handle.cancel()}


@app.get("/v1/quote/{sku}")
def quote_blocking(sku: str, scheduler: SchedulerDep) -> dict[str, str | float]:
    handle = scheduler.call_later(0, price_of, sku, timeout=1.0)
    # `await handle` belongs to the event loop; a thread waits through anyio.
    anyio.from_thread.run(handle.wait)
    if handle.status is not Status.COMPLETED:
        raise HTTPException(504, "the pricing service is slow")
    return {"sku": sku, "price": handle.return_value}
    # --8<-- [end:sync]


async def main() -> None:
    sent.clear()
    reminders.clear()
    # --8<-- [start:test]
    transport = httpx.ASGITransport(app=app)  # it does not run the lifespan...
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        async with app.router.lifespan_context(app):  # ...so enter it here
            r = await client.post("/orders/1")
            assert r.status_code == 202
            r = await client.get("/quote/apple")
            assert r.json() == {"sku": "apple", "price": 9.99}
            # `def` endpoints run in threads: on virtual time, keep the clock
            # from jumping to the 30-minute reminders while a thread works.
            with hold_autojump():
                r = await client.post("/v1/orders/2")
                assert r.status_code == 202
                r = await client.get("/v1/quote/pear")
                assert r.json() == {"sku": "pear", "price": 9.99}
                r = await client.delete("/orders/1")
                assert r.json() == {"reminder_cancelled": True}
            await anyio.sleep(timedelta(minutes=31).total_seconds())
            assert sent == ["2"]  # order 1's reminder was cancelled
            await client.post("/orders/3")  # due in 30 minutes...
        # ...so the lifespan's exit (the server stopping) cancelled it.
        assert reminders["3"].status is Status.CANCELLED
        r = await client.post("/orders/4")  # a request that comes in too late
        assert r.status_code == 503
    # --8<-- [end:test]
    print("web example passed")


if __name__ == "__main__":
    anyio.run(main)
