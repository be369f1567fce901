"""The real CLI on Redis: four ``python -m duetime worker`` processes on a private
redis-server, one killed with SIGKILL mid-run, then ``python -m duetime entries``.
The scenario and what it asserts: tests/durable/_cli_scenario.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ._cli_scenario import cli_workers
from .redis_server import RedisServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def test_cli_workers_on_redis_survive_a_kill_and_list_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with RedisServer(tmp_path) as server:
        cli_workers("redis", server.url, tmp_path, capsys, timeout=15)
