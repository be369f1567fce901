"""Any interleaving of add, claim, extend, finish (every outcome), abort, cancel,
retry, delete, a lease that lapses and a worker that dies, on MemoryStore
(hypothesis): a finish or renewal lands only with the key's current token, an
abort is seen only by the run it was asked of, and once the drain has run every
entry is finished (COMPLETED, CANCELLED or FAILED) or gone."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duetime import Status
from duetime.durable import Aborted, Dead, Done, MemoryStore, Release, RetryAt
from duetime.durable.conformance import row

KEYS = ("a", "b", "c")
FINAL = {Status.COMPLETED, Status.CANCELLED, Status.FAILED}

op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(KEYS)),
    st.tuples(st.just("claim"), st.sampled_from(["w1", "w2"]), st.integers(1, 3)),
    st.tuples(st.just("extend"), st.integers(0, 20)),
    st.tuples(
        st.just("finish"),
        st.integers(0, 20),
        st.sampled_from(["done", "retry", "dead", "release", "aborted"]),
    ),
    st.tuples(st.just("aborts"), st.integers(0, 20)),
    st.tuples(st.sampled_from(["abort", "cancel", "retry", "delete"]), st.sampled_from(KEYS)),
    st.tuples(st.just("time"), st.sampled_from([1.0, 31.0])),
    st.tuples(st.just("crash"), st.sampled_from(["w1", "w2"])),
)


def _outcome(kind: str, now: float) -> Any:
    return {
        "done": Done(),
        "retry": RetryAt(now + 5, "again"),
        "dead": Dead("boom"),
        "release": Release(),
        "aborted": Aborted(),
    }[kind]


async def _play(ops: list[tuple[Any, ...]]) -> None:
    t = [1_700_000_000.0]
    store = MemoryStore(lease=30, clock=lambda: t[0])
    claims: list[tuple[str, int, str]] = []  # every claim ever handed out
    current: dict[str, int] = {}  # key -> token of its live claim
    asked: set[tuple[str, int]] = set()  # runs an abort was asked of
    for o in ops:
        name = o[0]
        if name == "add":
            await store.add([row(o[1], 1)])
        elif name == "claim":
            for c in await store.claim(o[1], o[2]):
                assert c.entry.status is Status.RUNNING
                assert c.token not in [tok for _, tok, _ in claims], "a token handed out twice"
                claims.append((c.entry.key, c.token, o[1]))
                current[c.entry.key] = c.token
        elif name in ("extend", "finish", "aborts") and claims:
            key, tok, _ = claims[o[1] % len(claims)]
            e = await store.get(key)
            live = e is not None and e.status is Status.RUNNING and current.get(key) == tok
            if name == "extend":
                assert await store.extend([(key, tok)]) == [live]
            elif name == "aborts":
                [seen] = await store.aborts([(key, tok)])
                assert seen == (live and (key, tok) in asked)
            else:
                [ok] = await store.finish_many([(key, tok, _outcome(o[2], t[0]))])
                assert ok == live
                if ok:
                    current.pop(key, None)
                    after = await store.get(key)
                    assert after is None or after.status is not Status.RUNNING
        elif name in ("abort", "cancel", "retry", "delete"):
            before = await store.get(o[1])
            done = await getattr(store, name)(o[1])
            running = before is not None and before.status is Status.RUNNING
            if name == "abort" and done and running and o[1] in current:
                asked.add((o[1], current[o[1]]))
        elif name == "time":
            t[0] += o[1]
        elif name == "crash":
            store.crash(o[1])
    # the drain: leases lapse, a worker claims what is left and completes it
    for _ in range(20):
        t[0] += 1000.0
        got = await store.claim("drain", 100)
        if not got:
            break
        await store.finish_many([(c.entry.key, c.token, Done()) for c in got])
    for e in await store.entries(limit=100):
        assert e.status in FINAL, (e.key, e.status)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=40))
def test_every_interleaving_ends_final_with_no_token_mix_up(ops: list[tuple[Any, ...]]) -> None:
    anyio.run(_play, ops)
