"""Who acted, as the action log names them: a name from ``authorize`` (or the
authenticated user's display name) is one line of text, so a user who picks
their own name cannot forge log lines."""

from __future__ import annotations

import logging

import httpx
import pytest

from duetime.dashboard import Grant, create_app
from duetime.durable import Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio

FORGED = "mallory\n2026-01-01 00:00:00,000 INFO duetime.dashboard: delete of 'x' by root: done"


async def test_a_name_with_a_newline_cannot_forge_a_log_line(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(store)
    for grant in (Grant("admin", FORGED), Grant("viewer", FORGED)):

        def authorize(request: object, grant: Grant = grant) -> Grant:
            return grant

        app = create_app(store, authorize=authorize)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            admin = create_app(store, authorize=lambda request: "admin")
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=admin), base_url="http://dash"
            ) as other:
                token = csrf_of((await other.get("/entry?key=pending-1")).text)
                client.cookies.update(other.cookies)
            with caplog.at_level(logging.INFO, logger="duetime.dashboard"):
                for csrf in (token, "stale"):
                    await client.post(
                        "/act", data={"csrf": csrf, "action": "cancel", "key": "pending-1"}
                    )
    lines = [r.getMessage() for r in caplog.records if r.name == "duetime.dashboard"]
    assert any("mallory" in line for line in lines)
    for line in lines:
        assert "\n" not in line, line
