"""A key, task, payload or schedule that is not Unicode text (a lone surrogate) is a
clear ValueError at the call, on every store: at ``defer`` and ``defer_many``
(the front), and at a store's own ``add`` (nothing of the batch is written).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from duetime import Scheduler
from duetime.durable import MemoryStore, NewRow, SQLiteStore, Store, TaskRegistry
from duetime.durable.conformance import loop_epoch_clock
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio

BAD = "a\ud800"

tasks = TaskRegistry()


@tasks.task("echo")
async def echo(text: str = "") -> None: ...


@pytest.fixture(params=["sqlite", "redis", "memory", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
async def store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: Any
) -> AsyncIterator[Store]:
    """An open store of ``kind`` (a server's, in a namespace of this test)."""
    made: Store
    if kind == "memory":
        made = MemoryStore()
    elif kind == "sqlite":
        made = SQLiteStore(tmp_path / "jobs.db", clock=loop_epoch_clock())
    else:
        factory: Callable[..., Store] = request.getfixturevalue(f"{kind}_store")
        made = factory()
    with hold_autojump():  # a server answers in real time
        async with made:
            yield made


FIELDS = {
    "key": NewRow(BAD, "t", "[]", delay=0.0),
    "task": NewRow("k", BAD, "[]", delay=0.0),
    "payload": NewRow("k", "t", f'["{BAD}"]', delay=0.0),
    "schedule": NewRow("k", "t", "[]", delay=0.0, schedule=f'{{"every": 60, "x": "{BAD}"}}'),
}


@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_add_refuses_a_lone_surrogate_and_writes_nothing(store: Store, field: str) -> None:
    good = NewRow("good", "t", "[]", delay=0.0)
    with pytest.raises(ValueError, match=f"NewRow.{field} is not valid Unicode text"):
        await store.add([good, FIELDS[field]])
    assert await store.entries() == []
    # The store still works.
    [entry] = await store.add([good])
    assert entry.key == "good"


async def test_add_refuses_what_is_not_a_new_row(store: Store) -> None:
    with pytest.raises(TypeError, match="NewRow"):
        await store.add([("k", "t", "[]")])  # type: ignore[list-item]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: Any
) -> AsyncIterator[Store]:
    """Every store, for the front's own checks."""
    kind: str = request.param
    if kind == "memory":
        yield MemoryStore()
    elif kind == "sqlite":
        yield SQLiteStore(tmp_path / "jobs.db", clock=loop_epoch_clock())
    else:
        factory: Callable[..., Store] = request.getfixturevalue(f"{kind}_store")
        with hold_autojump():
            yield factory()


async def test_defer_and_defer_many_refuse_a_lone_surrogate(any_store: Store) -> None:
    async with Scheduler(store=any_store, tasks=tasks, worker=False) as s:
        with pytest.raises(ValueError, match="key"):
            await s.defer("echo", key=BAD)
        with pytest.raises(ValueError, match="surrogate"):
            await s.defer("echo", BAD)
        with pytest.raises(ValueError, match="key"):
            await s.defer_many("echo", [("x",)], keys=[BAD])
        with pytest.raises(ValueError, match="surrogate"):
            await s.defer_many("echo", [(BAD,)])
        with pytest.raises(LookupError):
            await s.defer(BAD)
        assert await any_store.entries() == []
        await s.defer("echo", "ok", key="fine")  # the scheduler still works
        assert [e.key for e in await any_store.entries()] == ["fine"]
