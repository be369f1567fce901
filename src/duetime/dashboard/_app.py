"""create_app: the dashboard as an ASGI app over one store.

The pages (:mod:`._pages`) only read (``counts``, ``page``, ``activity``,
``inspect``, ``time``); the actions (:mod:`._actions`) are POSTs checked for
the admin role and the CSRF token.  Every response carries a strict Content
Security Policy: scripts and styles come from the app's own ``/static/``
only, and nothing is ever loaded from elsewhere.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from duetime.durable import Store

from . import _actions, _pages, _text
from ._context import AuthorizeFailed, Dashboard, authorize_failed
from ._security import Authorize, Csrf

__all__ = ["create_app"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", _CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    """Adds the security headers to every response of the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(
    store: Store,
    *,
    authorize: Authorize | None = None,
    title: str = "duetime",
    label: str | None = None,
    secret: bytes | str | None = None,
    refresh: float = 5.0,
    sign_in: str | None = None,
    secure_cookies: bool | None = None,
) -> Starlette:
    """The dashboard of ``store`` as an ASGI app (Starlette), to serve alone or
    mount in a Starlette or FastAPI app (``app.mount("/duetime", create_app(store))``).

    The store must be open (entered) while the app serves: a mounted app's
    lifespan is not run, so enter it in the parent app's lifespan (or use the
    Scheduler's store).

    :param store: the store to show and act on
    :param authorize: ``authorize(request)``, sync or async: ``"admin"`` (may
        act), ``"viewer"`` (may look), a :class:`Grant` (a role and who), or
        None (403).  Without it everyone may look and nobody may act.
    :param title: the name shown in the page titles
    :param label: what the header says the store is (e.g. its URL: any
        password or credential-like query parameter in a URL is shown as
        ``***``); the store's class name by default
    :param secret: the key that signs the CSRF tokens; random per app by
        default (several processes serving one dashboard must share one)
    :param refresh: seconds between live refreshes by the page's script (0: none)
    :param sign_in: where the header's "Sign in" link leads a viewer (your
        login page), or None for no link
    :param secure_cookies: whether the dashboard's cookie (the CSRF one) carries
        ``Secure`` (sent over HTTPS only): True always (behind a proxy that
        terminates TLS and forwards plain HTTP), False never, None when the
        request's scheme is ``https``
    :raises TypeError: a store that is not a duetime Store, or a bad parameter type
    :raises ValueError: a negative refresh
    """
    if not isinstance(store, Store):
        raise TypeError(f"create_app() needs a duetime Store, not {type(store).__name__}")
    if authorize is not None and not callable(authorize):
        raise TypeError("authorize must be a callable taking the request, or None")
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, not {type(title).__name__}")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"label must be a str or None, not {type(label).__name__}")
    if isinstance(refresh, bool) or not isinstance(refresh, int | float):
        raise TypeError(f"refresh must be a number of seconds, not {type(refresh).__name__}")
    if not 0 <= refresh < float("inf"):
        raise ValueError(f"refresh must be >= 0 and finite, not {refresh!r}")
    if sign_in is not None and not isinstance(sign_in, str):
        raise TypeError(f"sign_in must be a str or None, not {type(sign_in).__name__}")
    if secure_cookies is not None and not isinstance(secure_cookies, bool):
        raise TypeError(
            f"secure_cookies must be a bool or None, not {type(secure_cookies).__name__}"
        )
    if secret is None:
        key = secrets.token_bytes(32)
    elif isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, bytes):
        key = secret
    else:
        raise TypeError(f"secret must be bytes, a str or None, not {type(secret).__name__}")
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("duetime.dashboard", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        show=_text.show,
        block=_text.show_block,
        args=_text.show_args,
        when=_text.when,
        seconds=_text.seconds,
        qkey=_text.form_key,
    )
    env.globals.update(ago=_text.ago)
    dash = Dashboard(
        store=store,
        authorize=authorize,
        title=title,
        # (an operator may pass the URL as configured: its credentials are not shown)
        label=_text.redact_text(label) if label is not None else type(store).__name__,
        refresh=float(refresh),
        csrf=Csrf(key),
        env=env,
        sign_in=sign_in,
        secure_cookies=secure_cookies,
    )

    def bind(fn: Callable[[Dashboard, Request], Awaitable[Response]]) -> Any:
        async def endpoint(request: Request) -> Response:
            return await fn(dash, request)

        return endpoint

    routes = [
        Route("/", bind(_pages.overview), name="overview"),
        Route("/entries", bind(_pages.entries), name="entries"),
        Route("/entry", bind(_pages.entry), name="entry"),
        Route("/series", bind(_pages.series), name="series"),
        Route("/dead-letters", bind(_pages.dead_letters), name="dead_letters"),
        Route("/act", bind(_actions.act), methods=["POST"], name="act"),
        Route("/act-bulk", bind(_actions.act_bulk), methods=["POST"], name="act_bulk"),
        Mount("/static", StaticFiles(packages=[("duetime.dashboard", "static")]), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders)],
        exception_handlers={AuthorizeFailed: authorize_failed},
    )
