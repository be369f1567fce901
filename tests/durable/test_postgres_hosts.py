"""Several hosts, simulated, on PostgreSQL: four worker processes share one private
server, which is restarted immediately mid-run (``pg_ctl restart -m immediate``:
no shutdown checkpoint, crash recovery at the start).  The scenario and what it
asserts: tests/durable/_hosts_scenario.py.

Real processes and real time (about 10 s); they run in CI with the rest
(``postgresql-15`` is installed there) and skip locally without it.
"""

from __future__ import annotations

from pathlib import Path

from ._hosts_scenario import four_hosts
from .postgres_server import PostgresServer


def test_four_hosts_survive_kill_pause_and_a_server_restart(tmp_path: Path) -> None:
    with PostgresServer() as server:
        four_hosts("postgres", server.url, server.restart, tmp_path)
