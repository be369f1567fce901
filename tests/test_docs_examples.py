"""The guides' code runs: every docs/examples/*.py file, and the README's example.

Each example file is run as ``__main__`` (as ``python docs/examples/x.py`` would),
with :func:`anyio.run` swapped for one that runs on virtual time: on asyncio
with :class:`~duetime.testing.VirtualTimeLoop`, on trio with a ``MockClock``.  A
file that calls ``anyio.run`` runs on both backends; a purely synchronous one
(ThreadedScheduler) runs once, in real time, and must stay short.

An example may set ``TRIO_AUTOJUMP_THRESHOLD`` (seconds of real idleness before
trio's MockClock jumps; default 0) when it waits on worker threads with a timeout
pending: see "Known limit" in docs/testing.md.

The examples check themselves with ``assert``.  The guides show the same code
as plain fenced blocks tagged ``<!-- tested in docs/examples/x.py:section -->``,
and the tests below fail when a block and its section differ (see
tests/docs_blocks.py; ``python tests/docs_blocks.py --write`` copies edited
guide code into the example files).
"""

from __future__ import annotations

import re
import runpy
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from duetime.testing import VirtualTimeLoop

from . import docs_blocks

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = docs_blocks.pages()


def _cases() -> list[Any]:
    cases: list[Any] = []
    for path in EXAMPLES:
        if "# docs-example: not run" in path.read_text():
            continue  # a program with its own tests (e.g. it serves stdin)
        if "anyio.run(" in path.read_text():
            cases += [pytest.param(path, b, id=f"{path.stem}-{b}") for b in ("asyncio", "trio")]
        else:
            # Synchronous: runs once. The id names asyncio, ThreadedScheduler's
            # default backend, so `nox -s tests` (which selects by backend) runs it.
            cases.append(pytest.param(path, None, id=f"{path.stem}-asyncio"))
    return cases


def _virtual_run(backend: str, trio_threshold: float) -> Callable[..., Any]:
    """An ``anyio.run`` on virtual time; the test picks the backend, not the example."""
    real_run = anyio.run

    def run(func: Callable[..., Awaitable[Any]], *args: object, **_ignored: object) -> Any:
        if backend == "trio":
            options: dict[str, Any] = {"clock": MockClock(autojump_threshold=trio_threshold)}
        else:
            options = {"loop_factory": VirtualTimeLoop}
        return real_run(func, *args, backend=backend, backend_options=options)

    return run


@pytest.mark.parametrize(("path", "backend"), _cases())
def test_example_runs(
    path: Path,
    backend: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if backend is not None:
        source = path.read_text()
        match = re.search(r"^TRIO_AUTOJUMP_THRESHOLD\s*=\s*([\d.]+)", source, re.MULTILINE)
        threshold = float(match.group(1)) if match else 0.0
        monkeypatch.setattr(anyio, "run", _virtual_run(backend, threshold))
    monkeypatch.setattr(sys, "argv", [str(path)])
    runpy.run_path(str(path), run_name="__main__")
    # Every example says so when its last check has passed.
    assert "passed" in capsys.readouterr().out.splitlines()[-1]


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_code_is_the_tested_code(page: Path) -> None:
    """Each tagged block is, character for character, a section that runs."""
    problems = [p for p in docs_blocks.differences() if p.startswith(str(page.relative_to(ROOT)))]
    assert problems == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_page_reads_as_plain_markdown(page: Path) -> None:
    """No include markers: GitHub, an editor and the sdist show the code itself."""
    assert "--8<--" not in page.read_text()


SHOWN = {(b.file, b.section) for page in PAGES for b in docs_blocks.blocks(page)}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_section_is_shown_on_a_page(path: Path) -> None:
    name = str(path.relative_to(ROOT))
    sections = docs_blocks.sections(path)
    assert sections, f"{name} has no section a guide shows"
    missing = [s for s in sections if (name, s) not in SHOWN]
    assert missing == [], f"no page shows {name}: {missing}"


def test_the_blocks_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    code = tmp_path / "code.py"
    code.write_text("def f() -> int:\n    # --8<-- [start:s]\n    return 1\n    # --8<-- [end:s]\n")
    page.write_text(f"<!-- tested in {code}:s -->\n\n```python\nreturn 2\n```\n")
    (block,) = docs_blocks.blocks(page)
    assert block.code == "return 2\n"
    assert docs_blocks.read_section(code, "s") == "return 1\n"
    docs_blocks.write_section(code, "s", block.code)
    assert docs_blocks.read_section(code, "s") == "return 2\n"
    assert "    return 2\n" in code.read_text()


def test_readme_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Example\n.*?```python\n(.*?)```", readme, re.DOTALL | re.MULTILINE)
    assert match is not None, "README.md has no ## Example python block"
    monkeypatch.setattr(anyio, "run", _virtual_run("asyncio", 0.0))
    exec(compile(match.group(1), "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip()
