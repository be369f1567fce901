"""The dashboard guide's FastAPI app: the dashboard mounted under /ops/duetime,
with an ``authorize`` that trusts an auth proxy's header.

# docs-example: not run (an app to serve; tests/dashboard/test_guide.py drives it)
"""

from __future__ import annotations

# --8<-- [start:mount]
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from duetime.dashboard import Grant, create_app
from duetime.durable import SQLiteStore

store = SQLiteStore("jobs.db")


def authorize(request: Request) -> Grant | None:
    user = request.headers.get("x-forwarded-user")  # set by your auth proxy
    if user is None:
        return None
    return Grant("admin" if user in {"ana", "bo"} else "viewer", user)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with store:  # a mounted app's own lifespan is not run: open the store here
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/ops/duetime", create_app(store, authorize=authorize, title="jobs"))
# --8<-- [end:mount]
