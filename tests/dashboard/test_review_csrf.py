"""CSRF edges: an action carrying a valid token and cookie is still refused
when the browser says the request did not come from the dashboard's own
origin: ``Origin: null`` (a sandboxed frame, a redirect through another
origin) or ``Sec-Fetch-Site`` other than ``same-origin``."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from duetime import Status
from duetime.durable import Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "http://dash.evil", "sec-fetch-site": "same-origin"},
    ],
)
async def test_a_foreign_browser_request_is_refused(
    store: Store, client_for: Callable[..., httpx.AsyncClient], headers: dict[str, str]
) -> None:
    await seed(store)
    async with client_for("admin") as client:
        token = csrf_of((await client.get("/entry?key=dead-1")).text)
        r = await client.post(
            "/act", data={"csrf": token, "action": "retry", "key": "dead-1"}, headers=headers
        )
        assert r.status_code == 403
        r = await client.post(
            "/act-bulk",
            data={"csrf": token, "action": "delete", "confirm": "yes"},
            headers=headers,
        )
        assert r.status_code == 403
        detail = await store.inspect("dead-1")
        assert detail is not None
        assert detail.entry.status is Status.FAILED
        # the same form from the dashboard's own page is applied
        r = await client.post(
            "/act",
            data={"csrf": token, "action": "retry", "key": "dead-1"},
            headers={"origin": "http://dash", "sec-fetch-site": "same-origin"},
        )
        assert r.status_code == 303
        detail = await store.inspect("dead-1")
        assert detail is not None
        assert detail.entry.status is Status.PENDING
