"""MkDocs hook: render the docstrings' Sphinx roles as plain code.

The docstrings use Sphinx markup (``:class:`Retry```), which mkdocstrings'
Sphinx-style parser reads for parameters and exceptions but leaves inline roles
alone, so a page would show ":class:" before the name.  This drops the role and
keeps the name (``~a.b.C`` shows as ``C``, as Sphinx does).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|exc|data|attr|mod|obj):<code>(~?)([^<]+)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    return _ROLE.sub(_plain, html)
