"""Check a built MkDocs site: it loads nothing from the network, every link inside
it resolves, and the API reference's signatures are formatted.

Usage: ``python .ci/check_site.py SITE_DIR``.  Fails (exit 1) on:

- an external resource: a script, stylesheet, font, image or iframe with an
  absolute ``http(s)://`` or protocol-relative ``//`` address in any HTML page,
  or such a ``url(...)`` or ``@import`` in any CSS file.  Plain links
  (``<a href>``) to other sites are fine: they load nothing by themselves.
- a broken local link: an ``href`` or ``src`` relative to the site that names a
  file the site does not have (``mkdocs build --strict`` only logs, at INFO, a
  page's link to a file that ``exclude_docs`` keeps out of the site), or a
  ``#fragment`` that no element of the target page has as its ``id``.
- an unformatted signature: a line of a ``doc-signature`` block (mkdocstrings'
  ``separate_signature``) longer than ``SIGNATURE_WIDTH``.  mkdocstrings-python
  wraps signatures only when ruff or black is installed, and says so at INFO
  otherwise, so ``--strict`` cannot catch it: the ``docs`` extra installs ruff.
"""

from __future__ import annotations

import html
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

EXTERNAL = r"""(?:https?:)?//"""
HTML_PATTERNS = [
    re.compile(
        rf"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*["']?{EXTERNAL}""", re.I
    ),
    re.compile(rf"""<link\b[^>]*\bhref\s*=\s*["']?{EXTERNAL}""", re.I),
    re.compile(rf"""@import\s+(?:url\()?["']?{EXTERNAL}""", re.I),
    re.compile(rf"""url\(\s*["']?{EXTERNAL}""", re.I),
]
CSS_PATTERNS = HTML_PATTERNS[2:]
# mkdocstrings-python formats signatures to its line_length (60 by default);
# an unformatted one is a single line, often well past 100 characters.
SIGNATURE_WIDTH = 88
SIGNATURE = re.compile(r"""<div class="doc-signature[^"]*"[^>]*>(.*?)</div>""", re.S)
LINK_ATTRS = {"a": "href", "link": "href", "script": "src", "img": "src", "source": "src"}


class _Page(HTMLParser):
    """The ids of a page, and its links with their line numbers."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[tuple[int, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("id", "name"):
            if values.get(key):
                self.ids.add(values[key] or "")
        target = values.get(LINK_ATTRS.get(tag, ""))
        if target:
            self.links.append((self.getpos()[0], target))


def _parse(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def external_resources(site: Path, pages: list[Path]) -> list[str]:
    problems = []
    for path in [*pages, *sorted(site.rglob("*.css"))]:
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in HTML_PATTERNS if path.suffix == ".html" else CSS_PATTERNS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"external resource: {path}:{line}: {match.group(0)[:120]}")
    return problems


def broken_links(site: Path, pages: list[Path]) -> list[str]:
    root = site.resolve()
    cache: dict[Path, _Page] = {}
    problems = []
    for path in pages:
        for line, link in _parse(path, cache).links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith("//"):
                continue  # another site (or mailto:, data:): not the site's own file
            where = f"{path}:{line}: {link}"
            if parts.path.startswith("/"):  # 404.html: from the site's root
                target = (root / unquote(parts.path).lstrip("/")).resolve()
            elif parts.path:
                target = (path.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target /= "index.html"
            else:
                target = path.resolve()
            if not target.is_relative_to(root):
                problems.append(f"link outside the site: {where}")
            elif not target.is_file():
                problems.append(f"link to a file the site lacks: {where}")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in _parse(target, cache).ids
            ):
                problems.append(f"link to a missing anchor: {where}")
    return problems


def unformatted_signatures(pages: list[Path]) -> list[str]:
    problems = []
    for path in pages:
        text = path.read_text(encoding="utf-8", errors="replace")
        for match in SIGNATURE.finditer(text):
            code = html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))
            widest = max(code.splitlines() or [""], key=len)
            if len(widest) > SIGNATURE_WIDTH:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(
                    f"signature not formatted ({len(widest)} characters wide; is ruff"
                    f" installed?): {path}:{line}: {widest.strip()[:80]}"
                )
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    pages = sorted(site.rglob("*.html"))
    if not pages:
        print(f"no HTML pages under {site}", file=sys.stderr)
        return 1
    problems = [
        *external_resources(site, pages),
        *broken_links(site, pages),
        *unformatted_signatures(pages),
    ]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(
        f"{len(pages)} pages: no external scripts, styles or fonts; every local link"
        " resolves; signatures formatted"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
