"""Showing a store URL without its credentials: for log lines, errors and output."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["redact_text", "redact_url", "url_secrets"]

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


# A URL inside free text: a scheme, "://", then anything up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}://[^\s'\"]*")


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://...`` in it shown as :func:`redact_url` shows
    it (for a message that quotes what an operator typed, such as argparse's
    "unrecognized arguments").  Never raises.

    :param text: a message that may quote store URLs
    :returns: the message with no credential of those URLs in it
    """
    try:
        return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    except Exception:  # never let an error message fail
        return "<a message that quotes a store URL (hidden)>"


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
