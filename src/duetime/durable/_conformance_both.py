"""The conformance suite's part on ``finish_and_claim``, the optional store method
(:class:`~duetime.durable._store.FinishAndClaim`) a worker uses to record
finishes and claim its next rows in one call: it must do what
``finish_many`` followed by ``claim`` does.  A store without it skips these tests.

:class:`~duetime.durable.conformance.StoreConformance` inherits these tests.
"""

from __future__ import annotations

import pytest

from .._vocab import Status
from ._conformance_kit import StoreUnderTest, row
from ._store import Claim, Dead, Done, FinishAndClaim, Outcome, Release, RetryAt, Store

__all__ = ["FinishAndClaimConformance"]


@pytest.mark.anyio
class FinishAndClaimConformance(StoreUnderTest):
    """``finish_and_claim`` against ``finish_many`` + ``claim`` (mixed into the suite)."""

    def _both(self, store: Store) -> FinishAndClaim:
        if not isinstance(store, FinishAndClaim):
            pytest.skip("this store has no finish_and_claim")
        return store

    async def _scene(self, store: Store) -> tuple[list[tuple[str, int, Outcome]], list[Claim]]:
        """Rows in every state a group of finishes meets: a run to complete, one to
        retry at once, one to release, one fenced out (its token is stale), one
        key twice; and rows due after them for the claim."""
        now = await store.time()
        await store.add([row(k, i, due=now - 10 + i) for i, k in enumerate("abcde")])
        held = {c.entry.key: c for c in await store.claim("w1", 5)}
        assert len(held) == 5
        items: list[tuple[str, int, Outcome]] = [
            ("a", held["a"].token, Done()),
            ("b", held["b"].token, RetryAt(now - 100, "ValueError: again")),
            ("c", held["c"].token, Release()),
            ("d", held["d"].token + 1000, Done()),  # not its token: refused
            ("e", held["e"].token, Dead("boom")),
            ("e", held["e"].token, Done()),  # finished above: refused
        ]
        await store.add([row(f"n{i}", i, due=now - 3 + i / 2) for i in range(3)])
        return items, list(held.values())

    async def _state(self, store: Store) -> dict[str, tuple[Status, int, int]]:
        return {
            e.key: (e.status, e.attempt, e.deliveries)
            for e in await store.entries(limit=100)
            if e.key in {"a", "b", "c", "d", "e", "n0", "n1", "n2"}
        }

    @pytest.mark.parametrize("how", ["finish_and_claim", "finish_many then claim"])
    async def test_it_matches_finish_many_then_claim(self, store: Store, how: str) -> None:
        # Both ways must leave this same state: the combined call is checked
        # against the two calls it stands for, on the same scene.
        both = self._both(store)
        items, _ = await self._scene(store)
        if how == "finish_and_claim":
            results, claims = await both.finish_and_claim(items, "w2", 4)
        else:
            results, claims = await store.finish_many(items), await store.claim("w2", 4)
        assert results == [True, True, True, False, True, False]
        # The finishes came first: the retried and the released rows (due
        # earliest) were claimable by the claim, then the others in due order.
        assert [c.entry.key for c in claims] == ["b", "c", "n0", "n1"]
        assert all(c.entry.status is Status.RUNNING for c in claims)
        assert len({c.token for c in claims}) == 4
        assert await self._state(store) == {
            "a": (Status.COMPLETED, 1, 1),
            "b": (Status.RUNNING, 2, 1),
            "c": (Status.RUNNING, 1, 1),
            "d": (Status.RUNNING, 1, 1),  # still w1's: its finish was refused
            "e": (Status.FAILED, 1, 1),
            "n0": (Status.RUNNING, 1, 1),
            "n1": (Status.RUNNING, 1, 1),
            "n2": (Status.PENDING, 1, 0),
        }

    async def test_its_claims_are_fenced_like_any_claim(self, store: Store) -> None:
        both = self._both(store)
        items, held = await self._scene(store)
        _, claims = await both.finish_and_claim(items, "w2", 10)
        old = {c.entry.key: c.token for c in held}
        for c in claims:
            if c.entry.key in old:
                # The earlier claim's token no longer finishes it, the new one does.
                assert c.token > old[c.entry.key]
                assert await store.finish_many([(c.entry.key, old[c.entry.key], Done())]) == [False]
        assert await store.finish_many([(c.entry.key, c.token, Done()) for c in claims]) == [
            True
        ] * len(claims)

    async def test_an_empty_group_or_no_room(self, store: Store) -> None:
        both = self._both(store)
        await store.add([row("x", 1)])
        assert await both.finish_and_claim([], "w", 0) == ([], [])
        [c] = await store.claim("w", 1)
        results, claims = await both.finish_and_claim([("x", c.token, Done())], "w", 0)
        assert (results, claims) == ([True], [])
        await store.add([row("y", 1)])
        results, claims = await both.finish_and_claim([], "w", 5)
        assert results == []
        assert [c.entry.key for c in claims] == ["y"]

    async def test_bad_arguments_apply_nothing(self, store: Store) -> None:
        both = self._both(store)
        await store.add([row("x", 1)])
        [c] = await store.claim("w", 1)
        with pytest.raises(ValueError, match="limit"):
            await both.finish_and_claim([("x", c.token, Done())], "w", -1)
        with pytest.raises(TypeError):
            await both.finish_and_claim([("x", c.token, "done")], "w", 1)  # type: ignore[list-item]
        got = await store.get("x")
        assert got is not None
        assert got.status is Status.RUNNING
