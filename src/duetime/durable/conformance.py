"""The durable-store conformance suite: what every :class:`~duetime.durable.Store` must do.

For the tests of a store, with pytest and anyio's pytest plugin (``pytest``
is needed by this module only: nothing else in duetime imports it).  Subclass
:class:`StoreConformance` in a test module and implement
:meth:`StoreConformance.make_store`; every ``test_*`` method then runs against
your store::

    # conftest.py: run every test on asyncio and trio, on virtual time
    from duetime.testing import anyio_backend_fixture

    anyio_backend = anyio_backend_fixture()

    # test_my_store.py
    from duetime.durable.conformance import StoreConformance, loop_epoch_clock

    class TestMyStore(StoreConformance):
        def make_store(self, tmp_path, **options):
            return MyStore(tmp_path / "db", clock=loop_epoch_clock(), **options)

Time moves with :meth:`StoreConformance.advance` (a plain ``anyio.sleep`` by
default), so a store whose clock follows the loop clock (``MemoryStore``'s
default, or :func:`loop_epoch_clock` injected) sees leases lapse without real
waits on virtual time; a store on a real clock overrides :meth:`advance`.
``options`` are ``lease``, ``dedupe_ttl`` and ``result_ttl`` (seconds).  A store that can hold
a row another program wrote wrong also subclasses
:class:`MalformedRowConformance`.  The guide "Writing a store" says what the
suite checks and why.
"""

from __future__ import annotations

import json

import anyio
import pytest

from .._vocab import Status
from ._conformance_abort import AbortConformance
from ._conformance_add import AddConformance
from ._conformance_both import FinishAndClaimConformance
from ._conformance_kit import (
    MALFORMED_FAULTS,
    START,
    MalformedRowConformance,
    loop_epoch_clock,
    row,
    wake_delay,
)
from ._conformance_results import ResultConformance
from ._conformance_stats import InspectionConformance
from ._store import (
    Claim,
    Dead,
    Done,
    NextOccurrence,
    Release,
    RetryAt,
    Store,
)

__all__ = [
    "MALFORMED_FAULTS",
    "START",
    "MalformedRowConformance",
    "StoreConformance",
    "loop_epoch_clock",
    "row",
]


