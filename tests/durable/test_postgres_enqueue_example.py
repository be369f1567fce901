"""The PostgreSQL guide's example (docs/examples/postgres_outbox.py) runs against
a real server: FastAPI and SQLAlchemy write an order and its receipt's job in one
transaction; a worker runs the receipt of the committed order, and a refused
order leaves neither.  Real time, asyncio (SQLAlchemy's asyncio engine)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

pytest.importorskip("psycopg")
pytest.importorskip("sqlalchemy.ext.asyncio")

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "postgres_outbox.py"


def test_the_outbox_example_runs(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_database)
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    assert capsys.readouterr().out.splitlines()[-1] == "postgres outbox example passed"
