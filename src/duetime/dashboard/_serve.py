"""The server of ``python -m duetime dashboard``: the app, an admin token
checked by HTTP Basic, and uvicorn (asyncio) or hypercorn (trio)."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import signal

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from duetime.durable import Store

from ._app import create_app
from ._security import ADMIN, VIEWER, Authorize, Grant
from ._text import show

__all__ = ["serve", "token_app", "token_authorize"]


def token_authorize(token: str | None) -> Authorize:
    """``authorize`` for a dashboard guarded by one admin token: a request whose
    HTTP Basic password is the token is an admin, any other a viewer."""
    secret = None if token is None else token.encode("utf-8")

    def authorize(request: Request) -> Grant | str:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if secret is None or scheme.lower() != "basic":
            return VIEWER
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return VIEWER
        if hmac.compare_digest(password.encode("utf-8"), secret):
            return Grant(ADMIN, f"{show(user, 60) or 'admin'} (admin token)")
        return VIEWER

    return authorize


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _addressed_to_loopback(host_header: str) -> bool:
    """True if a request's ``Host`` names this machine's loopback: ``localhost``
    or an IP address (a name an attacker controls can be re-pointed at
    127.0.0.1; an address cannot)."""
    name = host_header.strip().lower()
    if name.startswith("["):  # [::1]:8000
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if name in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _LoopbackHosts:
    """Answers 421 to a request whose ``Host`` is a name other than ``localhost``:
    a server bound to loopback is reached by such a name only through DNS
    rebinding (a hostile page's own name re-pointed at 127.0.0.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if not _addressed_to_loopback(host):
                refused = PlainTextResponse(
                    "This dashboard answers only requests addressed to localhost.", 421
                )
                await refused(scope, receive, send)
                return
        await self.app(scope, receive, send)


def token_app(
    store: Store,
    *,
    token: str | None,
    label: str,
    title: str,
    host: str | None = None,
    secure_cookies: bool | None = None,
) -> ASGIApp:
    """The dashboard under ``/``, with ``/login`` asking the browser for the
    token; bound to a loopback ``host``, it answers only requests addressed to
    ``localhost`` or an IP address (421 otherwise: DNS rebinding).
    ``secure_cookies`` is :func:`create_app`'s."""
    authorize = token_authorize(token)

    async def login(request: Request) -> Response:
        if token is None:
            return PlainTextResponse("This dashboard is read-only: no admin token is set.", 404)
        got = authorize(request)
        if isinstance(got, Grant) and got.admin:
            return RedirectResponse("/", status_code=303)
        return PlainTextResponse(
            "Sign in with the admin token as the password.",
            401,
            headers={"WWW-Authenticate": 'Basic realm="duetime dashboard", charset="UTF-8"'},
        )

    dashboard = create_app(
        store,
        authorize=authorize,
        title=title,
        label=label,
        sign_in="/login" if token is not None else None,
        secure_cookies=secure_cookies,
    )
    app = Starlette(routes=[Route("/login", login), Mount("/", dashboard)])
    return _LoopbackHosts(app) if host is not None and _is_loopback(host) else app


async def serve(
    store: Store,
    *,
    label: str,
    token: str | None,
    host: str,
    port: int,
    backend: str,
    title: str = "duetime",
    secure_cookies: bool | None = None,
) -> None:
    """Serve the dashboard of the open ``store`` until SIGINT or SIGTERM (after
    SIGINT the command exits 130, as an interrupted command does)."""
    app = token_app(
        store, token=token, label=label, title=title, host=host, secure_cookies=secure_cookies
    )
    if backend == "trio":
        from hypercorn.config import Config
        from hypercorn.trio import serve as hypercorn_serve

        config = Config()
        config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
        config.accesslog = "-"

        received: list[int] = []

        async def stopped() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    received.append(signum)
                    return

        await hypercorn_serve(app, config, shutdown_trigger=stopped)  # type: ignore[arg-type]
        if received == [signal.SIGINT]:
            raise KeyboardInterrupt  # as uvicorn does: the command exits 130
        return
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="info")
    )
    await server.serve()
