"""MkDocs hooks: mkdocstrings directives hidden from plain Markdown, and Sphinx roles.

``docs/reference.md`` must read well as plain Markdown (GitHub, an editor, the
sdist), where a ``::: duetime.Scheduler`` line would show as is.  So the page
keeps its directives in HTML comments, ``<!-- mkdocstrings ... -->``, which no
Markdown renderer shows, and :func:`on_page_markdown` uncovers them for the site.

The docstrings use Sphinx markup (``:class:`Retry```), which mkdocstrings'
Sphinx-style parser reads for parameters and exceptions but leaves inline roles
alone, so a page would show ":class:" before the name.  :func:`on_page_content`
drops the role and keeps the name (``~a.b.C`` shows as ``C``, as Sphinx does).
It also renders reST's literal-block marker as Sphinx does: a paragraph ending
in ``text::`` before a code block shows ``text:``, and a lone ``::`` vanishes
(the indented block after it is already code in Markdown).
"""

from __future__ import annotations

import re
from typing import Any

_DIRECTIVES = re.compile(r"^<!-- mkdocstrings\n(.*?)^-->$", re.DOTALL | re.MULTILINE)
_LONE_MARKER = re.compile(r"<p>::</p>\n?(?=<div class=\"highlight\">)")
_END_MARKER = re.compile(r"::</p>\n?(?=<div class=\"highlight\">)")
_ROLE = re.compile(r":(?:class|meth|func|exc|data|attr|mod|obj):<code>(~?)([^<]+)</code>")


def _plain(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    html = _LONE_MARKER.sub("", html)
    html = _END_MARKER.sub(":</p>\n", html)
    return _ROLE.sub(_plain, html)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _DIRECTIVES.sub(lambda m: m.group(1), markdown)
