"""open_store(url): a store from a URL, for ``Scheduler(store=...)`` and the CLI."""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, cast
from urllib.parse import unquote

from ._store import Store

__all__ = ["open_store", "redact_url", "url_secrets"]

_REDIS = ("redis://", "rediss://", "unix://")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}")
# Query parameter names that carry a credential (matched case-insensitively,
# after percent-decoding, as substrings: ``password``, ``db_pass``, ``access_token``...).
_SECRET_PARAMS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "auth",
    "credential",
    "apikey",
    "api_key",
    "sig",
)
_HIDDEN = "***"
_MAX_SHOWN = 300


def _printable(text: str) -> str:
    """``text`` with every non-printable character as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _redact_query(query: str) -> str:
    parts = []
    hiding = False
    for param in re.split("([&;])", query):
        if param in ("&", ";"):
            parts.append(param)
            continue
        name, eq, _value = param.partition("=")
        if eq:
            hiding = any(s in unquote(name).lower() for s in _SECRET_PARAMS)
            parts.append(f"{name}={_HIDDEN}" if hiding else param)
        else:
            # A bare word after a secret may be the rest of an unescaped "&" in it.
            parts.append(_HIDDEN if hiding and param else param)
    return "".join(parts)


def redact_url(url: str) -> str:
    """``url`` as it may be shown in a log line, an error or CLI output.

    A password in the user info (``redis://user:***@host``, or all of a user
    info without ``:``) and the value of every credential-like query parameter
    (``password=``, ``pass``, ``secret``, ``token``, ``auth``...) become
    ``***``; a fragment is hidden whole; control characters are shown as
    escapes. A string that is not ``scheme://...`` is returned only if it looks
    like a plain path (no ``@ : ? # =``), otherwise a placeholder is: what
    cannot be parsed is never echoed. Never raises.

    :param url: a store URL as the user gave it (anything else is described by type)
    :returns: a printable string with no credential in it
    """
    try:
        return _redact(url)
    except Exception:  # never let a log line or an error message fail
        return "<a store URL (hidden)>"


def _redact(url: object) -> str:
    if not isinstance(url, str):
        return f"<a {type(url).__name__}, not a URL>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        if url and not any(c in url for c in "@:?#=") and len(url) <= _MAX_SHOWN:
            return _printable(url)
        return "<a store URL that cannot be parsed (hidden)>"
    if not _SCHEME.fullmatch(scheme):
        return "<a store URL that cannot be parsed (hidden)>"
    # The last "@" ends the user info: a password may hold "/", "?", "#" or "@"
    # unescaped, and hiding too much is safe where hiding too little is not.
    userinfo, at, location = rest.rpartition("@")
    location, hash_, _fragment = location.partition("#")
    shown = f"{scheme}://"
    if at:
        user, colon, _password = userinfo.partition(":")
        plain_user = colon and not any(c in user for c in "/?#")
        shown += f"{user}:{_HIDDEN}@" if plain_user else f"{_HIDDEN}@"
    path, q, query = location.partition("?")
    shown += path
    if q:
        shown += "?" + _redact_query(query)
    if hash_:
        shown += f"#{_HIDDEN}"
    shown = _printable(shown)
    if len(shown) > _MAX_SHOWN:
        shown = shown[: _MAX_SHOWN - 3] + "..."
    return shown


def _quoted(url: str) -> str:
    shown = redact_url(url)
    return shown if shown.startswith("<") else repr(shown)


def url_secrets(url: str) -> list[str]:
    """The credentials in ``url`` as they may appear in a message: the user-info
    password and the values of credential-like query parameters, raw and
    percent-decoded, longest first (so a caller can scrub them from text a
    library produced).  Never raises.
    """
    try:
        if not isinstance(url, str):
            return []
        _scheme, sep, rest = url.partition("://")
        found: set[str] = set()
        userinfo, at, location = (rest if sep else url).rpartition("@")
        if at:
            _user, colon, password = userinfo.partition(":")
            found.update((password, userinfo) if colon else (userinfo,))
        query = location.partition("?")[2].partition("#")[0]
        for param in re.split("[&;]", query):
            name, eq, value = param.partition("=")
            if eq and any(s in unquote(name).lower() for s in _SECRET_PARAMS):
                found.add(value)
        found |= {unquote(v) for v in found}
        return sorted((v for v in found if len(v) >= 2), key=len, reverse=True)
    except Exception:
        return []


def open_store(url: str, *, read_only: bool = False, **options: Any) -> Store:
    """Return an unopened store for ``url`` (enter it with ``async with``, or pass
    it to ``Scheduler(store=...)``).

    - ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a
      :class:`~duetime.durable._sqlite.SQLiteStore` (``%xx`` escapes are decoded);
    - ``memory://``: a ``MemoryStore`` (one process, tests);
    - ``redis://host:6379/0``, ``rediss://...`` (TLS) and ``unix://...``: a
      ``RedisStore`` from the ``redis`` extra.

    Error messages show the URL through :func:`redact_url`, never its password.

    :param read_only: open the store for listing only (``get``, ``entries``):
        a SQLite file is never created or written (it may sit on a read-only
        file or mount; a missing one raises FileNotFoundError when entered), a
        Redis store is read without writing when its ``RedisStore`` takes
        ``read_only``; a new ``memory://`` store is empty, so there is nothing to protect
    :param options: keyword arguments for the store (``lease=``, ``dedupe_ttl=``...)
    :raises TypeError: ``url`` is not a str
    :raises ValueError: an unknown scheme, or a URL without a path
    :raises ImportError: a Redis URL without the ``redis`` extra installed
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "//"):
            raise ValueError(
                "a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path,"
                f" not {_quoted(url)}"
            )
        path = unquote(rest[1:].partition("?")[0])
        from ._sqlite import SQLiteStore

        if read_only:
            options["read_only"] = True
        return SQLiteStore(path, **options)
    if sep and scheme == "memory":
        if rest.strip("/"):
            raise ValueError(f"a memory store URL is just memory://, not {_quoted(url)}")
        from ._memory import MemoryStore

        return MemoryStore(**options)
    if sep and url.lower().startswith(_REDIS):
        try:
            importlib.import_module("coredis")
            module = importlib.import_module("duetime.durable._redis")
        except ImportError as exc:
            raise ImportError(
                f"a Redis store ({url.split('://')[0]}://) needs the 'redis' extra:"
                f" pip install 'duetime[redis]' ({exc})"
            ) from exc
        if read_only and "read_only" in inspect.signature(module.RedisStore).parameters:
            options["read_only"] = True
        return cast(Store, module.RedisStore(url, **options))
    if not sep:
        raise ValueError(
            f"not a store URL: {_quoted(url)} (a SQLite file is sqlite:///relative/path.db"
            " or sqlite:////absolute/path.db)"
        )
    raise ValueError(
        f"unknown store URL scheme {redact_url(scheme + '://')!r}: use sqlite:///path,"
        " redis://host:port/db, rediss://..., unix://... or memory://"
    )
