"""Timeouts and PendingReplies, on both backends in virtual time."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import anyio
import pytest

import duetime
from duetime import PendingReplies, Scheduler, Status, Timeouts

from .support import duetime_activity, memory_held

pytestmark = pytest.mark.anyio


# ---------------------------------------------------------------------- Timeouts


async def test_timeouts_set_fire_and_remove() -> None:
    fired: list[tuple[str, float]] = []
    async with Scheduler() as s:
        t = Timeouts(s)
        t0 = anyio.current_time()
        h = t.set("op1", 5.0, lambda k: fired.append((k, anyio.current_time() - t0)), "op1")
        assert "op1" in t
        assert len(t) == 1
        assert t.get("op1") is h
        await h
        assert fired == [("op1", 5.0)]
        assert "op1" not in t
        assert len(t) == 0
        assert t.reset("op1") is False
        assert t.clear("op1") is False


async def test_timeouts_set_replaces_and_clear_cancels() -> None:
    fired: list[int] = []
    async with Scheduler() as s:
        t = Timeouts(s)
        h1 = t.set("k", 1, fired.append, 1)
        h2 = t.set("k", 2, fired.append, 2)
        assert h1.status is Status.CANCELLED
        assert len(t) == 1
        t.set("other", 1, fired.append, 3)
        assert t.clear("other") is True
        assert t.clear("other") is False
        await h2
        await anyio.sleep(5)
    assert fired == [2]


async def test_timeouts_reset_is_a_watchdog_with_the_original_delay() -> None:
    fired: list[float] = []
    async with Scheduler() as s:
        t = Timeouts(s)
        t0 = anyio.current_time()
        t.set("wd", 3.0, lambda: fired.append(anyio.current_time() - t0))
        for _ in range(5):  # kicked every 2 s: never fires
            await anyio.sleep(2)
            assert t.reset("wd") is True
        assert fired == []
        await anyio.sleep(10)
    assert fired == [13.0]  # last kick at 10, plus the original 3 s


async def test_timeouts_async_callback_can_rearm_itself() -> None:
    fired: list[float] = []
    async with Scheduler() as s:
        t = Timeouts(s)

        async def again() -> None:
            fired.append(anyio.current_time())
            if len(fired) < 3:
                t.set("loop", 1, again)

        t0 = anyio.current_time()
        t.set("loop", 1, again)
        await anyio.sleep(10)
        assert len(t) == 0
    assert [f - t0 for f in fired] == [1, 2, 3]


async def test_timeouts_bad_input_and_scheduler_exit() -> None:
    async with Scheduler() as s:
        t = Timeouts(s)
        with pytest.raises(ValueError, match="delay"):
            t.set("k", -1, print)
        with pytest.raises(TypeError):
            t.set("k", 1, 42)  # type: ignore[arg-type]
        assert "k" not in t
        t.set("k", 100, print)
    assert "k" not in t  # cancelled by the exit
    assert len(t) == 0


async def test_timeouts_many_keys_heap_stays_bounded() -> None:
    async with Scheduler() as s:
        t = Timeouts(s)
        with memory_held() as held:
            for i in range(2000):
                t.set(i % 10, 100, print)
            assert len(t) == 10
            assert s.statistics().pending == 10
            # Replaced timers are compacted away: 1,990 of them kept would hold
            # about 400 kB.
            await anyio.sleep(0.001)  # the timer loop compacts, between its passes
            assert held() < 100_000


# ---------------------------------------------------------------------- PendingReplies


async def test_reply_resolves_the_handle() -> None:
    async with Scheduler() as s:
        replies: PendingReplies[dict[str, Any]] = PendingReplies(s, timeout=2.0)
        h = replies.expect(7)
        assert h.status is Status.PENDING
        assert replies.pending_count == 1
        assert 7 in replies
        assert "7" in h.name
        s.call_later(0.5, replies.resolve, 7, {"type": "echo_ok"})
        assert await h == {"type": "echo_ok"}
        assert replies.pending_count == 0
        assert replies.resolve(7, {}) is False
        assert replies.late_count == 1
        assert replies.reaped_count == 0
        # The reply cancelled its expiry: nothing is left to wake the scheduler.
        with duetime_activity() as activity:
            await anyio.sleep(10)
        assert activity() == 0
        assert replies.reaped_count == 0


async def test_expiry_fails_with_timeout_runs_callbacks_and_is_not_reported() -> None:
    reported: list[BaseException] = []
    seen: list[tuple[Status, float]] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        replies: PendingReplies[str] = PendingReplies(s, timeout=2.0)
        t0 = anyio.current_time()
        h = replies.expect("a")
        h.add_done_callback(lambda h: seen.append((h.status, anyio.current_time() - t0)))
        unobserved = replies.expect("b", timeout=0.5)
        await anyio.sleep(1)
        assert unobserved.status is Status.FAILED
        assert isinstance(unobserved.exception, TimeoutError)
        with pytest.raises(TimeoutError):
            await h
        assert seen == [(Status.FAILED, 2.0)]
        assert replies.reaped_count == 2
        assert replies.resolve("a", "late") is False
        assert replies.late_count == 1
    assert reported == []
    assert s.statistics().failed == 0  # reply entries are not scheduler callbacks


async def test_fail_cancel_and_duplicate_key() -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        replies: PendingReplies[int] = PendingReplies(s)
        h = replies.expect(1)
        with pytest.raises(ValueError, match="already pending"):
            replies.expect(1)
        assert replies.fail(1, KeyError("nope")) is True
        assert isinstance(h.exception, KeyError)  # read: observed, not reported
        assert replies.fail(1, KeyError()) is False
        replies.expect(2)  # nobody keeps this handle: its failure is reported
        assert replies.fail(2, LookupError("dropped")) is True
        await anyio.sleep(0.1)
        assert [type(e) for e in reported] == [LookupError]
        h2 = replies.expect(1)  # the key is free again
        assert h2.cancel() is True
        assert h2.status is Status.CANCELLED
        assert replies.pending_count == 0
        await anyio.sleep(5)
        assert replies.reaped_count == 0
        pending = replies.expect(3)
    assert pending.status is Status.CANCELLED  # the scheduler's exit cancels it


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
async def test_bad_timeouts(timeout: float) -> None:
    async with Scheduler() as s:
        with pytest.raises(ValueError, match="timeout"):
            PendingReplies(s, timeout=timeout)
        replies: PendingReplies[int] = PendingReplies(s)
        with pytest.raises(ValueError, match="timeout"):
            replies.expect(1, timeout=timeout)
        with pytest.raises(TypeError):
            replies.expect(1, timeout="1")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            replies.fail(1, "error")  # type: ignore[arg-type]


async def test_closed_scheduler_refuses_expect() -> None:
    s = Scheduler()
    replies: PendingReplies[int] = PendingReplies(s)
    with pytest.raises(duetime.SchedulerClosed):
        replies.expect(1)


async def test_50000_leaked_requests_are_all_reaped() -> None:
    async with Scheduler() as s:
        replies: PendingReplies[None] = PendingReplies(s, timeout=2.0)
        t0 = anyio.current_time()
        reaped_at: list[float] = []
        handles = [replies.expect(i) for i in range(50_000)]
        handles[-1].add_done_callback(lambda h: reaped_at.append(anyio.current_time() - t0))
        assert replies.pending_count == 50_000
        await anyio.sleep(1.999)
        assert replies.reaped_count == 0
        await anyio.sleep(0.002)
        assert replies.pending_count == 0
        assert replies.reaped_count == 50_000
        assert reaped_at == [pytest.approx(2.0)]
        assert all(isinstance(h.exception, TimeoutError) for h in handles)
        assert s.statistics().pending == 0
        with duetime_activity() as activity:  # every expiry entry left the scheduler
            await anyio.sleep(100)
        assert activity() == 0


async def test_answered_requests_leave_the_heap_too() -> None:
    async with Scheduler() as s:
        replies: PendingReplies[None] = PendingReplies(s, timeout=60.0)
        with memory_held() as held:
            for i in range(10_000):
                replies.expect(i)
                replies.resolve(i, None)
            # Cancelled expiry entries are compacted away (10,000 kept would
            # hold about 2 MB).
            await anyio.sleep(0.001)  # the timer loop compacts, between its passes
            assert held() < 100_000
            await anyio.sleep(61)
            assert replies.reaped_count == 0  # no expiry was left to fire
            assert held() < 10_000


async def test_timer_cancelled_through_its_handle_lets_go_of_the_key() -> None:
    fired: list[str] = []
    async with Scheduler() as s:
        t = Timeouts(s)
        h = t.set("a", 1, fired.append, "a")
        t.set("b", 1, fired.append, "b")
        assert h.cancel() is True
        assert "a" not in t
        assert len(t) == 1
        assert t.get("a") is None
        assert t.reset("a") is False
        await anyio.sleep(2)
        assert fired == ["b"]
        assert len(t) == 0


async def test_finished_pending_replies_are_not_kept_by_the_scheduler() -> None:
    async with Scheduler() as s:
        finished: list[weakref.ref[PendingReplies[str]]] = []
        for i in range(100):
            done: PendingReplies[str] = PendingReplies(s, timeout=1)
            done.expect(i)
            done.resolve(i, "ok")
            finished.append(weakref.ref(done))
        del done
        gc.collect()
        assert [r for r in finished if r() is not None] == []
        replies: PendingReplies[str] = PendingReplies(s, timeout=1)
        left = replies.expect("left")
    assert left.status is Status.CANCELLED  # still pending, so the exit cancelled it
    with pytest.raises(TypeError):
        replies.fail("x", BaseException())  # type: ignore[arg-type]
