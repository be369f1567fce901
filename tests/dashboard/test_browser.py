"""The dashboard in a real headless Chromium (Debian's), served by a real
``python -m duetime dashboard`` process on both backends.

Skips locally without Chromium or Playwright; fails under ``CI=true``, where
``.ci/run`` installs them.  Set ``DUETIME_SCREENSHOTS=DIR`` to also write
the pages' screenshots there (``docs/screenshots.py`` does, for the docs).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.durable.redis_server import in_ci

from .browser import PAGES, Served, chromium, launch, seed_store, serve, shoot


def _missing() -> str | None:
    if chromium() is None:
        return "Debian's chromium is not installed (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (the test extra)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        if in_ci():
            pytest.fail(f"CI=true but {missing}")
        pytest.skip(missing)
    with launch() as b:
        yield b


@pytest.fixture(params=["asyncio", "trio"])
def served(request: pytest.FixtureRequest, tmp_path: Path, browser: Any) -> Iterator[Served]:
    db = tmp_path / "jobs.db"
    seed_store(db)
    with serve(db, tmp_path / "dashboard.log", backend=request.param) as s:
        yield s


def _context(browser: Any, served: Served, *, admin: bool) -> Any:
    """A browser context; ``admin``: signed in as a person would, through the
    "Sign in" link (the browser answers its challenge with the token)."""
    options: dict[str, Any] = {"viewport": {"width": 1280, "height": 860}}
    if admin:
        options["http_credentials"] = {"username": "ops", "password": served.token}
    context = browser.new_context(**options)
    if admin:
        page = context.new_page()
        page.goto(served.url + "/")
        page.get_by_role("link", name="Sign in").click()
        page.wait_for_selector(".role-admin")
        page.close()
    return context


def _visit_every_page(browser: Any, served: Served, *, admin: bool) -> None:
    context = _context(browser, served, admin=admin)
    page = context.new_page()
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "request",
        lambda r: None if r.url.startswith(served.url) else elsewhere.append(r.url),
    )
    # (a load cut short by the next navigation, as a favicon's may be, is not a failure)
    page.on(
        "requestfailed",
        lambda r: None if "ERR_ABORTED" in (r.failure or "") else problems.append(r.url),
    )
    page.on(
        "response",
        lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
    )
    for name, path in PAGES.items():
        response = page.goto(served.url + path)
        assert response is not None
        assert response.status == 200, name
        assert page.locator("main h1").count() == 1, name
    # the live refresh swaps <main> in place, and the page stays whole
    page.goto(served.url + "/")
    page.evaluate("document.getElementById('main').setAttribute('data-old', '1')")
    page.wait_for_selector("main:not([data-old])", timeout=30_000)
    assert page.locator("main h1").inner_text() == "Overview"
    context.close()
    assert problems == []
    assert elsewhere == []  # no CDN, nothing from outside


def test_every_page_loads_without_console_errors(browser: Any, served: Served) -> None:
    _visit_every_page(browser, served, admin=False)
    _visit_every_page(browser, served, admin=True)


def test_a_click_retries_a_dead_letter(browser: Any, served: Served) -> None:
    context = _context(browser, served, admin=True)
    page = context.new_page()
    page.goto(served.url + "/dead-letters")
    page.get_by_role("link", name="invoice-2024-0042").click()
    assert page.locator("#entry-status").inner_text() == "FAILED"
    page.locator("#action-retry").click()
    page.wait_for_url("**done=retried**")
    assert page.locator("#entry-status").inner_text() == "PENDING"
    page.goto(served.url + "/dead-letters")
    assert page.get_by_text("No entries match.").count() == 1
    context.close()
    assert "retry of 'invoice-2024-0042' by ops (admin token): done" in served.log.read_text()


def test_a_visitor_without_the_token_cannot_act(browser: Any, served: Served) -> None:
    context = _context(browser, served, admin=False)
    page = context.new_page()
    page.goto(served.url + "/entry?key=invoice-2024-0042")
    assert page.locator("#action-retry").count() == 0
    assert page.get_by_role("link", name="Sign in").count() == 1
    context.close()


def test_screenshots(browser: Any, tmp_path: Path) -> None:
    """Writes the docs' screenshots when DUETIME_SCREENSHOTS names a directory."""
    out = os.environ.get("DUETIME_SCREENSHOTS")
    db = tmp_path / "jobs.db"
    seed_store(db, rich=True)
    with serve(db, tmp_path / "dashboard.log") as s:
        made = shoot(browser, s, Path(out) if out else tmp_path / "shots")
    assert len(made) == len(PAGES)
    assert all(p.stat().st_size > 10_000 for p in made)
