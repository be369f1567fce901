"""The check a store makes of the rows it is asked to add: each a NewRow, of valid text.

A str with a lone surrogate (``"\\ud800"``) is a Python str but not Unicode
text: no store can keep it (UTF-8 cannot encode it, JSON has no escape a
server accepts for it), so ``add`` refuses it at the call, naming the field,
instead of failing somewhere down in a driver or a server script.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._store import NewRow

__all__ = ["check_new_rows"]


def check_new_rows(rows: Sequence[NewRow], *, key_bytes: bool = False) -> None:
    """Check that every row is a :class:`NewRow` whose key, task, payload and
    schedule are valid Unicode text (the common all-ASCII row costs four
    ``str.isascii`` calls).

    :param rows: what a store's ``add`` was given
    :param key_bytes: the store keeps a key as bytes and reads back bytes that
        are not UTF-8 as Python's ``surrogateescape`` does (U+DC80 to U+DCFF):
        a key with those surrogates is allowed (it names such a row), any other
        is not
    :raises TypeError: an item that is not a NewRow
    :raises ValueError: a key, task, payload or schedule with a lone surrogate
    """
    key_errors = "surrogateescape" if key_bytes else "strict"
    for new in rows:
        if not isinstance(new, NewRow):
            raise TypeError(f"add() takes NewRow values, not {type(new).__name__}")
        if not (new.key.isascii() and new.task.isascii() and new.payload.isascii()):
            _check_text("key", new.key, key_errors)
            _check_text("task", new.task)
            _check_text("payload", new.payload)
        if new.schedule is not None and not new.schedule.isascii():
            _check_text("schedule", new.schedule)


def _check_text(name: str, value: str, errors: str = "strict") -> None:
    try:
        value.encode("utf-8", errors)
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"NewRow.{name} is not valid Unicode text (a lone surrogate at index"
            f" {exc.start}): {value[:100]!r}"
        ) from None