@pytest.mark.anyio
class StoreConformance(
    # The suite's parts, by concept (a new part: one more line here).
    AddConformance,
    ResultConformance,
    InspectionConformance,
    AbortConformance,
    FinishAndClaimConformance,
):
    """The suite.  Subclasses implement :meth:`make_store` (and may override :meth:`advance`)."""

    # -- claim ----------------------------------------------------------------

    async def test_claim_leases_with_a_token(self, store: Store) -> None:
        await store.add([row("a", 1)])
        now = await store.time()
        [c] = await store.claim("w1", 5)
        assert isinstance(c, Claim)
        assert c.entry.key == "a"
        assert c.entry.status is Status.RUNNING
        assert c.entry.deliveries == 1
        assert json.loads(c.payload) == [1]
        assert c.lease == 10.0
        assert c.lease_until == pytest.approx(now + 10.0, abs=1)
        assert isinstance(c.token, int)
        assert (await store.get("a")).status is Status.RUNNING  # type: ignore[union-attr]
        assert await store.claim("w2", 5) == []  # leased

    async def test_claim_only_due_rows_earliest_first_up_to_limit(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("late", due=now + 100), row("c", due=now - 1), row("a", due=now - 3)])
        await store.add([row("b", due=now - 2)])
        first = await store.claim("w", 2)
        assert [c.entry.key for c in first] == ["a", "b"]
        second = await store.claim("w", 5)
        assert [c.entry.key for c in second] == ["c"]
        assert await store.claim("w", 5) == []
        for c in first + second:
            (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
        assert await store.claim("w", 0) == []
        await self.advance(101)
        assert [c.entry.key for c in await store.claim("w", 5)] == ["late"]

    async def test_tokens_strictly_increase_and_are_never_reused(self, store: Store) -> None:
        tokens: list[int] = []
        await store.add([row(f"k{i}") for i in range(5)])
        batch = await store.claim("w", 5)
        tokens += [c.token for c in batch]
        for c in batch:
            (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
        # replace the tombstones, cancel some, re-add: tokens still go up
        await store.add([row(f"k{i}") for i in range(5)], on_conflict="replace")
        assert await store.cancel("k0")
        assert await store.cancel("k1")
        await store.add([row("k0"), row("k1")])
        again = await store.claim("w", 10)
        assert len(again) == 5
        tokens += [c.token for c in again]
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == len(tokens)

    # -- leases, fencing ------------------------------------------------------

    async def test_lapsed_lease_is_claimed_again_and_the_old_token_is_fenced(
        self, store: Store
    ) -> None:
        await store.add([row("a")])
        [old] = await store.claim("w1", 1)
        await self.advance(5)
        assert await store.claim("w2", 1) == []  # lease still held
        await self.advance(6)
        [new] = await store.claim("w2", 1)
        assert new.entry.key == "a"
        assert new.token > old.token
        assert new.entry.deliveries == 2
        assert new.entry.attempt == 1
        assert (await store.finish_many([("a", old.token, Done())]))[
            0
        ] is False  # the paused worker
        assert await store.extend([("a", old.token)]) == [False]
        assert (await store.get("a")).status is Status.RUNNING  # type: ignore[union-attr]
        assert (await store.finish_many([("a", new.token, Done())]))[0] is True
        assert (await store.finish_many([("a", new.token, Done())]))[0] is False  # completed once

    async def test_extend_in_one_batch(self, store: Store) -> None:
        await store.add([row("a"), row("b"), row("c")])
        cs = {c.entry.key: c for c in await store.claim("w", 3)}
        (await store.finish_many([("c", cs["c"].token, Done())]))[0]
        await self.advance(8)
        ok = await store.extend(
            [("a", cs["a"].token), ("b", cs["b"].token), ("c", cs["c"].token), ("zz", 1)]
        )
        assert ok == [True, True, False, False]
        await self.advance(8)  # 16 s after the claim, 8 s after the renewal
        assert await store.claim("w2", 5) == []
        assert await store.extend([]) == []
        await self.advance(3)
        assert {c.entry.key for c in await store.claim("w2", 5)} == {"a", "b"}

    async def test_finish_with_a_wrong_token_or_key(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        assert (await store.finish_many([("a", c.token + 1000, Done())]))[0] is False
        assert (await store.finish_many([("nope", c.token, Done())]))[0] is False
        assert (await store.get("a")).status is Status.RUNNING  # type: ignore[union-attr]
        with pytest.raises(TypeError):
            (await store.finish_many([("a", c.token, "done")]))[0]  # type: ignore[list-item]

    async def test_concurrent_finishes_each_get_their_own_result(self, store: Store) -> None:
        await store.add([row(f"k{i}") for i in range(40)])
        claims = await store.claim("w", 40)
        results: dict[tuple[str, int], bool] = {}

        async def finish(key: str, token: int) -> None:
            results[key, token] = (await store.finish_many([(key, token, Done())]))[0]

        async with anyio.create_task_group() as tg:
            for c in claims:
                tg.start_soon(finish, c.entry.key, c.token)
                tg.start_soon(finish, c.entry.key, c.token + 10_000)  # a stale token
        assert sum(results.values()) == 40
        assert all(results[c.entry.key, c.token] for c in claims)
        assert len(await store.entries(status=Status.COMPLETED)) == 40

    async def test_finish_many_fences_each_row(self, store: Store) -> None:
        await store.add([row("a"), row("b"), row("c"), row("d")])
        by_key = {c.entry.key: c for c in await store.claim("w", 4)}
        now = await store.time()
        results = await store.finish_many(
            [
                ("a", by_key["a"].token, Done()),
                ("b", by_key["b"].token + 1000, Done()),  # a stale token: no change
                ("c", by_key["c"].token, RetryAt(now + 50, "boom")),
                ("nope", by_key["a"].token, Done()),  # no such key
                ("d", by_key["d"].token, Dead("gone")),
                ("a", by_key["a"].token, Done()),  # already finished by the first item
            ]
        )
        assert results == [True, False, True, False, True, False]
        got = {k: await store.get(k) for k in "abcd"}
        assert {k: e.status for k, e in got.items() if e is not None} == {
            "a": Status.COMPLETED,
            "b": Status.RUNNING,
            "c": Status.PENDING,
            "d": Status.FAILED,
        }
        assert (got["c"].attempt, got["c"].last_error) == (2, "boom")  # type: ignore[union-attr]
        assert await store.finish_many([]) == []

    async def test_finish_many_with_a_bad_outcome_applies_nothing(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        with pytest.raises(TypeError):
            await store.finish_many([("a", c.token, Done()), ("a", c.token, "done")])  # type: ignore[list-item]
        assert (await store.get("a")).status is Status.RUNNING  # type: ignore[union-attr]
        assert await store.finish_many([("a", c.token, Done())]) == [True]

    async def test_finish_many_after_a_lapsed_lease_and_a_new_claim(self, store: Store) -> None:
        await store.add([row("a"), row("b")])
        old = {c.entry.key: c.token for c in await store.claim("w1", 2)}
        await self.advance(11)  # past the 10 s lease
        new = {c.entry.key: c.token for c in await store.claim("w2", 1)}
        (taken,) = new
        other = "b" if taken == "a" else "a"
        # The first worker's finishes: the re-claimed row is fenced, the other
        # (lapsed but not re-claimed) still records.
        results = await store.finish_many([(k, old[k], Done()) for k in (taken, other)])
        assert results == [False, True]
        assert await store.finish_many([(taken, new[taken], Done())]) == [True]

    # -- outcomes ---------------------------------------------------------------

    async def test_done_leaves_a_tombstone(self, store: Store) -> None:
        await store.add([row("a", 5)])
        [c] = await store.claim("w", 1)
        assert (await store.finish_many([("a", c.token, Done())]))[0]
        e = await store.get("a")
        assert e is not None
        assert e.status is Status.COMPLETED
        assert e.args == (5,)
        assert await store.head() is None
        assert await store.claim("w", 1) == []

    async def test_retry_at(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        at = await store.time() + 20
        assert (await store.finish_many([("a", c.token, RetryAt(at, "ValueError: nope"))]))[0]
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.attempt, e.deliveries, e.last_error) == (
            Status.PENDING,
            2,
            0,
            "ValueError: nope",
        )
        assert e.due.timestamp() == pytest.approx(at)
        assert await store.claim("w", 1) == []
        await self.advance(21)
        [c2] = await store.claim("w", 1)
        assert c2.entry.attempt == 2
        assert c2.token > c.token

    async def test_next_occurrence(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("s", schedule='{"every": 60}', due=now)])
        [c] = await store.claim("w", 1)
        assert c.entry.schedule == '{"every": 60}'
        assert c.entry.idempotency_key == "s@0"
        assert (await store.finish_many([("s", c.token, RetryAt(now + 1, "boom"))]))[0]
        await self.advance(2)
        [c] = await store.claim("w", 1)
        assert c.entry.attempt == 2
        assert (await store.finish_many([("s", c.token, NextOccurrence(now + 60, error="boom"))]))[
            0
        ]
        e = await store.get("s")
        assert e is not None
        assert (e.status, e.occurrence, e.attempt, e.deliveries) == (Status.PENDING, 1, 1, 0)
        assert e.last_error == "boom"
        assert e.idempotency_key == "s@1"
        assert e.due.timestamp() == pytest.approx(now + 60)
        await self.advance(60)
        [c] = await store.claim("w", 1)
        assert (await store.finish_many([("s", c.token, NextOccurrence(now + 120))]))[0]
        assert (await store.get("s")).occurrence == 2  # type: ignore[union-attr]

    async def test_dead_letters_listed_retried_deleted(self, store: Store) -> None:
        await store.add([row("a", 1), row("b", 2)])
        for c in await store.claim("w", 2):
            assert (
                await store.finish_many(
                    [(c.entry.key, c.token, Dead(f"unknown task {c.entry.key}"))]
                )
            )[0]
        failed = await store.entries(status=Status.FAILED)
        assert [(e.key, e.last_error) for e in failed] == [
            ("a", "unknown task a"),
            ("b", "unknown task b"),
        ]
        assert await store.head() is None
        await self.advance(50)
        assert await store.retry("a") is True
        assert await store.retry("a") is False  # no longer FAILED
        e = await store.get("a")
        assert e is not None
        assert e.status is Status.PENDING
        assert e.attempt == 1
        assert e.due.timestamp() == pytest.approx(await store.time(), abs=1)
        [c] = await store.claim("w", 5)
        assert c.entry.key == "a"
        assert await store.delete("a") is False  # running
        assert await store.delete("b") is True
        assert await store.get("b") is None
        assert await store.delete("b") is False

    async def test_release_gives_the_lease_back_uncounted(self, store: Store) -> None:
        await store.add([row("a", max_deliveries=1)])
        for _ in range(3):  # a released claim is not a delivery: never poison
            [c] = await store.claim("w", 1)
            assert c.entry.deliveries == 1
            assert (await store.finish_many([("a", c.token, Release())]))[0]
            e = await store.get("a")
            assert e is not None
            assert e.status is Status.PENDING
            assert e.deliveries == 0
        [c2] = await store.claim("w2", 1)
        assert (await store.finish_many([("a", c.token, Done())]))[0] is False
        assert (await store.finish_many([("a", c2.token, Done())]))[0]

    async def test_max_deliveries_poison(self, store: Store) -> None:
        await store.add([row("p", max_deliveries=2), row("ok")])
        seen = []
        for _ in range(2):
            claims = await store.claim("w", 5)
            seen.append(sorted((c.entry.key, c.entry.deliveries) for c in claims))
            for c in claims:
                if c.entry.key == "ok":
                    (await store.finish_many([("ok", c.token, Done())]))[0]
            await self.advance(11)  # the worker "died" holding p
        assert seen == [[("ok", 1), ("p", 1)], [("p", 2)]]
        assert await store.claim("w", 5) == []  # the third delivery dead-letters it
        e = await store.get("p")
        assert e is not None
        assert e.status is Status.FAILED
        assert e.last_error is not None
        assert "poison" in e.last_error
        assert await store.retry("p")
        [c] = await store.claim("w", 5)
        assert c.entry.deliveries == 1

    async def test_retry_resets_deliveries(self, store: Store) -> None:
        await store.add([row("a", max_deliveries=2)])
        [c] = await store.claim("w", 1)
        await self.advance(11)
        [c] = await store.claim("w", 1)
        assert c.entry.deliveries == 2
        assert (await store.finish_many([("a", c.token, RetryAt(await store.time(), "x"))]))[0]
        [c] = await store.claim("w", 1)
        assert c.entry.deliveries == 1
        assert c.entry.attempt == 2

    # -- head, wake-ups, listing -----------------------------------------------

    async def test_head(self, store: Store) -> None:
        assert await store.head() is None
        now = await store.time()
        await store.add([row("a", due=now + 50), row("b", due=now + 20)])
        assert await store.head() == pytest.approx(now + 20)
        await self.advance(20)
        [c] = await store.claim("w", 5)
        assert await store.head() == pytest.approx(now + 30, abs=1)  # b's lease end
        (await store.finish_many([("b", c.token, Done())]))[0]
        assert await store.head() == pytest.approx(now + 50)
        await store.cancel("a")
        assert await store.head() is None

    async def test_wait_changed_times_out(self, store: Store) -> None:
        t0 = anyio.current_time()
        await store.wait_changed(5.0)
        assert 5.0 <= anyio.current_time() - t0 < 6.0

    async def test_wait_changed_wakes_on_an_earlier_entry(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("late", due=now + 1000)])

        async def add() -> None:
            await store.add([row("soon", delay=10)])

        # within one poll period, not the timeout
        assert await wake_delay(store.wait_changed, add, settle=3) <= 1.0

    async def test_a_change_between_head_and_wait_changed_is_not_lost(self, store: Store) -> None:
        # A claim loop reads the head, then waits; a write in between (here by
        # the same process) must still wake that wait.
        now = await store.time()
        await store.add([row("late", due=now + 1000)])
        await store.wait_changed(0.0)  # a previous wait: changes are counted from its end
        assert await store.head() == pytest.approx(now + 1000)
        await store.add([row("soon", delay=10)])
        t0 = anyio.current_time()
        await store.wait_changed(600.0)
        assert anyio.current_time() - t0 < 1.0
        # ... and only once: nothing new since, so the next wait sleeps on.
        t0 = anyio.current_time()
        await store.wait_changed(1.0)  # short: on Redis, time is real here
        assert anyio.current_time() - t0 >= 1.0

    async def test_entries_by_status_in_due_order(self, store: Store) -> None:
        now = await store.time()
        await store.add(
            [row(k, due=now + d) for k, d in [("c", 3), ("a", 1), ("b", 2), ("z", 500)]]
        )
        await self.advance(1)
        [c] = await store.claim("w", 1)
        assert c.entry.key == "a"
        await self.advance(2)
        [cb, cc] = await store.claim("w", 2)
        (await store.finish_many([("b", cb.token, Done())]))[0]
        (await store.finish_many([("c", cc.token, Dead("x"))]))[0]
        assert [e.key for e in await store.entries()] == ["a", "b", "c", "z"]
        assert [e.key for e in await store.entries(limit=2)] == ["a", "b"]
        assert [e.key for e in await store.entries(status=Status.RUNNING)] == ["a"]
        assert [e.key for e in await store.entries(status=Status.PENDING)] == ["z"]
        assert [e.key for e in await store.entries(status=Status.COMPLETED)] == ["b"]
        assert [e.key for e in await store.entries(status=Status.FAILED)] == ["c"]

    # -- listing takes every status ------------------------------------------------

    async def test_listing_takes_every_status_and_a_zero_limit(self, store: Store) -> None:
        await store.add([row("a")])
        for status in Status:
            listed = await store.entries(status=status)
            assert all(e.status is status for e in listed)
        assert await store.entries(limit=0) == []

    async def test_a_negative_or_non_int_limit_is_refused_at_the_call(self, store: Store) -> None:
        await store.add([row("a")])
        with pytest.raises(ValueError, match="limit"):
            await store.entries(limit=-1)
        with pytest.raises(TypeError, match="limit"):
            await store.entries(limit=1.5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="limit"):
            await store.entries(limit=True)
        assert [e.key for e in await store.entries(limit=1)] == ["a"]
        with pytest.raises(ValueError, match="limit"):
            await store.claim("w", -1)
        assert await store.claim("w", 0) == []
