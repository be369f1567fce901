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
    :raises TypeError: an item that is not a NewRow, or whose key, task,
        payload or schedule is no str
    :raises ValueError: a key, task, payload or schedule with a lone surrogate
    """
    key_errors = "surrogateescape" if key_bytes else "strict"
    for new in rows:
        if not isinstance(new, NewRow):
            raise TypeError(f"add() takes NewRow values, not {type(new).__name__}")
        # str.isascii, not the value's own: a field set past NewRow's checks
        # (object.__setattr__) that is no str, or a str subclass that overrides
        # isascii, is still caught.
        try:
            plain = str.isascii(new.key) and str.isascii(new.task) and str.isascii(new.payload)
            odd = new.schedule is not None and not str.isascii(new.schedule)
        except TypeError:
            new._check()  # names the field that is no str
            raise
        if not plain:
            _check_text("key", new.key, key_errors)
            _check_text("task", new.task)
            _check_text("payload", new.payload)
        if odd and new.schedule is not None:
            _check_text("schedule", new.schedule)


def _check_text(name: str, value: str, errors: str = "strict") -> None:
    try:
        str.encode(value, "utf-8", errors)
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"NewRow.{name} is not valid Unicode text (a lone surrogate at index"
            f" {exc.start}): {value[:100]!r}"
        ) from None
