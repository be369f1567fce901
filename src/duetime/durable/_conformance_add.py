"""The conformance suite's part on adding and cancelling: what :meth:`Store.add
<duetime.durable.Store.add>` does with a new key, an existing one (``keep``,
``replace``, ``error``), a tombstone and a batch, and what :meth:`Store.cancel
<duetime.durable.Store.cancel>` deletes.

:class:`~duetime.durable.conformance.StoreConformance` inherits these tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .._exceptions import EntryExists
from .._vocab import Status
from ._conformance_kit import StoreUnderTest, row
from ._store import Dead, Done, Store

__all__ = ["AddConformance"]


@pytest.mark.anyio
class AddConformance(StoreUnderTest):
    """Adding rows, conflicts on a key, batches, cancel (mixed into the suite)."""

    # -- add ------------------------------------------------------------------

    async def test_add_then_get(self, store: Store) -> None:
        now = await store.time()
        [e] = await store.add([row("a", 1, "x", task="mail.send", due=now + 5)])
        assert (e.key, e.task, e.args, e.status) == ("a", "mail.send", (1, "x"), Status.PENDING)
        assert e.due.timestamp() == pytest.approx(now + 5)
        assert (e.attempt, e.occurrence, e.deliveries, e.last_error, e.schedule) == (
            1,
            0,
            0,
            None,
            None,
        )
        assert await store.get("a") == e
        assert await store.get("missing") is None

    async def test_delay_is_added_to_the_store_clock(self, store: Store) -> None:
        await self.advance(100)
        now = await store.time()
        [e] = await store.add([row("a", delay=30)])
        assert now + 30 <= e.due.timestamp() <= now + 31

    async def test_keep_returns_the_existing_entry(self, store: Store) -> None:
        [first] = await store.add([row("a", 1, delay=5)])
        [again] = await store.add([row("a", 2, task="other", delay=50)])
        assert again == first
        assert (await store.get("a")) == first

    async def test_keep_sees_a_tombstone(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        assert (await store.finish_many([("a", c.token, Done())]))[0]
        [e] = await store.add([row("a")])
        assert e.status is Status.COMPLETED
        assert await store.claim("w", 10) == []

    async def test_tombstone_expires_after_dedupe_ttl(
        self, tmp_path: Path, anyio_backend: Any
    ) -> None:
        async with self.make_store(tmp_path, dedupe_ttl=60.0) as store:
            await store.add([row("a")])
            [c] = await store.claim("w", 1)
            (await store.finish_many([("a", c.token, Done())]))[0]
            await self.advance(30)
            assert (await store.get("a")) is not None
            await self.advance(31)
            assert await store.get("a") is None
            [e] = await store.add([row("a")])
            assert e.status is Status.PENDING

    async def test_replace(self, store: Store) -> None:
        await store.add([row("a", 1, delay=5)])
        [e] = await store.add([row("a", 2, task="u", delay=9)], on_conflict="replace")
        assert (e.task, e.args, e.status) == ("u", (2,), Status.PENDING)
        assert await store.get("a") == e

    async def test_replace_a_tombstone_or_dead_letter(self, store: Store) -> None:
        await store.add([row("a"), row("b")])
        ca, cb = sorted(await store.claim("w", 2), key=lambda c: c.entry.key)
        (await store.finish_many([("a", ca.token, Done())]))[0]
        (await store.finish_many([("b", cb.token, Dead("boom"))]))[0]
        out = await store.add([row("a", 7), row("b", 8)], on_conflict="replace")
        assert [(e.status, e.args) for e in out] == [(Status.PENDING, (7,)), (Status.PENDING, (8,))]

    async def test_replace_never_a_running_entry(self, store: Store) -> None:
        await store.add([row("a", 1)])
        [c] = await store.claim("w", 1)
        with pytest.raises(EntryExists):
            await store.add([row("a", 2)], on_conflict="replace")
        e = await store.get("a")
        assert e is not None
        assert e.status is Status.RUNNING
        assert e.args == (1,)
        assert (await store.finish_many([("a", c.token, Done())]))[0]

    async def test_error_on_any_existing_key(self, store: Store) -> None:
        await store.add([row("a"), row("b")])
        with pytest.raises(EntryExists):
            await store.add([row("a")], on_conflict="error")
        [c] = await store.claim("w", 1)
        (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
        with pytest.raises(EntryExists):  # a tombstone counts
            await store.add([row(c.entry.key)], on_conflict="error")

    async def test_error_inserts_nothing_of_the_batch(self, store: Store) -> None:
        await store.add([row("b")])
        with pytest.raises(EntryExists):
            await store.add([row("a"), row("b"), row("c")], on_conflict="error")
        assert await store.get("a") is None
        assert await store.get("c") is None

    async def test_batch_add(self, store: Store) -> None:
        out = await store.add([row(f"k{i}", i, delay=i) for i in range(250)])
        assert [e.key for e in out] == [f"k{i}" for i in range(250)]
        assert len(await store.entries(limit=1000)) == 250
        assert await store.add([]) == []

    async def test_batch_mixing_new_and_existing_keys(self, store: Store) -> None:
        # A batch where some keys exist takes the row-by-row path (a store may insert
        # an all-new batch in one go); "keep" inserts the new rows, keeps the others.
        await store.add([row("b", 1, delay=50)])
        out = await store.add([row("a", 2), row("b", 3), row("c", 4)])
        assert [(e.key, e.args) for e in out] == [("a", (2,)), ("b", (1,)), ("c", (4,))]
        assert {e.key for e in await store.entries()} == {"a", "b", "c"}
        out = await store.add([row("c", 5), row("d", 6)], on_conflict="replace")
        assert [(e.key, e.args) for e in out] == [("c", (5,)), ("d", (6,))]

    async def test_batch_repeating_a_key(self, store: Store) -> None:
        out = await store.add([row("a", 1), row("a", 2)])
        assert [e.args for e in out] == [(1,), (1,)]  # the second conflicts with the first
        with pytest.raises(EntryExists):
            await store.add([row("x", 1), row("x", 2)], on_conflict="error")
        assert await store.get("x") is None

    async def test_bad_on_conflict(self, store: Store) -> None:
        with pytest.raises(ValueError, match="on_conflict"):
            await store.add([row("a")], on_conflict="merge")  # type: ignore[arg-type]

    async def test_row_lease_wins_over_the_store_default(self, store: Store) -> None:
        await store.add([row("a", lease=3.0), row("b")])
        by_key = {c.entry.key: c for c in await store.claim("w", 2)}
        now = await store.time()
        assert by_key["a"].lease == 3.0
        assert by_key["b"].lease == store.lease == 10.0
        assert by_key["a"].lease_until == pytest.approx(now + 3.0, abs=1)

    # -- cancel -----------------------------------------------------------------

    async def test_cancel(self, store: Store) -> None:
        await store.add([row("p", delay=50), row("r"), row("f"), row("d")])
        claims = {c.entry.key: c for c in await store.claim("w", 10)}
        assert set(claims) == {"r", "f", "d"}
        (await store.finish_many([("f", claims["f"].token, Dead("x"))]))[0]
        (await store.finish_many([("d", claims["d"].token, Done())]))[0]
        assert await store.cancel("p") is True
        assert await store.cancel("f") is True
        assert await store.cancel("r") is False  # running: not interrupted
        assert await store.cancel("d") is False  # finished
        assert await store.cancel("nope") is False
        assert await store.get("p") is None
        assert await store.get("f") is None
        assert (await store.get("r")) is not None
