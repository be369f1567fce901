"""How the dashboard shows stored values and times: as plain text, bounded.

Jinja2 escapes HTML; these helpers make the rest of a hostile value harmless
to read: control characters shown as ``\\x..`` escapes, huge values cut with
a note of how much was left out.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

from duetime.durable._redact import redact_text

__all__ = [
    "ago",
    "clip",
    "form_key",
    "key_of_form",
    "redact_text",
    "show",
    "show_args",
    "when",
]

# C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides
# (which can make text read in another order than it is stored).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


def show(value: Any, limit: int = 200) -> str:
    """Any stored value as one printable line of text: controls escaped, cut to ``limit``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else repr(value)
    # A key read from bytes that are not UTF-8 keeps them as lone surrogates,
    # which no page can be encoded with: shown as \udcxx escapes instead.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return clip(_CONTROL.sub(_escape, text), limit)


def show_block(value: Any, limit: int = 100_000) -> str:
    """A stored multi-line value (a traceback, a payload): newlines and tabs kept."""
    return show(value, limit)


def show_args(args: tuple[Any, ...], limit: int = 120) -> str:
    """An entry's arguments as text (JSON where it can, else repr)."""
    try:
        text = json.dumps(list(args), ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(args)
    return show(text, limit)


def when(ts: float | datetime | None) -> str:
    """An instant as ISO 8601 UTC to the second (empty for None)."""
    if ts is None:
        return ""
    if isinstance(ts, datetime):
        ts = ts.timestamp()
    if not math.isfinite(ts):
        return ""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return ""


def ago(ts: float | datetime | None, now: float) -> str:
    """How far ``ts`` is from ``now``: "in 5 s", "3 min ago"."""
    if ts is None:
        return ""
    if isinstance(ts, datetime):
        ts = ts.timestamp()
    delta = ts - now
    span = abs(delta)
    if not math.isfinite(span):
        return ""
    if span < 1:
        return "now"
    if span < 120:
        text = f"{span:.0f} s"
    elif span < 7200:
        text = f"{span / 60:.0f} min"
    elif span < 172800:
        text = f"{span / 3600:.0f} h"
    else:
        text = f"{span / 86400:.0f} d"
    return f"in {text}" if delta > 0 else f"{text} ago"


def seconds(value: float) -> str:
    """A duration in seconds, short."""
    if not math.isfinite(value):
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def form_key(key: str) -> str:
    """An entry key as a form field carries it: percent-encoded ASCII, so a key
    with control characters (which HTML would not keep) reaches the action whole."""
    return quote(key.encode("utf-8", "surrogatepass"), safe="")


def key_of_form(value: str) -> str:
    """The entry key a form field carries (see :func:`form_key`).

    :raises UnicodeDecodeError: the field's bytes are not UTF-8 (lone surrogates allowed)
    """
    return unquote(value, errors="surrogatepass")
