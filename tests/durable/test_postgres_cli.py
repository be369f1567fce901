"""The real CLI on PostgreSQL: four ``python -m duetime worker`` processes on a private
server, one killed with SIGKILL mid-run and the server restarted immediately
(``pg_ctl restart -m immediate``) while they run, then ``python -m duetime entries``.
The scenario and what it asserts: tests/durable/_cli_scenario.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ._cli_scenario import cli_workers
from .postgres_server import PostgresServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_cli_workers_on_postgres_survive_a_kill_and_a_restart_and_list_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with PostgresServer() as server:
        cli_workers("postgres", server.url, tmp_path, capsys, restart=server.restart)
