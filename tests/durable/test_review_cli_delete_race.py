"""``delete`` removes only what it selected: a dead letter retried (made PENDING
again) between the selection and the change is left alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Status
from duetime.__main__ import main
from duetime.durable import Dead, SQLiteStore
from duetime.durable import _cli_store as cli_store
from duetime.durable.conformance import row


def make_dead(db: Path, keys: list[str]) -> None:
    async def go() -> None:
        async with SQLiteStore(db) as store:
            await store.add([row(k, task="old.a") for k in keys])
            claims = await store.claim("w", 10)
            await store.finish_many([(c.entry.key, c.token, Dead("gone")) for c in claims])

    anyio.run(go)


def status_of(db: Path) -> dict[str, Status]:
    async def go() -> dict[str, Status]:
        async with SQLiteStore(db) as store:
            return {e.key: e.status for e in await store.entries(limit=100)}

    result: dict[str, Status] = anyio.run(go)
    return result


@pytest.mark.parametrize(
    "argv",
    [["--key", "a1", "--key", "a2"], ["--task", "old.a", "--yes"], ["--all-failed", "--yes"]],
)
def test_delete_leaves_a_dead_letter_retried_since_it_was_selected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any, argv: list[str]
) -> None:
    db = tmp_path / "jobs.db"
    make_dead(db, ["a1", "a2"])
    select = cli_store._select

    async def select_then_someone_retries(args: Any) -> Any:
        picked = await select(args)
        async with SQLiteStore(db) as other:  # another operator, meanwhile
            assert await other.retry("a1")
        return picked

    monkeypatch.setattr(cli_store, "_select", select_then_someone_retries)
    status = main(["delete", "--store", f"sqlite:///{db}", *argv])
    assert status_of(db) == {"a1": Status.PENDING}  # a2 deleted, a1 kept
    out = capsys.readouterr().out
    assert "skipped  a1: changed since it was selected" in out
    assert status == 3
