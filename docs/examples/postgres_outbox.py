"""Transactional enqueue with FastAPI and SQLAlchemy: the code of the
"PostgreSQL" section of docs/guide-several-hosts.md.

An order and the job that e-mails its receipt are written in one transaction:
both commit, or neither.  Needs a PostgreSQL server:
``DATABASE_URL=postgresql://user@host/shop python docs/examples/postgres_outbox.py``
drives the app through httpx's ASGI transport, with a worker in the same process
(in production: ``python -m duetime worker shop.tasks:tasks --store postgresql://...``),
and checks the answers.  tests/durable/test_postgres_enqueue_example.py runs it
against the test server.  asyncio only: SQLAlchemy's asyncio engine needs it
(a trio app uses a sync ``Session`` in ``def`` endpoints, with the same ``sql()``).
"""

# docs-example: not run (it needs a PostgreSQL server: its own test runs it)

from __future__ import annotations

import asyncio
import os

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from duetime import Scheduler
from duetime.durable import PostgresEnqueue, PostgresStore, TaskRegistry

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://localhost/shop")
receipts: list[int] = []  # what send_receipt has "e-mailed"
STOCK = {"apple": 10}

# --8<-- [start:tasks]
tasks = TaskRegistry()  # the workers import the same registry


@tasks.task("shop.send_receipt")
async def send_receipt(order_id: int) -> None:
    receipts.append(order_id)  # e.g. an e-mail to the customer


# The store's schema ("duetime" by default) and the tasks: no store is opened here.
outbox = PostgresEnqueue(tasks)
# --8<-- [end:tasks]

# --8<-- [start:app]
engine = create_async_engine(make_url(DATABASE_URL).set(drivername="postgresql+psycopg"))
Session = async_sessionmaker(engine)
app = FastAPI()


class Order(BaseModel):
    item: str
    quantity: int


@app.post("/orders", status_code=201)
async def place_order(order: Order) -> dict[str, int]:
    # session.begin(): commit at the end of the block, roll back on an exception.
    async with Session() as session, session.begin():
        insert = "INSERT INTO orders (item, quantity) VALUES (:item, :quantity) RETURNING id"
        order_id: int = (await session.execute(text(insert), order.model_dump())).scalar_one()
        # The receipt's job, in the same transaction: it exists iff the order does.
        sql, params = outbox.sql(
            send_receipt, order_id, key=f"receipt-{order_id}", paramstyle="named"
        )
        await session.execute(text(sql), params)
        if order.quantity > STOCK.get(order.item, 0):
            # Rolls back the order and its receipt alike: no e-mail for it, ever.
            raise HTTPException(409, f"not enough {order.item} in stock")
    # Committed: workers are woken by the commit itself (a NOTIFY), not by a poll.
    return {"order": order_id}
    # --8<-- [end:app]


async def main() -> None:
    receipts.clear()
    # --8<-- [start:test]
    # A worker in this process; the store creates its schema when it opens.
    async with Scheduler(store=PostgresStore(DATABASE_URL), tasks=tasks) as worker:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS orders"))
            await conn.execute(
                text("CREATE TABLE orders (id serial PRIMARY KEY, item text, quantity int)")
            )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            r = await client.post("/orders", json={"item": "apple", "quantity": 2})
            assert r.status_code == 201
            order_id = r.json()["order"]
            # Its receipt runs once the order has committed (await it from any process).
            await worker.deferred_handle(f"receipt-{order_id}").result(timeout=30)
            assert receipts == [order_id]

            r = await client.post("/orders", json={"item": "apple", "quantity": 500})
            assert r.status_code == 409
        async with engine.connect() as conn:
            orders = (await conn.execute(text("SELECT id FROM orders"))).scalars().all()
        assert orders == [order_id]  # the refused order left no row...
        assert len(await worker.deferred_entries()) == 1  # ...and no job
    # --8<-- [end:test]
    await engine.dispose()
    print("postgres outbox example passed")


if __name__ == "__main__":
    asyncio.run(main())
