"""Developer sessions: ``nox -s tests``, ``nox -s lint``, ``nox -s docs``, ``nox -s bench``.

Every session installs its tools at the versions pinned in ``.ci/constraints.txt``
(what CI installs too), so a session passes or fails as CI does.
``nox -s constraints`` rewrites that file from the newest releases, on purpose;
``nox -s tests-latest lint-latest docs-latest`` run against the newest releases
without touching it.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ".ci/constraints.txt"


def _install(session: nox.Session, *args: str) -> None:
    """Install at the pinned versions (a reused venv is moved to them too)."""
    session.install("-c", CONSTRAINTS, *args)


def _install_latest(session: nox.Session, *args: str) -> None:
    """Install the newest releases, upgrading a reused venv's older ones."""
    session.install("--upgrade", "--upgrade-strategy", "eager", *args)


def _tests(session: nox.Session) -> None:
    session.run("python", "-m", "pytest", *session.posargs)


def _lint(session: nox.Session) -> None:
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    session.run("lint-imports")


def _docs(session: nox.Session) -> None:
    session.run("python", ".ci/check_docstrings.py")
    session.env["NO_MKDOCS_2_WARNING"] = "1"  # Material's banner about MkDocs 2
    # Never --quiet: it drops the warnings before --strict counts them.
    session.run("mkdocs", "build", "--strict", *session.posargs)
    session.run("python", ".ci/check_site.py", "site")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: every async test on asyncio and on trio, on virtual time.

    Not split by ``-k asyncio`` / ``-k trio``: that would deselect the plain
    (synchronous) tests from both runs.
    """
    _install(session, "-e", ".[test]")
    _tests(session)


@nox.session(name="tests-latest")
def tests_latest(session: nox.Session) -> None:
    """The test suite on the newest releases of everything (not the pins)."""
    _install_latest(session, "-e", ".[test]")
    _tests(session)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, and lint-imports (the layering in pyproject.toml)."""
    _install(session, "-e", ".[lint]")
    _lint(session)


@nox.session(name="lint-latest")
def lint_latest(session: nox.Session) -> None:
    """The linters at their newest releases (new rules show up here first)."""
    _install_latest(session, "-e", ".[lint]")
    _lint(session)


@nox.session
def demo(session: nox.Session) -> None:
    """The newcomer's tour, shortened."""
    _install(session, "-e", ".[cli]")
    session.run("python", "-m", "duetime", "demo", "--fast")


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark suite against the peers (``nox -s bench -- --quick`` for a smoke run)."""
    _install(session, "-e", ".[bench]")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, built strictly (warnings are errors) into ``site/``.

    Every docstring under ``src/`` must parse without a warning
    (``.ci/check_docstrings.py``), the build needs no network, and
    ``.ci/check_site.py`` fails on any external script, style or font, on a link
    to a file or anchor the site lacks, and on an unformatted signature.
    """
    _install(session, "-e", ".[docs]")
    _docs(session)


@nox.session(name="docs-latest")
def docs_latest(session: nox.Session) -> None:
    """The documentation site with the newest MkDocs, mkdocstrings and griffe."""
    _install_latest(session, "-e", ".[docs]")
    _docs(session)


@nox.session
def build(session: nox.Session) -> None:
    """The wheel and the sdist, into ``dist/``."""
    _install(session, "build")
    # The isolated build environment takes the pinned build backend as well.
    session.env["PIP_CONSTRAINT"] = str(Path(CONSTRAINTS).resolve())
    session.run("python", "-m", "build", "--outdir", "dist")


@nox.session(venv_backend="none")
def constraints(session: nox.Session) -> None:
    """Rewrite ``.ci/constraints.txt`` from the newest releases, in a fresh venv.

    On purpose only: then run ``nox -s tests lint docs`` (or ``bash .ci/run``)
    and commit the file with whatever fixes the new versions need.
    """
    session.run("bash", ".ci/refresh-constraints", external=True)
