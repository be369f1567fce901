"""Who the dashboard answers and how: an ``authorize`` that raises gives a plain
500 page (the error logged once, never shown); a form's CSRF token works only
for the user it was issued to; the cookie carries ``Secure`` as
``secure_cookies=`` says."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.routing import Mount

from duetime import Status
from duetime.dashboard import Grant, create_app
from duetime.durable import Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio

#: What a failing authorize may say: a DSN with a password.
DSN = "postgresql://ops:hunter2@db.internal/app"


def _client(app: Any, base_url: str = "http://dash") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


# -- an authorize that raises ---------------------------------------------------------


def _raises(request: Request) -> str:
    raise RuntimeError(f"session lookup failed at {DSN}\nfake: a second log line")


async def _raises_async(request: Request) -> str:
    raise LookupError(f"no session store at {DSN}")


@pytest.mark.parametrize("authorize", [_raises, _raises_async], ids=["sync", "async"])
async def test_an_authorize_that_raises_gives_a_plain_500_and_one_log_record(
    store: Store,
    caplog: pytest.LogCaptureFixture,
    authorize: Callable[[Request], str | Awaitable[str]],
) -> None:
    await seed(store)
    caplog.set_level(logging.DEBUG)
    async with _client(create_app(store, authorize=authorize)) as client:
        for method, path in [("GET", "/"), ("GET", "/entry?key=dead-1"), ("POST", "/act")]:
            caplog.clear()
            data = {"action": "retry", "key": "dead-1"} if method == "POST" else None
            r = await client.request(method, path, data=data)
            assert r.status_code == 500, path
            assert r.headers["content-type"].startswith("text/html")
            assert "could not check who you are" in r.text
            assert "content-security-policy" in r.headers  # the app's headers, as on any page
            for leak in ("hunter2", "Traceback", "Error", "session", "db.internal"):
                assert leak not in r.text, (leak, r.text)
            # Logged once, on duetime.dashboard, with its traceback; no password.
            [record] = [rec for rec in caplog.records if rec.exc_info or rec.levelno >= 40]
            assert record.name == "duetime.dashboard"
            assert record.levelno == logging.ERROR
            assert record.exc_info is not None
            assert record.exc_info[2] is not None
            message = record.getMessage()
            assert path.partition("?")[0] in message
            assert "session" in message
            assert "\n" not in message  # one line, whatever the error's text
            assert "hunter2" not in caplog.text
            assert "authorize" in caplog.text  # the traceback's frames name the function
    assert (await store.get("dead-1")).status is Status.FAILED  # type: ignore[union-attr]


# -- CSRF tokens are tied to the user -------------------------------------------------


def _by_header(request: Request) -> Grant | None:
    user = request.headers.get("x-user")
    return None if user is None else Grant("admin", user)


async def _retry(client: httpx.AsyncClient, token: str, user: str) -> int:
    r = await client.post(
        "/act",
        data={"csrf": token, "action": "retry", "key": "dead-1"},
        headers={"x-user": user},
    )
    return r.status_code


async def test_a_token_issued_to_one_user_is_refused_for_another(store: Store) -> None:
    await seed(store)
    async with _client(create_app(store, authorize=_by_header)) as client:
        page = await client.get("/entry?key=dead-1", headers={"x-user": "mallory"})
        token = csrf_of(page.text)  # mallory's token, for the cookie now in the jar
        # ana's request, with mallory's cookie planted and mallory's token: refused
        assert await _retry(client, token, "ana") == 403
        assert (await store.get("dead-1")).status is Status.FAILED  # type: ignore[union-attr]
        # ana's own token, for the same cookie: applied
        page = await client.get("/entry?key=dead-1", headers={"x-user": "ana"})
        mine = csrf_of(page.text)
        assert mine != token
        assert await _retry(client, mine, "mallory") == 403
        assert await _retry(client, mine, "ana") == 303
    assert (await store.get("dead-1")).status is Status.PENDING  # type: ignore[union-attr]


class _HeaderUsers(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = conn.headers.get("x-user")
        return None if user is None else (AuthCredentials(["authenticated"]), SimpleUser(user))


async def test_a_token_is_tied_to_the_authenticated_user(store: Store) -> None:
    """authorize returns a bare role; the identity comes from ``request.user``."""
    await seed(store)
    dashboard = create_app(store, authorize=lambda request: "admin")
    app = Starlette(
        routes=[Mount("/", dashboard)],
        middleware=[Middleware(AuthenticationMiddleware, backend=_HeaderUsers())],
    )
    async with _client(app) as client:
        token = csrf_of((await client.get("/entry?key=dead-1", headers={"x-user": "eve"})).text)
        assert await _retry(client, token, "ana") == 403
        token = csrf_of((await client.get("/entry?key=dead-1", headers={"x-user": "ana"})).text)
        assert await _retry(client, token, "ana") == 303


# -- Secure cookies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secure_cookies", "base_url", "secure"),
    [
        (None, "http://dash", False),
        (None, "https://dash", True),
        (True, "http://dash", True),  # behind a proxy that terminates TLS
        (False, "https://dash", False),
    ],
)
async def test_secure_cookies(
    store: Store, secure_cookies: bool | None, base_url: str, secure: bool
) -> None:
    app = create_app(store, authorize=lambda request: "admin", secure_cookies=secure_cookies)
    async with _client(app, base_url) as client:
        r = await client.get("/")
    assert r.status_code == 200
    [cookie] = r.headers.get_list("set-cookie")
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert attributes[0].startswith("duetime_dashboard_csrf=")
    assert {"httponly", "samesite=strict"} <= set(attributes)
    assert ("secure" in attributes) is secure


def test_secure_cookies_takes_a_bool_or_none() -> None:
    from duetime.durable import MemoryStore

    with pytest.raises(TypeError, match="secure_cookies"):
        create_app(MemoryStore(), secure_cookies="yes")  # type: ignore[arg-type]
