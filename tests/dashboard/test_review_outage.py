"""A store that goes down while the dashboard serves: every page and every
action answers with the error page (503, no stack, no credential), never a
bare 500."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetime.dashboard import create_app
from duetime.durable import RedisStore
from duetime.testing import hold_autojump

from ..durable.redis_server import RedisServer
from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio

SECRET = "hunter2-review"


async def test_actions_while_the_store_is_down(
    anyio_backend: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("coredis")
    with (
        hold_autojump(),
        RedisServer(tmp_path, extra=("--requirepass", SECRET)) as server,
        caplog.at_level(logging.DEBUG),
    ):
        url = f"redis://:{SECRET}@127.0.0.1:{server.port}/0"
        async with RedisStore(url, connect_timeout=1.0, timeout=2.0) as store:
            await seed(store)
            app = create_app(store, authorize=lambda request: "admin")
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
                token = csrf_of((await client.get("/entry?key=dead-1")).text)
                server.stop()
                answers = [
                    await client.post(
                        "/act", data={"csrf": token, "action": "retry", "key": "dead-1"}
                    ),
                    await client.post(
                        "/act-bulk", data={"csrf": token, "action": "delete", "confirm": "yes"}
                    ),
                    await client.get("/entries"),
                ]
                for r in answers:
                    assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                    assert "The store did not answer" in r.text
                    assert "Traceback" not in r.text
                    assert SECRET not in r.text
    assert SECRET not in caplog.text


async def test_a_store_error_that_quotes_a_url_shows_no_password(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A driver's message may quote the URL it was given (credentials and all):
    # the page and the log line show it redacted.
    from duetime.durable import MemoryStore

    class Down(MemoryStore):
        async def time(self) -> float:
            raise ConnectionError(f"cannot reach redis://:{SECRET}@db:6379/0 (refused)")

    app = create_app(Down(), authorize=lambda request: "viewer")
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            r = await client.get("/")
    assert r.status_code == 503
    assert "redis://:***@db:6379/0" in r.text
    assert SECRET not in r.text
    assert SECRET not in caplog.text
