"""Who may do what on the dashboard, and the CSRF check of its actions.

Roles: :data:`ADMIN` may act (retry, delete, cancel, abort), :data:`VIEWER`
may only look.  ``authorize(request)`` (sync or async) returns a role, a
:class:`Grant` (a role and who it is, for the log), or None to refuse the
request (403).  Without ``authorize`` everyone is a viewer.

CSRF: a *signed double-submit cookie*, tied to the user.  The first page sets
a random value in an ``HttpOnly``, ``SameSite=Strict`` cookie; every form
carries the HMAC, under the app's secret, of that value and of the user's
identity (:attr:`Visitor.identity`: the ``who`` of the :class:`Grant` that
``authorize`` returned, else the authenticated ``request.user``'s name), and an
action is applied only if the form's token is the HMAC of the cookie it came
with and of the identity of whoever sends it (and a browser's ``Origin`` and
``Sec-Fetch-Site``, when sent, say the dashboard's own origin).  Stateless (no
session store, so several processes serve one dashboard when they share
``secret``); unlike a plain double-submit cookie, a cookie planted by a sibling
subdomain is useless without a token signed for it, and a token a user got for
themselves is useless in another user's request.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import Request

from ._text import show

__all__ = [
    "ADMIN",
    "VIEWER",
    "Authorize",
    "Csrf",
    "Grant",
    "Visitor",
    "one_line",
    "resolve_grant",
]

#: The role that may act.
ADMIN: Literal["admin"] = "admin"
#: The role that may only look.
VIEWER: Literal["viewer"] = "viewer"

_ROLES = (ADMIN, VIEWER)


@dataclass(frozen=True, slots=True)
class Grant:
    """What ``authorize`` grants a request: a role, and who it is (shown in the
    action log; the client's address when not given).

    :raises ValueError: a role that is not ``"admin"`` or ``"viewer"``
    :raises TypeError: a ``who`` that is not a str or None
    """

    role: Literal["admin", "viewer"]
    who: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"Grant.role must be 'admin' or 'viewer', not {self.role!r}")
        if self.who is not None and not isinstance(self.who, str):
            raise TypeError(f"Grant.who must be a str or None, not {type(self.who).__name__}")

    @property
    def admin(self) -> bool:
        """True if this grant may act."""
        return self.role == ADMIN


@dataclass(frozen=True, slots=True)
class Visitor(Grant):
    """A request's grant as the dashboard resolved it, with the identity its
    CSRF tokens are tied to (``""``: nobody named, the token is tied to the
    cookie alone)."""

    identity: str = ""


Authorize = Callable[[Request], "Grant | str | Awaitable[Grant | str | None] | None"]


def one_line(name: str, limit: int = 200) -> str:
    """A name or a text for a log line: one line of text (line breaks and
    controls escaped), at most ``limit`` characters."""
    text = name.replace("\n", "\\n").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return show(text, limit)


def _user(request: Request) -> str | None:
    """The display name of the request's authenticated user (an authentication
    middleware's ``request.user``), or None."""
    user: Any = request.scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        name = getattr(user, "display_name", None)
        if isinstance(name, str) and name:
            return name
    return None


def _client(request: Request) -> str:
    name = _user(request)
    if name is not None:
        return one_line(name)
    client = request.client
    return f"{client.host}:{client.port}" if client is not None else "unknown client"


async def resolve_grant(authorize: Authorize | None, request: Request) -> Visitor | None:
    """The grant of ``request`` (None: refused), its ``who`` shown as one
    line of text (controls escaped, cut to 200 characters), and the identity
    its CSRF tokens are tied to: the ``who`` that ``authorize`` named, else the
    authenticated user's name, else ``""``.

    :raises TypeError: ``authorize`` returned something else than a role, a
        Grant or None
    :raises Exception: whatever ``authorize`` raised
    """
    if authorize is None:
        return Visitor(VIEWER, _client(request))
    got: Any = authorize(request)
    if inspect.isawaitable(got):
        got = await got
    if got is None or got is False:
        return None
    if isinstance(got, Grant):
        if got.who is not None:
            # The name goes into log lines: one line of text, whoever chose it.
            return Visitor(got.role, one_line(got.who), got.who)
        return Visitor(got.role, _client(request), _user(request) or "")
    if isinstance(got, str) and got in _ROLES:
        role: Literal["admin", "viewer"] = ADMIN if got == ADMIN else VIEWER
        return Visitor(role, _client(request), _user(request) or "")
    raise TypeError(
        "authorize(request) must return 'admin', 'viewer', a duetime.dashboard.Grant or None,"
        f" not {type(got).__name__}"
    )


class Csrf:
    """Tokens for the dashboard's forms (see the module docstring)."""

    COOKIE = "duetime_dashboard_csrf"

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, cookie: str, identity: str) -> str:
        # The cookie is 43 ASCII characters: what follows it is the identity, unambiguously.
        message = cookie.encode("ascii") + b"\x00" + identity.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def cookie_of(self, request: Request) -> str | None:
        """The request's CSRF cookie if it is well formed."""
        value = request.cookies.get(self.COOKIE)
        if value is None or len(value) != 43 or not value.isascii():
            return None
        return value

    def token(self, request: Request, identity: str) -> tuple[str, str | None]:
        """The form token for ``request`` by the user ``identity``, and a new
        cookie value to set (None: the request's cookie is kept)."""
        cookie = self.cookie_of(request)
        new = None
        if cookie is None:
            cookie = new = secrets.token_urlsafe(32)
        return self._sign(cookie, identity), new

    def check(self, request: Request, token: str | None, identity: str) -> bool:
        """True if ``token`` is the signature of the request's cookie and of the
        sender's ``identity``, and the request does not come from another
        origin: an ``Origin`` header, when
        sent, is the dashboard's own (``null``, from a sandboxed frame or a
        redirect through another origin, is refused: the dashboard's own
        forms never send it, its Referrer-Policy being ``same-origin``), and a
        ``Sec-Fetch-Site`` header, when sent, is ``same-origin`` (a sibling
        subdomain is ``same-site``: its cookies reach the dashboard)."""
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        if request.headers.get("sec-fetch-site", "same-origin") != "same-origin":
            return False
        cookie = self.cookie_of(request)
        if cookie is None or not token or not token.isascii():
            return False
        return hmac.compare_digest(self._sign(cookie, identity), token)
