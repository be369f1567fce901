"""Hostile review of ``finish_and_claim`` (MemoryStore and PostgresStore).

Each scene is run the combined way and as ``finish_many`` then ``claim``: the
combined call must leave the same state and give the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duetime import Status
from duetime.durable import (
    Claim,
    Dead,
    Done,
    FinishAndClaim,
    MemoryStore,
    Outcome,
    Release,
    RetryAt,
    Store,
)
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio

_Clock = list[float]


def _memory(clock: _Clock) -> MemoryStore:
    return MemoryStore(clock=lambda: clock[0])


async def _finish_then_claim(
    store: Store, how: str, items: list[tuple[str, int, Outcome]], owner: str, limit: int
) -> tuple[list[bool], list[Claim]]:
    if how == "both":
        assert isinstance(store, FinishAndClaim)
        return await store.finish_and_claim(items, owner, limit)
    return await store.finish_many(items), await store.claim(owner, limit)


HOWS = ["both", "two calls"]


class _FaultyClaim(MemoryStore):
    """A MemoryStore subclass that overrides claim only (a fault injector would)."""

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        return await super().claim(owner, limit)


async def test_a_negative_limit_applies_nothing_on_a_subclass_too() -> None:
    # A subclass that overrides claim gets finish_many + claim called: a
    # negative limit must still be refused before any finish is applied.
    store = _FaultyClaim()
    async with store:
        await store.add([row("x", 1)])
        [c] = await store.claim("w", 1)
        with pytest.raises(ValueError, match="limit"):
            await store.finish_and_claim([("x", c.token, Done())], "w", -1)
        with pytest.raises(TypeError):
            await store.finish_and_claim([("x", c.token, "done")], "w", 1)  # type: ignore[list-item]
        got = await store.get("x")
        assert got is not None
        assert got.status is Status.RUNNING


@pytest.mark.parametrize("how", HOWS)
async def test_an_abort_requested_for_a_row_finishing_in_the_same_call(how: str) -> None:
    clock = [1000.0]
    store = _memory(clock)
    async with store:
        await store.add([row("a", 1), row("b", 2), row("c", 3)])
        held = {c.entry.key: c for c in await store.claim("w", 3)}
        for key in ("a", "b", "c"):
            assert await store.abort(key)
        items: list[tuple[str, int, Outcome]] = [
            ("a", held["a"].token, Done()),  # it ran to the end: COMPLETED
            ("b", held["b"].token, RetryAt(0.0, "again")),  # never runs again
            ("c", held["c"].token, Release()),  # never runs again
        ]
        results, claims = await _finish_then_claim(store, how, items, "w2", 10)
        assert results == [True, True, True]
        assert claims == []  # an aborted row is not handed out again
        states = {e.key: e.status for e in await store.entries(limit=10)}
        assert states == {"a": Status.COMPLETED, "b": Status.CANCELLED, "c": Status.CANCELLED}


@pytest.mark.parametrize("how", HOWS)
async def test_a_fenced_out_finish_while_the_claim_succeeds(how: str) -> None:
    # w1's lease lapsed and w2 took the row: w1's finish is refused in the
    # same call whose claim hands w1 another row.
    clock = [1000.0]
    store = MemoryStore(lease=5.0, clock=lambda: clock[0])
    async with store:
        await store.add([row("a", 1)])
        [old] = await store.claim("w1", 1)
        clock[0] += 10
        [new] = await store.claim("w2", 1)
        await store.add([row("b", 2)])
        items: list[tuple[str, int, Outcome]] = [("a", old.token, Done())]
        results, claims = await _finish_then_claim(store, how, items, "w1", 5)
        assert results == [False]
        assert [c.entry.key for c in claims] == ["b"]
        assert await store.finish_many([("a", new.token, Done())]) == [True]


@pytest.mark.parametrize("how", HOWS)
async def test_a_lapsed_aborted_row_met_by_the_claim(how: str) -> None:
    clock = [1000.0]
    store = MemoryStore(lease=5.0, clock=lambda: clock[0])
    async with store:
        await store.add([row("a", 1), row("b", 2)])
        held = {c.entry.key: c for c in await store.claim("w1", 2)}
        assert await store.abort("a")
        clock[0] += 10  # both leases lapse; b's token is still current
        items: list[tuple[str, int, Outcome]] = [("b", held["b"].token, Done())]
        results, claims = await _finish_then_claim(store, how, items, "w2", 5)
        assert results == [True]
        assert claims == []  # a ends CANCELLED instead of being handed out
        got = await store.get("a")
        assert got is not None
        assert got.status is Status.CANCELLED


# -- hypothesis: random interleavings, both ways, the same answers and state ----

_OUTCOMES: list[Callable[[float], Outcome]] = [
    lambda now: Done(),
    lambda now: RetryAt(now - 1, "again"),
    lambda now: RetryAt(now + 3, "later"),
    lambda now: Release(),
    lambda now: Dead("boom"),
]

_step = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 7), st.integers(-3, 5)),
    st.tuples(st.just("advance"), st.integers(1, 12)),
    st.tuples(st.just("abort"), st.integers(0, 7)),
    st.tuples(
        st.just("finish_claim"),
        st.lists(st.tuples(st.integers(0, 7), st.integers(0, 4), st.booleans()), max_size=5),
        st.integers(0, 4),
    ),
)


async def _play(steps: list[Any], how: str) -> list[Any]:
    clock = [1000.0]
    store = MemoryStore(lease=5.0, clock=lambda: clock[0])
    log: list[Any] = []
    tokens: dict[str, int] = {}
    async with store:
        for step in steps:
            if step[0] == "add":
                await store.add([row(f"k{step[1]}", due=clock[0] + step[2])])
            elif step[0] == "advance":
                clock[0] += step[1]
            elif step[0] == "abort":
                log.append(("abort", await store.abort(f"k{step[1]}")))
            else:
                items: list[tuple[str, int, Outcome]] = []
                for k, o, stale in step[1]:
                    key = f"k{k}"
                    token = tokens.get(key, 0) + (1000 if stale else 0)
                    items.append((key, token, _OUTCOMES[o](clock[0])))
                results, claims = await _finish_then_claim(store, how, items, "w", step[2])
                for c in claims:
                    tokens[c.entry.key] = c.token
                log.append((results, [(c.entry.key, c.token, c.lease_until) for c in claims]))
        entries = await store.entries(limit=100)
        log.append(sorted((e.key, e.status, e.attempt, e.deliveries) for e in entries))
    return log


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, max_size=25))
def test_finish_and_claim_is_finish_many_then_claim(steps: list[Any]) -> None:
    import anyio

    assert anyio.run(_play, steps, "both") == anyio.run(_play, steps, "two calls")


# -- PostgreSQL --------------------------------------------------------------


@pytest.mark.parametrize("how", HOWS)
async def test_postgres_abort_fencing_and_a_key_twice_in_one_transaction(
    postgres_store: Callable[..., Any], how: str, real_time: None
) -> None:
    store = postgres_store(lease=5.0)
    async with store:
        await store.add([row("a", 1), row("b", 2), row("c", 3), row("d", 4)])
        held = {c.entry.key: c for c in await store.claim("w1", 4)}
        for key in ("a", "b", "d"):
            assert await store.abort(key)
        items: list[tuple[str, int, Outcome]] = [
            ("a", held["a"].token, Done()),  # ran to the end: COMPLETED
            ("b", held["b"].token, RetryAt(0.0, "again")),  # aborted: never runs again
            ("c", held["c"].token + 99, Done()),  # fenced out
            ("c", held["c"].token, Done()),  # the same key again: this one applies
            ("c", held["c"].token, Dead("x")),  # ...and then not again
        ]
        results, claims = await _finish_then_claim(store, how, items, "w2", 4)
        assert results == [True, True, False, True, False]
        assert claims == []  # b is not handed out again, d is still w1's
        store.advance_clock(10)  # w1 died: d's lease lapses with its abort request
        _, claims = await _finish_then_claim(store, how, [("x", 1, Done())], "w2", 4)
        assert claims == []
        states = {e.key: e.status for e in await store.entries(limit=10)}
        assert states == {
            "a": Status.COMPLETED,
            "b": Status.CANCELLED,
            "c": Status.COMPLETED,
            "d": Status.CANCELLED,
        }
