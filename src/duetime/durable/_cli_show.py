"""How the command line shows what a store holds: nothing from a store is
rendered raw.

A store's keys, task names and errors are data, possibly hostile: Rich markup
in them is shown as text (cells are ``rich.text.Text``, never markup strings),
control and other non-printable characters are shown as Python escapes
(``\\x1b``, ``\\n``, ``\\u202e``) in the table and the plain text, and JSON
lines escape them too.  Nothing is cut: a terminal table folds long cells, and
anything but a terminal gets plain text with every character of every value.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from ._store import Entry

__all__ = ["entry_json", "json_line", "print_entries", "visible"]

HEADERS = ("key", "task", "status", "due", "attempt", "last error")


def visible(text: str) -> str:
    """``text`` with every non-printable character (control characters, line
    breaks, bidirectional overrides, lone surrogates...) as its Python escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    code = ord(c)
    if c in "\n\r\t":
        return c.encode("unicode_escape").decode("ascii")
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def json_line(obj: Any) -> str:
    """``obj`` as one line of JSON: non-ASCII text kept readable, but every
    non-printable character (and lone surrogate) as a ``\\uXXXX`` escape."""
    text = json.dumps(obj, ensure_ascii=False)
    if text.isprintable():
        return text
    # Outside strings json.dumps writes only printable ASCII, so each
    # non-printable character here is inside a string, where \\uXXXX is valid.
    return "".join(c if c.isprintable() else _json_escape(c) for c in text)


def _json_escape(c: str) -> str:
    code = ord(c)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def entry_json(e: Entry) -> dict[str, Any]:
    """An entry as a JSON-able dict (arguments in the codec's tagged form)."""
    from ._codec import encode_args

    try:
        args: Any = json.loads(encode_args(e.args))
    except (TypeError, ValueError):
        args = None
    return {
        "key": e.key,
        "task": e.task,
        "status": str(e.status),
        "due": e.due.isoformat(),
        "attempt": e.attempt,
        "occurrence": e.occurrence,
        "deliveries": e.deliveries,
        "last_error": e.last_error,
        "schedule": e.schedule,
        "args": args,
    }


def _cells(e: Entry) -> tuple[str, ...]:
    return (
        visible(e.key),
        visible(e.task),
        str(e.status),
        e.due.strftime("%Y-%m-%d %H:%M:%S"),
        str(e.attempt),
        visible(e.last_error or ""),
    )


def print_entries(
    rows: Sequence[Entry], *, as_json: bool, plain: bool, out: TextIO | None = None
) -> None:
    """Print entries as JSON lines, a Rich table (on a terminal, with rich
    installed, without ``plain``) or aligned plain text."""
    out = sys.stdout if out is None else out
    if as_json:
        for e in rows:
            out.write(json_line(entry_json(e)) + "\n")
        return
    cells = [_cells(e) for e in rows]
    if not plain and out.isatty() and _rich_table(cells, out):
        return
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(HEADERS)]
    out.write("  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"({_count(len(rows))})\n")


def _count(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _rich_table(cells: list[tuple[str, ...]], out: TextIO) -> bool:
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        return False
    table = Table(title=_count(len(cells)))
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for row in cells:
        # Text cells are never parsed as markup; the values are already visible().
        table.add_row(*(Text(c) for c in row))
    Console(file=out, emoji=False, highlight=False).print(table)
    return True
