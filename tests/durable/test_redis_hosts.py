"""Several hosts, simulated, on Redis: four worker processes share one private
server (append-only file, ``appendfsync always``), which is killed (SIGKILL) and
started again mid-run.  The scenario and what it asserts:
tests/durable/_hosts_scenario.py.

Real processes and real time (about 10 s); they run in CI with the rest
(``redis-server`` is installed there) and skip locally without it.
"""

from __future__ import annotations

import signal
from pathlib import Path

from ._hosts_scenario import four_hosts
from .redis_server import RedisServer


def test_four_hosts_survive_kill_pause_and_a_redis_restart(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=True) as server:

        def crash_and_restart() -> None:
            server.stop(signal.SIGKILL)
            server.start()

        four_hosts("redis", server.url, crash_and_restart, tmp_path)
