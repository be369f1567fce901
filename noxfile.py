"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s demo``, ``nox -s bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: every async test on asyncio and on trio, on virtual time.

    Not split by ``-k asyncio`` / ``-k trio``: that would deselect the plain
    (synchronous) tests from both runs.
    """
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, and lint-imports (the layering in pyproject.toml)."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


@nox.session
def demo(session: nox.Session) -> None:
    """The newcomer's tour, shortened."""
    session.install("-e", ".[cli]")
    session.run("python", "-m", "duetime", "demo", "--fast")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite against the peers (``nox -s bench -- --quick`` for a smoke run)."""
    session.install("-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (warnings are errors) into ``site/``.

    The build needs no network, and the site loads nothing from one:
    ``.ci/check_site_offline.py`` fails on any external script, style or font.
    """
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about MkDocs 2
    session.run("mkdocs", "build", "--strict", *session.posargs)
    session.run("python", ".ci/check_site_offline.py", "site")


@nox.session
def build(session: nox.Session) -> None:
    """The wheel and the sdist, into ``dist/``."""
    session.install("build>=1.2")
    session.run("python", "-m", "build", "--outdir", "dist")
