"""A crafted action form whose key field is not percent-encoded UTF-8 is a
bad request (400), not a server error."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from duetime.durable import Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("key", ["%ff", "%C0%80", "a%E2%82"])
async def test_a_key_field_that_is_not_utf8(
    store: Store, client_for: Callable[..., httpx.AsyncClient], key: str
) -> None:
    await seed(store)
    async with client_for("admin") as client:
        token = csrf_of((await client.get("/entry?key=dead-1")).text)
        # the field as sent: its value percent-encoded once more, as a form does
        body = f"csrf={token}&action=retry&key={key.replace('%', '%25')}"
        r = await client.post(
            "/act",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400
        assert "Bad action" in r.text
