"""What the dashboard's pages and actions share: the store, the templates,
the CSRF signer, who may do what (and the answer when ``authorize`` fails)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from duetime.durable import Store

from ._security import Authorize, Csrf, Grant, Visitor, one_line, resolve_grant
from ._text import redact_text

__all__ = ["AuthorizeFailed", "Dashboard", "authorize_failed", "cookie_path", "logger", "page_url"]

#: Every action is logged here, with who did it.
logger = logging.getLogger("duetime.dashboard")


class AuthorizeFailed(Exception):
    """The app's ``authorize(request)`` raised (or returned something it may
    not): the request is answered by :func:`authorize_failed` (500)."""


async def authorize_failed(request: Request, exc: Exception) -> Response:
    """The page (500) of a request whose ``authorize`` failed: what happened,
    never the error itself (it is in the server's log)."""
    return HTMLResponse(
        "<!doctype html><title>500</title><p>Internal error: this dashboard could not"
        " check who you are (its authorize function failed). The error is in the"
        " server's log.</p>",
        status_code=500,
    )


@dataclass(slots=True)
class Dashboard:
    """What the pages and actions share (one per app)."""

    store: Store
    authorize: Authorize | None
    title: str
    label: str
    refresh: float
    csrf: Csrf
    env: jinja2.Environment
    sign_in: str | None = None
    secure_cookies: bool | None = None

    async def grant(self, request: Request) -> Visitor | None:
        """The request's grant (None: refused).

        :raises AuthorizeFailed: ``authorize`` raised, or returned something
            else than a role, a Grant or None (logged once, as an ERROR with
            its traceback, URL credentials in its text redacted)
        """
        try:
            return await resolve_grant(self.authorize, request)
        except Exception as exc:
            what = one_line(redact_text(f"{type(exc).__name__}: {exc}"), 1000)
            # The traceback's frames, under the redacted text (the raw one may hold a DSN).
            shown = AuthorizeFailed(what)
            logger.error(
                "dashboard: authorize(request) failed on %s %s: %s (answered 500)",
                request.method,
                one_line(request.url.path),
                what,
                exc_info=(AuthorizeFailed, shown, exc.__traceback__),
            )
            raise shown from None

    def render(
        self,
        request: Request,
        grant: Grant,
        template: str,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """A page, with the CSRF token of its forms (and its cookie, if new)."""
        identity = grant.identity if isinstance(grant, Visitor) else ""
        token, new_cookie = self.csrf.token(request, identity)
        html = self.env.get_template(template).render(
            request=request,
            url=lambda name, **params: page_url(request, name, **params),
            url_for_static=lambda name: str(request.url_for("static", path=name).path),
            grant=grant,
            title=self.title,
            label=self.label,
            kind=type(self.store).__name__,
            refresh=self.refresh,
            sign_in=self.sign_in,
            csrf_token=token,
            **{"done": None, "page": "", **context},
        )
        response = HTMLResponse(html, status_code=status_code)
        if new_cookie is not None:
            response.set_cookie(
                Csrf.COOKIE,
                new_cookie,
                path=cookie_path(request),
                httponly=True,
                samesite="strict",
                secure=(
                    request.url.scheme == "https"
                    if self.secure_cookies is None
                    else self.secure_cookies
                ),
            )
        return response

    def refused(self) -> Response:
        """The answer to a request ``authorize`` refused."""
        return HTMLResponse("<!doctype html><title>403</title><p>Forbidden</p>", 403)


def cookie_path(request: Request) -> str:
    root: str = request.scope.get("root_path", "") or ""
    return root + "/" if not root.endswith("/") else root


def page_url(request: Request, name: str, **params: Any) -> str:
    """The path of route ``name`` with a query string (values as text)."""
    path = str(request.url_for(name).path)
    query = {k: v for k, v in params.items() if v is not None and v != ""}
    # (errors: a key that holds lone surrogates links to its bytes rather than failing)
    return f"{path}?{urlencode(query, errors='surrogateescape')}" if query else path
