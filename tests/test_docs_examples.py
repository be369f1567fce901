"""The guides' code runs: every docs/examples/*.py file, and the README's example.

Each example file is run as ``__main__`` (as ``python docs/examples/x.py`` would),
with :func:`anyio.run` swapped for one that runs on virtual time: on asyncio
with :class:`~duetime.testing.VirtualTimeLoop`, on trio with a ``MockClock``.  A
file that calls ``anyio.run`` runs on both backends; a purely synchronous one
(ThreadedScheduler) runs once, in real time, and must stay short.

An example may set ``TRIO_AUTOJUMP_THRESHOLD`` (seconds of real idleness before
trio's MockClock jumps; default 0) when it waits on worker threads with a timeout
pending: see "Known limit" in docs/testing.md.

The examples check themselves with ``assert``; the pages include them with
pymdownx.snippets (``--8<-- "file.py:section"``).
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

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("*.py"))
PAGES = sorted(DOCS.glob("*.md"))
SNIPPET = re.compile(r'--8<--\s+"([^":]+)(?::([\w-]+))?"')


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


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_shown_on_a_page(path: Path) -> None:
    included = {m.group(1) for page in PAGES for m in SNIPPET.finditer(page.read_text())}
    assert path.name in included, f"no page includes docs/examples/{path.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.stem)
def test_snippet_sections_exist(page: Path) -> None:
    for match in SNIPPET.finditer(page.read_text()):
        name, section = match.groups()
        # The snippet base paths of mkdocs.yml: docs/examples, then tests/.
        path = DOCS / "examples" / name
        source = (path if path.exists() else ROOT / "tests" / name).read_text()
        if section is not None:
            assert f"--8<-- [start:{section}]" in source, f"{page.name}: {name}:{section}"
            assert f"--8<-- [end:{section}]" in source, f"{page.name}: {name}:{section}"


def test_readme_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Example\n.*?```python\n(.*?)```", readme, re.DOTALL | re.MULTILINE)
    assert match is not None, "README.md has no ## Example python block"
    monkeypatch.setattr(anyio, "run", _virtual_run("asyncio", 0.0))
    exec(compile(match.group(1), "README.md", "exec"), {"__name__": "__main__"})
    assert capsys.readouterr().out.strip()
