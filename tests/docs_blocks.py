"""The guides' code blocks and the example files that run them, kept identical.

A guide shows its code as an ordinary fenced block, so it reads the same on
GitHub, in an editor, in the sdist and on the site.  The block is tagged, on the
line before it (a blank line may come between), with an HTML comment that no
renderer shows::

    <!-- tested in docs/examples/timeouts.py:watchdog -->

    ```python
    async with Scheduler() as scheduler:
        ...
    ```

The named file holds the same code, indented to fit, between
``# --8<-- [start:watchdog]`` and ``# --8<-- [end:watchdog]``.  That file is a
whole program: ``tests/test_docs_examples.py`` runs it on asyncio and on trio
on virtual time, and ``mypy --strict`` checks it (``docs/examples`` is in the
project's mypy ``files``).  ``tests/test_docs_examples.py`` fails when a block
and its section differ.

The guide is the source.  After editing a block, copy it into its file with::

    python tests/docs_blocks.py --write

(``--check``, the default, lists the differences and exits 1 if there are any.)
"""

from __future__ import annotations

import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

TAG = re.compile(r"^\s*<!-- tested in (\S+?):([\w-]+) -->\s*$")
FENCE = re.compile(r"^(\s*)```python\s*$")


@dataclass(frozen=True)
class Block:
    """One tagged code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    file: str  # repository-relative path of the file that runs it
    section: str
    code: str  # dedented, ending with a newline

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """The Markdown pages that may carry tagged blocks: docs/*.md and the README."""
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]


def blocks(page: Path) -> list[Block]:
    """The tagged blocks of ``page``, in order.

    :raises ValueError: if a tag is not followed by a ```python fence, or a
        fence is not closed
    """
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        tag = TAG.match(lines[i])
        i += 1
        if tag is None:
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        fence = FENCE.match(lines[i]) if i < len(lines) else None
        if fence is None:
            raise ValueError(f"{page.name}:{i}: a 'tested in' tag must precede a ```python block")
        indent = fence.group(1)
        start = i + 1
        end = start
        while end < len(lines) and lines[end] != f"{indent}```":
            end += 1
        if end == len(lines):
            raise ValueError(f"{page.name}:{start}: the ```python block is not closed")
        body = [line.removeprefix(indent) for line in lines[start:end]]
        found.append(Block(page, start, tag.group(1), tag.group(2), "\n".join(body) + "\n"))
        i = end + 1
    return found


def _markers(section: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    name = re.escape(section)
    return (
        re.compile(rf"^(\s*)# --8<-- \[start:{name}\]\s*$"),
        re.compile(rf"^\s*# --8<-- \[end:{name}\]\s*$"),
    )


def sections(path: Path) -> list[str]:
    """The names of the sections marked in ``path``."""
    return re.findall(r"# --8<-- \[start:([\w-]+)\]", path.read_text())


def read_section(path: Path, section: str) -> str:
    """The code of ``section`` in ``path``, dedented.

    :raises ValueError: if the section is missing or not closed
    """
    lines = path.read_text().splitlines()
    start_re, end_re = _markers(section)
    for i, line in enumerate(lines):
        if start_re.match(line):
            for j in range(i + 1, len(lines)):
                if end_re.match(lines[j]):
                    return textwrap.dedent("\n".join(lines[i + 1 : j]) + "\n")
            break
    raise ValueError(f"{path}: no closed section {section!r}")


def write_section(path: Path, section: str, code: str) -> None:
    """Replace the code of ``section`` in ``path`` with ``code``, indented as its marker."""
    lines = path.read_text().splitlines()
    start_re, end_re = _markers(section)
    for i, line in enumerate(lines):
        start = start_re.match(line)
        if start is None:
            continue
        for j in range(i + 1, len(lines)):
            if end_re.match(lines[j]):
                indent = start.group(1)
                new = [f"{indent}{c}" if c.strip() else "" for c in code.splitlines()]
                lines[i + 1 : j] = new
                path.write_text("\n".join(lines) + "\n")
                return
        break
    raise ValueError(f"{path}: no closed section {section!r}")


def differences() -> list[str]:
    """Every tagged block whose section differs, as messages (empty: all agree)."""
    problems: list[str] = []
    for page in pages():
        for block in blocks(page):
            path = ROOT / block.file
            if not path.is_file():
                problems.append(f"{block.where()}: {block.file} does not exist")
                continue
            try:
                code = read_section(path, block.section)
            except ValueError as exc:
                problems.append(f"{block.where()}: {exc}")
                continue
            if code != block.code:
                problems.append(
                    f"{block.where()}: differs from {block.file}:{block.section}"
                    " (python tests/docs_blocks.py --write copies the guide's code there)"
                )
    return problems


def main(argv: list[str]) -> int:
    """``--check`` (default): report differences; ``--write``: copy blocks into files."""
    if argv == ["--write"]:
        for page in pages():
            for block in blocks(page):
                write_section(ROOT / block.file, block.section, block.code)
        return 0
    if argv not in ([], ["--check"]):
        print("usage: python tests/docs_blocks.py [--check | --write]", file=sys.stderr)
        return 2
    problems = differences()
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
