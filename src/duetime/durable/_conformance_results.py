"""The conformance suite's part on results and finishes: what a store keeps of a
finished entry (its result, a failure's type and traceback) and how it announces
finishes (:meth:`Store.wait_finished <duetime.durable.Store.wait_finished>`).

:class:`~duetime.durable.conformance.StoreConformance` inherits these tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from .._vocab import Status
from ._conformance_kit import StoreUnderTest, row, wake_delay
from ._store import MAX_RESULT, RESULT_DROPPED, Dead, Done, RetryAt, Store

__all__ = ["ResultConformance"]


@pytest.mark.anyio
class ResultConformance(StoreUnderTest):
    """Results, failures and finish announcements (mixed into the suite)."""

    async def _finish(self, store: Store, key: str, outcome: Done | Dead) -> None:
        await store.add([row(key, 5)])
        [c] = await store.claim("w", 1)
        assert (await store.finish_many([(key, c.token, outcome)])) == [True]

    async def test_result_ttl_defaults_to_dedupe_ttl(self, store: Store) -> None:
        assert 0 < store.result_ttl <= store.dedupe_ttl

    async def test_done_keeps_the_result_with_the_tombstone(self, store: Store) -> None:
        await self._finish(store, "a", Done('[{"url": "s3://r/7"}]'))
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.result, e.args) == (Status.COMPLETED, '[{"url": "s3://r/7"}]', (5,))
        [again] = await store.add([row("a")])  # "keep" sees the tombstone
        assert again.status is Status.COMPLETED

    async def test_done_without_a_result_and_a_dropped_reason(self, store: Store) -> None:
        await self._finish(store, "a", Done())
        e = await store.get("a")
        assert e is not None
        assert e.result is None
        await self._finish(store, "b", Done(None, dropped="it is a set"))
        e = await store.get("b")
        assert e is not None
        assert e.result is None
        assert e.last_error == RESULT_DROPPED + "it is a set"

    async def test_a_result_over_the_limit_is_refused_at_the_outcome(self, store: Store) -> None:
        with pytest.raises(ValueError, match="byte limit"):
            Done('["' + "x" * MAX_RESULT + '"]')
        with pytest.raises(TypeError):
            Done(b"[1]")  # type: ignore[arg-type]
        biggest = '["' + "x" * (MAX_RESULT - 4) + '"]'
        await self._finish(store, "a", Done(biggest))
        e = await store.get("a")
        assert e is not None
        assert e.result == biggest

    async def test_a_result_expires_after_result_ttl(
        self, tmp_path: Path, anyio_backend: Any
    ) -> None:
        async with self.make_store(tmp_path, dedupe_ttl=100.0, result_ttl=10.0) as store:
            assert store.result_ttl == 10.0
            await self._finish(store, "a", Done("[3]"))
            await self.advance(5)
            e = await store.get("a")
            assert e is not None
            assert e.result == "[3]"
            await self.advance(6)
            e = await store.get("a")
            assert e is not None
            assert e.status is Status.COMPLETED
            assert e.result is None
            await self.advance(90)
            assert await store.get("a") is None

    async def test_a_result_ttl_over_dedupe_ttl_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="dedupe_ttl"):
            self.make_store(tmp_path, dedupe_ttl=10.0, result_ttl=20.0)

    async def test_dead_keeps_the_error_type_and_traceback(self, store: Store) -> None:
        tb = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'k'\n"
        await self._finish(store, "a", Dead("KeyError: 'k'", error_type="KeyError", traceback=tb))
        e = await store.get("a")
        assert e is not None
        assert (e.status, e.last_error, e.error_type, e.traceback) == (
            Status.FAILED,
            "KeyError: 'k'",
            "KeyError",
            tb,
        )
        [listed] = await store.entries(status=Status.FAILED)
        assert (listed.key, listed.last_error) == ("a", "KeyError: 'k'")
        await self._finish(store, "b", Dead("plain"))
        e = await store.get("b")
        assert e is not None
        assert (e.error_type, e.traceback) == (None, None)

    async def test_replace_forgets_the_result(self, store: Store) -> None:
        await self._finish(store, "a", Done("[1]"))
        [e] = await store.add([row("a", delay=5)], on_conflict="replace")
        got = await store.get("a")
        assert got is not None
        assert got.status is Status.PENDING
        assert got.result is None
        assert e.result is None

    async def test_wait_finished_times_out(self, store: Store) -> None:
        await store.wait_finished(0)
        t0 = anyio.current_time()
        await store.wait_finished(1.0)
        assert 1.0 <= anyio.current_time() - t0 < 2.0

    async def test_wait_finished_wakes_on_a_finish(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)

        async def finish() -> None:
            await store.finish_many([("a", c.token, Done("[1]"))])

        # within one poll period, not the timeout
        assert await wake_delay(store.wait_finished, finish, prime=True) <= 1.0

    async def test_a_finish_between_two_waits_is_not_lost(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        await store.wait_finished(0)
        await store.finish_many([("a", c.token, RetryAt(await store.time(), "again"))])
        [c] = await store.claim("w", 1)
        await store.finish_many([("a", c.token, Done("[1]"))])
        t0 = anyio.current_time()
        await store.wait_finished(600.0)
        assert anyio.current_time() - t0 <= 1.0
