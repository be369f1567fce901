"""Fail on any docstring in ``src/`` that the documentation's parser warns about.

Usage: ``python .ci/check_docstrings.py [PACKAGE ...]`` (default: ``duetime``),
from the repository root, with the ``docs`` extra installed.

``mkdocs build --strict`` fails on griffe's warnings, but only for the objects
the API reference renders.  This parses every docstring of every module, class,
function and attribute under ``src/`` (private ones and mixins included) with
the same Sphinx-style parser mkdocstrings uses, so a field such as
``:raises TypeError, ValueError:`` (one exception per ``:raises:`` field) or a
``:param x:`` for a parameter that does not exist fails here before it reaches
a page.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

import griffe


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _objects(obj: Any) -> Iterator[Any]:
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue  # re-exports: checked where they are defined
        yield from _objects(member)


def main(argv: list[str]) -> int:
    packages = argv or ["duetime"]
    collect = _Collect()
    logging.getLogger("griffe").addHandler(collect)
    count = 0
    for package in packages:
        root = griffe.load(package, search_paths=["src"], docstring_parser="sphinx")
        for obj in _objects(root):
            if obj.docstring is not None:
                obj.docstring.parse("sphinx")
                count += 1
    for message in collect.messages:
        print(f"docstring: {message}", file=sys.stderr)
    if collect.messages:
        return 1
    print(f"{count} docstrings parsed, no warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
