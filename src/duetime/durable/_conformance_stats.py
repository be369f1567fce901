"""The conformance suite's part on inspection: the queries a dashboard asks a
store (:meth:`Store.counts <duetime.durable.Store.counts>`, ``page``,
``activity``, ``inspect``).

:class:`~duetime.durable.conformance.StoreConformance` inherits these tests.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from .._vocab import Status
from ._conformance_kit import StoreUnderTest, row
from ._stats import Counts, EntryQuery
from ._store import Aborted, Dead, Done, Entry, NextOccurrence, Outcome, RetryAt, Store

__all__ = ["InspectionConformance"]


@pytest.mark.anyio
class InspectionConformance(StoreUnderTest):
    """Counts, filtered pages, per-minute activity, one entry's detail (mixed into the suite)."""

    async def _all_pages(self, store: Store, **filters: Any) -> list[Entry]:
        out: list[Entry] = []
        after = None
        for _ in range(100):
            page = await store.page(EntryQuery(after=after, limit=2, **filters))
            assert len(page.entries) <= 2
            out += page.entries
            if page.next is None:
                return out
            after = page.next
        raise AssertionError("page() never reached the end")

    # -- counts --------------------------------------------------------------

    async def test_counts_by_task_and_status(self, store: Store) -> None:
        assert await store.counts() == Counts()
        await store.add([row(f"a{i}", task="mail") for i in range(3)])
        await store.add([row("b0", task="bill"), row("b1", task="bill", delay=600)])
        claims = await store.claim("w", 10)
        assert len(claims) == 4
        by_key = {c.entry.key: c for c in claims}
        outcomes: list[tuple[str, int, Outcome]] = [
            ("a0", by_key["a0"].token, Done()),
            ("a1", by_key["a1"].token, Dead("boom")),
        ]
        assert await store.finish_many(outcomes) == [True, True]
        counts = await store.counts()
        assert counts.by_task == {
            "bill": {Status.PENDING: 1, Status.RUNNING: 1},
            "mail": {Status.RUNNING: 1, Status.COMPLETED: 1, Status.FAILED: 1},
        }
        assert counts.by_status[Status.RUNNING] == 2
        assert counts.by_status[Status.CANCELLED] == 0
        assert counts.total == 5
        assert counts.groups[0] == ("bill", Status.PENDING, 1)

    async def test_counts_follow_cancel_delete_retry_and_replace(self, store: Store) -> None:
        await store.add([row("a", task="x"), row("b", task="x"), row("c", task="x", delay=60)])
        [c] = await store.claim("w", 1)
        assert await store.finish_many([(c.entry.key, c.token, Dead("no"))]) == [True]
        assert (await store.counts()).by_task == {"x": {Status.PENDING: 2, Status.FAILED: 1}}
        assert await store.retry(c.entry.key)
        assert (await store.counts()).by_task == {"x": {Status.PENDING: 3}}
        assert await store.cancel("c")
        await store.add([row("b", task="y", delay=60)], on_conflict="replace")
        assert (await store.counts()).by_task == {
            "x": {Status.PENDING: 1},
            "y": {Status.PENDING: 1},
        }
        assert await store.delete("b")
        assert (await store.counts()).groups == (("x", Status.PENDING, 1),)

    async def test_counts_drop_expired_tombstones(self, tmp_path: Path) -> None:
        async with self.make_store(tmp_path, lease=10.0, dedupe_ttl=60.0) as store:
            await store.add([row("a", task="x")])
            [c] = await store.claim("w", 1)
            await store.finish_many([("a", c.token, Done())])
            assert (await store.counts()).groups == (("x", Status.COMPLETED, 1),)
            await self.advance(61)
            await store.add([row("b", task="x", delay=600)])  # a write: stores purge lazily
            assert (await store.counts()).groups == (("x", Status.PENDING, 1),)

    async def test_counts_and_activity_of_aborted_runs(self, tmp_path: Path) -> None:
        # Two runs an abort ends (an Aborted outcome; a retry after an abort
        # request): CANCELLED tombstones, counted until they expire, listed and
        # inspected; the activity counts their claims and no finish of theirs.
        async with self.make_store(tmp_path, lease=10.0, dedupe_ttl=60.0) as store:
            await store.add([row("a", task="x"), row("b", task="x"), row("c", task="x")])
            claims = {c.entry.key: c for c in await store.claim("w", 10)}
            assert await store.abort("b")
            now = await store.time()
            assert await store.finish_many(
                [
                    ("a", claims["a"].token, Aborted()),
                    ("b", claims["b"].token, RetryAt(now + 60, "again")),
                ]
            ) == [True, True]
            counts = await store.counts()
            assert counts.by_task == {"x": {Status.CANCELLED: 2, Status.RUNNING: 1}}
            assert counts.by_status[Status.CANCELLED] == 2
            page = await store.page(EntryQuery(status=Status.CANCELLED))
            assert [e.key for e in page.entries] == ["a", "b"]
            detail = await store.inspect("b")
            assert detail is not None
            assert detail.entry.status is Status.CANCELLED
            assert detail.owner is None
            assert detail.expires_at is not None
            minutes = await store.activity(60)
            assert sum(m.started for m in minutes) == 3
            assert sum(m.finished for m in minutes) == 0
            await self.advance(61)
            await store.add([row("d", task="x", delay=600)])  # a write: stores purge lazily
            assert (await store.counts()).by_task == {"x": {Status.PENDING: 1, Status.RUNNING: 1}}

    # -- page ----------------------------------------------------------------

    async def test_page_walks_every_entry_once_in_due_then_key_order(self, store: Store) -> None:
        now = await store.time()
        due = now + 100
        keys = ["b", "a", "c", "<script>", "é", "a/1"]
        await store.add([row(k, due=due) for k in keys])
        await store.add([row("early", due=now + 50), row("late", due=now + 500)])
        got = await self._all_pages(store)
        assert [e.key for e in got] == ["early", *sorted(keys), "late"]
        first = await store.page(EntryQuery(limit=3))
        assert [e.key for e in first.entries] == ["early", "<script>", "a"]
        assert first.next is not None
        assert first.next[1] == "a"
        rest = await store.page(EntryQuery(after=first.next, limit=1000))
        assert [e.key for e in rest.entries] == ["a/1", "b", "c", "é", "late"]
        assert rest.next is None

    async def test_page_filters(self, store: Store) -> None:
        now = await store.time()
        await store.add(
            [
                row("mail:1", task="mail", due=now - 5),
                row("mail:2", task="mail", due=now + 100),
                row("mailbox", task="bill", due=now + 200),
                row("bill:1", task="bill", due=now + 300),
            ]
        )
        [c] = await store.claim("w", 1)
        assert c.entry.key == "mail:1"

        async def keys(**filters: Any) -> list[str]:
            return [e.key for e in await self._all_pages(store, **filters)]

        assert await keys(status=Status.RUNNING) == ["mail:1"]
        assert await keys(status=Status.PENDING) == ["mail:2", "mailbox", "bill:1"]
        assert await keys(task="bill") == ["mailbox", "bill:1"]
        assert await keys(key_prefix="mail:") == ["mail:1", "mail:2"]
        assert await keys(key_prefix="mail") == ["mail:1", "mail:2", "mailbox"]
        assert await keys(due_from=now + 100, due_before=now + 300) == ["mail:2", "mailbox"]
        assert await keys(task="mail", status=Status.PENDING, key_prefix="m") == ["mail:2"]
        assert await keys(status=Status.FAILED) == []
        assert await keys(task="nope") == []
        assert await keys(series=True) == []
        assert await keys(series=False, task="bill") == ["mailbox", "bill:1"]

    async def test_page_filters_series(self, store: Store) -> None:
        now = await store.time()
        spec = '{"v":1,"trigger":{"every":60.0},"start":%r,"misfire":"coalesce","overlap":"skip"}'
        await store.add(
            [
                row("one", due=now + 1),
                row("every-minute", due=now + 2, schedule=spec % (now + 2)),
            ]
        )
        series = (await store.page(EntryQuery(series=True))).entries
        assert [e.key for e in series] == ["every-minute"]
        assert series[0].schedule == spec % (now + 2)
        assert [e.key for e in (await store.page(EntryQuery(series=False))).entries] == ["one"]

    async def test_page_of_running_entries_walks_in_order(self, store: Store) -> None:
        now = await store.time()
        dues = {"r3": now - 1, "r1": now - 3, "r2": now - 3, "r0": now - 5, "r4": now}
        await store.add([row(k, task="t", due=d) for k, d in dues.items()])
        await store.add([row("later", task="t", due=now + 500)])
        assert len(await store.claim("w", 10)) == 5
        got = await self._all_pages(store, status=Status.RUNNING)
        assert [e.key for e in got] == ["r0", "r1", "r2", "r3", "r4"]
        got = await self._all_pages(store, status=Status.RUNNING, due_from=now - 3, task="t")
        assert [e.key for e in got] == ["r1", "r2", "r3", "r4"]

    async def test_page_reports_entries_as_listings_do(self, store: Store) -> None:
        await store.add([row("a", 1, "x", task="t")])
        [e] = (await store.page(EntryQuery())).entries
        assert e == (await store.entries())[0]

    async def test_page_takes_an_entry_query(self, store: Store) -> None:
        with pytest.raises(TypeError):
            await store.page({"limit": 5})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="limit"):
            EntryQuery(limit=0)

    # -- activity --------------------------------------------------------------

    async def test_activity_counts_claims_lateness_and_finishes(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("a", due=now - 30), row("b", due=now), row("c", due=now)])
        await store.add([row("d", due=now)])
        claims = {c.entry.key: c for c in await store.claim("w", 10)}
        assert len(claims) == 4
        assert await store.finish_many(
            [
                ("a", claims["a"].token, Done()),
                ("b", claims["b"].token, Dead("x")),
                ("c", claims["c"].token, RetryAt(now + 600, "again")),
                ("d", claims["d"].token, Done()),
            ]
        ) == [True, True, True, True]
        assert await store.finish_many([("d", claims["d"].token, Done())]) == [False]
        minutes = await store.activity(60)
        assert len(minutes) == 60
        assert [m.start for m in minutes] == sorted(m.start for m in minutes)
        assert all(b.start - a.start == 60 for a, b in itertools.pairwise(minutes))
        end = await store.time()
        assert minutes[-1].start <= end < minutes[-1].start + 60
        started = sum(m.started for m in minutes)
        assert started == 4
        assert sum(m.completed for m in minutes) == 2
        assert sum(m.failed for m in minutes) == 1
        assert sum(m.retried for m in minutes) == 1
        assert 30 <= max(m.lateness_max for m in minutes) < 40
        assert 30 <= sum(m.lateness_total for m in minutes) < 60

    async def test_activity_counts_a_series_occurrence(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("s", due=now), row("f", due=now)])
        claims = {c.entry.key: c for c in await store.claim("w", 10)}
        await store.finish_many(
            [
                ("s", claims["s"].token, NextOccurrence(now + 60)),
                ("f", claims["f"].token, NextOccurrence(now + 60, "retries ran out")),
            ]
        )
        [m] = await store.activity(1)
        assert (m.completed, m.failed) == (1, 1)

    async def test_activity_forgets_an_hour_ago(self, store: Store) -> None:
        await store.add([row("a")])
        await store.claim("w", 1)
        assert sum(m.started for m in await store.activity(60)) == 1
        await self.advance(3700)
        minutes = await store.activity(60)
        assert sum(m.started for m in minutes) == 0
        assert len(minutes) == 60

    async def test_activity_checks_minutes(self, store: Store) -> None:
        with pytest.raises(ValueError, match="minutes"):
            await store.activity(0)
        with pytest.raises(ValueError, match="minutes"):
            await store.activity(61)
        with pytest.raises(TypeError):
            await store.activity(1.5)  # type: ignore[arg-type]

    # -- inspect -------------------------------------------------------------

    async def test_inspect_shows_the_lease_and_the_token(self, store: Store) -> None:
        assert await store.inspect("missing") is None
        await store.add([row("a", 1, task="t", max_deliveries=3)])
        pending = await store.inspect("a")
        assert pending is not None
        assert (pending.owner, pending.lease_until, pending.expires_at) == (None, None, None)
        assert (pending.lease, pending.max_deliveries) == (10.0, 3)
        assert pending.payload == "[1]"
        [c] = await store.claim("worker-7", 1)
        running = await store.inspect("a")
        assert running is not None
        assert running.owner == "worker-7"
        assert running.token == c.token
        assert running.lease_until == pytest.approx(c.lease_until)
        assert running.entry.status is Status.RUNNING
        assert running.entry.deliveries == 1
        await store.finish_many([("a", c.token, Done("[42]"))])
        done = await store.inspect("a")
        assert done is not None
        assert (done.owner, done.lease_until) == (None, None)
        assert done.entry.result == "[42]"
        assert done.expires_at is not None
        assert done.expires_at > await store.time()

    async def test_inspect_shows_a_failure(self, store: Store) -> None:
        await store.add([row("a")])
        [c] = await store.claim("w", 1)
        await store.finish_many([("a", c.token, Dead("boom", "ValueError", "Traceback..."))])
        d = await store.inspect("a")
        assert d is not None
        assert (d.entry.last_error, d.entry.error_type, d.entry.traceback) == (
            "boom",
            "ValueError",
            "Traceback...",
        )
