"""open_store(url) picks and configures the right store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from duetime.durable import MemoryStore, SQLiteStore, open_store


def test_sqlite_relative_and_absolute(tmp_path: Path) -> None:
    rel = open_store("sqlite:///jobs/x.db")
    assert isinstance(rel, SQLiteStore)
    assert rel.path == "jobs/x.db"
    absolute = open_store(f"sqlite:///{tmp_path}/my%20jobs.db", lease=5.0, poll=0.1)
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == f"{tmp_path}/my jobs.db"
    assert (absolute.lease, absolute.poll) == (5.0, 0.1)


def test_memory() -> None:
    store = open_store("memory://", lease=3.0)
    assert isinstance(store, MemoryStore)
    assert store.lease == 3.0


def test_bad_urls() -> None:
    for url in ("mysql://db/x", "jobs.db", "sqlite://", "sqlite:///", "memory://x"):
        with pytest.raises(ValueError, match="URL"):
            open_store(url)
    with pytest.raises(TypeError):
        open_store(Path("x.db"))  # type: ignore[arg-type]


def test_redis_without_the_extra_names_it(monkeypatch: Any) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)  # makes the import fail
    with pytest.raises(ImportError, match="redis' extra"):
        open_store("redis://localhost:6379/0")
    with pytest.raises(ImportError, match="redis' extra"):
        open_store("rediss://localhost:6380/0")


def test_a_redis_url_gives_a_redis_store() -> None:
    pytest.importorskip("coredis")
    from duetime.durable import RedisStore

    assert isinstance(open_store("redis://localhost:6379/0"), RedisStore)


def test_redis_store_without_coredis_says_which_extra_at_the_call_site(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from duetime.durable import RedisStore

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "coredis" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"duetime\[redis\]"):
        RedisStore("redis://127.0.0.1:6379/0")
