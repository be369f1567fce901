"""Hostile review of the text check every store's ``add`` makes (check_new_rows):
rows a third-party caller built past NewRow's own checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from duetime.durable import MemoryStore, NewRow, SQLiteStore, Store

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "s.db")
    async with made:
        yield made


def _forced(field: str, value: Any) -> NewRow:
    """A NewRow whose ``field`` was set past its checks (object.__setattr__)."""
    new = NewRow(key="k", task="t", payload="[1]", delay=0.0)
    object.__setattr__(new, field, value)
    return new


@pytest.mark.parametrize(
    ("field", "value"),
    [("key", 5), ("task", None), ("payload", b"[1]"), ("schedule", 7), ("schedule", b"{}")],
)
async def test_a_field_that_is_no_str_is_a_type_error(store: Store, field: str, value: Any) -> None:
    with pytest.raises(TypeError, match=f"NewRow.{field} must be a str"):
        await store.add([_forced(field, value)])
    assert await store.entries(limit=10) == []


class _Lying(str):
    """A str subclass whose isascii says yes to anything."""

    def isascii(self) -> bool:
        return True


@pytest.mark.parametrize("field", ["key", "task", "payload", "schedule"])
async def test_a_str_subclass_cannot_talk_its_way_past(store: Store, field: str) -> None:
    with pytest.raises(ValueError, match=f"NewRow.{field} is not valid Unicode"):
        await store.add([_forced(field, _Lying("x\ud800"))])
    assert await store.entries(limit=10) == []


async def test_a_lone_surrogate_in_the_schedule(store: Store) -> None:
    with pytest.raises(ValueError, match=r"NewRow\.schedule is not valid Unicode"):
        await store.add([_forced("schedule", '{"every": "\ud800"}')])


async def test_a_huge_non_ascii_payload_is_kept_whole(store: Store) -> None:
    text = '["' + "é\U0001f600\u2028" * 5000 + '"]'
    await store.add([NewRow(key="big", task="t", payload=text, delay=0.0)])
    got = await store.get("big")
    assert got is not None
    assert got.args == ("é\U0001f600\u2028" * 5000,)
