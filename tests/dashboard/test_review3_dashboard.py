"""Hostile review of the dashboard's user-bound CSRF tokens, create_app's
secure_cookies, and an authorize that raises."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from duetime import Status
from duetime.dashboard import Grant, create_app
from duetime.durable import MemoryStore, Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio

COOKIE = "duetime_dashboard_csrf"


@pytest.fixture
async def store(anyio_backend: Any) -> AsyncIterator[Store]:
    made = MemoryStore()
    async with made:
        await seed(made)
        yield made


def by_header(request: Request) -> Grant:
    """Every named user is an admin; who they are is the x-user header."""
    return Grant("admin", request.headers.get("x-user", "nobody"))


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash")


async def _status(store: Store, key: str) -> Status:
    detail = await store.inspect(key)
    assert detail is not None
    return detail.entry.status


async def _form(c: httpx.AsyncClient, user: str) -> tuple[str, str]:
    """A token and the cookie it came with, for ``user``."""
    r = await c.get("/entry?key=dead-1", headers={"x-user": user})
    return csrf_of(r.text), r.cookies[COOKIE]


async def _retry(c: httpx.AsyncClient, user: str, token: str, cookie: str) -> httpx.Response:
    c.cookies.set(COOKIE, cookie)
    return await c.post(
        "/act",
        data={"csrf": token, "action": "retry", "key": "dead-1"},
        headers={"x-user": user},
    )


async def test_a_token_replayed_by_another_user_is_refused(store: Store) -> None:
    async with client(create_app(store, authorize=by_header)) as c:
        token, cookie = await _form(c, "alice")
        # mallory has alice's token and cookie (a shared machine, a leaked page)
        assert (await _retry(c, "mallory", token, cookie)).status_code == 403
        # a user whose name starts like the other's is another user too
        assert (await _retry(c, "alice2", token, cookie)).status_code == 403
        assert await _status(store, "dead-1") is Status.FAILED
        assert (await _retry(c, "alice", token, cookie)).status_code == 303
        assert await _status(store, "dead-1") is Status.PENDING


async def test_a_planted_cookie_does_not_carry_the_planters_token(store: Store) -> None:
    async with client(create_app(store, authorize=by_header)) as c:
        token, cookie = await _form(c, "mallory")  # mallory's own pair
        # planted in alice's browser (a sibling subdomain), with mallory's token
        assert (await _retry(c, "alice", token, cookie)).status_code == 403
        # a forged cookie of the right shape, with a token signed by nobody
        assert (await _retry(c, "alice", "0" * 64, "A" * 43)).status_code == 403
        assert (await _retry(c, "alice", token, cookie + "x")).status_code == 403
        assert await _status(store, "dead-1") is Status.FAILED


async def test_a_token_from_before_a_restart(store: Store) -> None:
    async with client(create_app(store, authorize=by_header)) as c:
        token, cookie = await _form(c, "alice")
    # a restart without a shared secret: a new random one, the old tokens refused
    async with client(create_app(store, authorize=by_header)) as c:
        assert (await _retry(c, "alice", token, cookie)).status_code == 403
    assert await _status(store, "dead-1") is Status.FAILED
    # with the secret shared, the same pair works across the restart
    async with client(create_app(store, authorize=by_header, secret="s" * 32)) as c:
        token, cookie = await _form(c, "alice")
    async with client(create_app(store, authorize=by_header, secret="s" * 32)) as c:
        assert (await _retry(c, "alice", token, cookie)).status_code == 303


@pytest.mark.parametrize(
    ("secure_cookies", "base", "headers", "secure"),
    [
        (None, "http://dash", {"x-forwarded-proto": "https"}, False),
        (None, "https://dash", {"x-forwarded-proto": "http"}, True),
        (True, "http://dash", {"x-forwarded-proto": "http"}, True),
        (False, "https://dash", {"x-forwarded-proto": "https"}, False),
    ],
)
async def test_forwarded_headers_do_not_move_secure(
    store: Store, secure_cookies: bool | None, base: str, headers: dict[str, str], secure: bool
) -> None:
    # The app reads the scheme the server gives it; a header from the client
    # (no trusted proxy in front) changes nothing.
    app = create_app(store, authorize=by_header, secure_cookies=secure_cookies)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as c:
        r = await c.get("/", headers=headers)
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith(COOKIE)
    assert ("secure" in set_cookie.lower().split("; ")) is secure
    assert "httponly" in set_cookie.lower()
    assert "samesite=strict" in set_cookie.lower()


async def test_an_authorize_that_raises_leaks_nothing(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "hunter2-db-pass"

    def authorize(request: Request) -> str:
        raise RuntimeError(f"cannot reach postgresql://app:{secret}@db.internal/users")

    caplog.set_level(logging.ERROR, logger="duetime.dashboard")
    async with client(create_app(store, authorize=authorize)) as c:
        for r in (
            await c.get("/"),
            await c.get("/entry?key=dead-1"),
            await c.post("/act", data={"csrf": "x", "action": "retry", "key": "dead-1"}),
        ):
            assert r.status_code == 500
            assert secret not in r.text
            assert "db.internal" not in r.text
            assert "RuntimeError" not in r.text
            assert COOKIE not in r.headers.get("set-cookie", "")
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in logging.Formatter().format(record)
    assert await _status(store, "dead-1") is Status.FAILED
