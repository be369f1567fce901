"""The conformance suite's part on abort: what :meth:`Store.abort
<duetime.durable.Store.abort>` does to a row in each state, how a worker learns
of a request (:meth:`~duetime.durable.Store.aborts`,
:meth:`~duetime.durable.Store.wait_aborted`), and that an aborted row has one
outcome whatever it is finished with.

:class:`~duetime.durable.conformance.StoreConformance` inherits these tests.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from .._vocab import Status
from ._conformance_kit import StoreUnderTest, row, wake_delay
from ._store import (
    ABORTED,
    Aborted,
    Claim,
    Dead,
    Done,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    Store,
)

__all__ = ["AbortConformance"]

#: A series row's schedule, as a store sees it (text it keeps, never reads).
_SERIES = '{"every": 60}'


def _outcomes(now: float) -> dict[str, Outcome]:
    """Each outcome but Done that a worker may send for an aborted run."""
    return {
        "RetryAt": RetryAt(now, "ValueError: boom"),
        "Release": Release(),
        "NextOccurrence": NextOccurrence(now + 60),
        "Dead": Dead("ValueError: boom", error_type="ValueError", traceback="tb"),
        "Aborted": Aborted(),
    }


@pytest.mark.anyio
class AbortConformance(StoreUnderTest):
    """Abort requests, and the one outcome of an aborted row (mixed into the suite)."""

    async def _running(self, store: Store, key: str, **kw: Any) -> Claim:
        await store.add([row(key, 1, **kw)])
        [c] = await store.claim("w", 1)
        assert c.entry.key == key
        return c

    # -- abort by state ---------------------------------------------------------------

    async def test_abort_deletes_a_pending_or_failed_row(self, store: Store) -> None:
        await store.add([row("p", delay=60), row("s", schedule=_SERIES, delay=60)])
        assert await store.abort("p")
        assert await store.abort("s")  # a series not running: deleted too
        assert await store.get("p") is None
        assert await store.get("s") is None
        c = await self._running(store, "f")
        await store.finish_many([("f", c.token, Dead("boom"))])
        assert await store.abort("f")
        assert await store.get("f") is None
        assert await store.claim("w", 10) == []

    async def test_abort_of_a_finished_or_absent_key_is_false(self, store: Store) -> None:
        assert not await store.abort("missing")
        c = await self._running(store, "done")
        await store.finish_many([("done", c.token, Done("[1]"))])
        assert not await store.abort("done")
        e = await store.get("done")
        assert e is not None
        assert (e.status, e.result, e.abort_requested) == (Status.COMPLETED, "[1]", False)
        c = await self._running(store, "gone")
        assert await store.abort("gone")
        await store.finish_many([("gone", c.token, Aborted())])
        assert not await store.abort("gone")  # a CANCELLED tombstone

    async def test_abort_of_a_running_row_requests_it(self, store: Store) -> None:
        c = await self._running(store, "a")
        other = await self._running(store, "b")
        e = await store.get("a")
        assert e is not None
        assert e.abort_requested is False
        assert await store.abort("a")
        assert await store.abort("a")  # requested again: still True
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.abort_requested) == (Status.RUNNING, True)
        assert await store.aborts([("a", c.token), ("b", other.token), ("x", 1)]) == [
            True,
            False,
            False,
        ]
        assert await store.aborts([]) == []
        # The run keeps its lease until its worker finishes it.
        assert await store.extend([("a", c.token)]) == [True]
        assert await store.claim("w", 10) == []

    async def test_aborts_is_false_for_a_token_no_longer_current(self, store: Store) -> None:
        old = await self._running(store, "a")
        await store.finish_many([("a", old.token, RetryAt(await store.time(), "again"))])
        [new] = await store.claim("w", 1)
        assert await store.abort("a")
        assert await store.aborts([("a", old.token), ("a", new.token)]) == [False, True]
        assert await store.finish_many([("a", old.token, Done())]) == [False]

    # -- the one outcome of an aborted row ----------------------------------------------

    @pytest.mark.parametrize("kind", ["RetryAt", "Release", "NextOccurrence", "Dead", "Aborted"])
    async def test_an_aborted_run_ends_cancelled_whatever_it_finishes_with(
        self, store: Store, kind: str
    ) -> None:
        schedule = _SERIES if kind == "NextOccurrence" else None
        c = await self._running(store, "a", schedule=schedule)
        assert await store.abort("a")
        outcome = _outcomes(await store.time())[kind]
        assert await store.finish_many([("a", c.token, outcome)]) == [True]
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.last_error, e.result) == (Status.CANCELLED, ABORTED, None)
        assert [x.key for x in await store.entries(status=Status.CANCELLED)] == ["a"]
        await self.advance(120)  # past any retry or next occurrence: nothing runs again
        assert await store.claim("w", 10) == []
        assert await store.head() is None
        assert (await store.add([row("a")]))[0].status is Status.CANCELLED  # "keep"

    async def test_done_after_an_abort_completes(self, store: Store) -> None:
        c = await self._running(store, "a")
        assert await store.abort("a")
        assert await store.finish_many([("a", c.token, Done("[7]"))]) == [True]
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.result) == (Status.COMPLETED, "[7]")

    async def test_aborted_without_a_request_ends_cancelled(self, store: Store) -> None:
        c = await self._running(store, "a")
        assert await store.finish_many([("a", c.token, Aborted())]) == [True]
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)

    @pytest.mark.parametrize("series", [False, True])
    async def test_a_lapsed_lease_with_an_abort_request_is_not_handed_out(
        self, store: Store, series: bool
    ) -> None:
        c = await self._running(store, "a", schedule=_SERIES if series else None)
        await store.add([row("b", delay=5)])
        assert await store.abort("a")
        await self.advance(11)  # the lease lapsed: its worker died before it learnt
        claims = await store.claim("w2", 10)
        assert [x.entry.key for x in claims] == ["b"]
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)
        assert await store.claim("w2", 10) == []
        assert await store.finish_many([("a", c.token, Done())]) == [False]

    async def test_replacing_an_aborted_tombstone_starts_afresh(self, store: Store) -> None:
        c = await self._running(store, "a")
        await store.abort("a")
        await store.finish_many([("a", c.token, Aborted())])
        [e] = await store.add([row("a", 2)], on_conflict="replace")
        assert (e.status, e.abort_requested, e.last_error) == (Status.PENDING, False, None)
        [c] = await store.claim("w", 1)
        assert c.entry.abort_requested is False
        assert await store.aborts([("a", c.token)]) == [False]
        await store.finish_many([("a", c.token, RetryAt(await store.time(), "again"))])
        got = await store.get("a")
        assert got is not None
        assert got.status is Status.PENDING  # retried as usual: no request left over

    # -- announcements ---------------------------------------------------------------

    async def test_wait_aborted_times_out(self, store: Store) -> None:
        await store.wait_aborted(0)
        t0 = anyio.current_time()
        await store.wait_aborted(1.0)
        assert 1.0 <= anyio.current_time() - t0 < 2.0

    async def test_wait_aborted_wakes_on_an_abort(self, store: Store) -> None:
        await self._running(store, "a")

        async def abort() -> None:
            assert await store.abort("a")

        # within one poll period, not the timeout
        assert await wake_delay(store.wait_aborted, abort, prime=True) <= 1.0

    async def test_an_abort_between_two_waits_is_not_lost(self, store: Store) -> None:
        await self._running(store, "a")
        await store.wait_aborted(0)
        assert await store.abort("a")
        t0 = anyio.current_time()
        await store.wait_aborted(600.0)
        assert anyio.current_time() - t0 <= 1.0

    async def test_wait_finished_wakes_on_the_aborted_end(self, store: Store) -> None:
        c = await self._running(store, "a")
        assert await store.abort("a")

        async def end() -> None:
            await store.finish_many([("a", c.token, Release())])

        assert await wake_delay(store.wait_finished, end, prime=True) <= 1.0

    async def test_wait_finished_wakes_when_a_claim_ends_an_aborted_row(self, store: Store) -> None:
        await self._running(store, "a")
        assert await store.abort("a")
        await self.advance(11)
        await store.wait_finished(0)
        assert await store.claim("w2", 10) == []
        t0 = anyio.current_time()
        await store.wait_finished(600.0)
        assert anyio.current_time() - t0 <= 1.0
