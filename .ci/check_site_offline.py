"""Fail if a built MkDocs site would load anything from the network.

Usage: ``python .ci/check_site_offline.py SITE_DIR``.  Checks every HTML page for
scripts, stylesheets, fonts, images and iframes with an absolute ``http(s)://`` or
protocol-relative ``//`` address, and every CSS file for such ``url(...)`` and
``@import``s.  Plain links (``<a href>``) are fine: they load nothing by themselves.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    site = Path(argv[0])
    pages = sorted(site.rglob("*.html"))
    if not pages:
        print(f"no HTML pages under {site}", file=sys.stderr)
        return 1
    problems: list[str] = []
    for path in [*pages, *sorted(site.rglob("*.css"))]:
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in HTML_PATTERNS if path.suffix == ".html" else CSS_PATTERNS:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{path}:{line}: {match.group(0)[:120]}")
    for problem in problems:
        print(f"external resource: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{len(pages)} pages, no external scripts, styles or fonts")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
