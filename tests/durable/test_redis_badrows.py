"""RedisStore and rows it did not write: one malformed row never stops the others.

Garbage is written with coredis straight into the store's keys, next to good
entries.  Every script must go on (no Lua error), set the bad row aside as a
FAILED entry that says what is wrong, list it, refuse to retry it and delete it
(its raw bytes with it); a real worker (``Scheduler(store=..., tasks=...)``)
runs every good entry meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import duetime
from duetime import Status
from duetime.durable import NewRow, RedisStore

# The reply decoder itself: fed replies no server would send, to check it never raises.
from duetime.durable._redis_rows import read

Factory = Callable[..., RedisStore]


pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


def good_row(key: str, **fields: Any) -> bytes:
    row = {"k": key, "t": "t", "p": "[1]", "d": "1000.5", "s": "PENDING", "a": 1, "o": 0}
    row |= {"dl": 0, "l": "30", "md": 5}
    row.update(fields)
    return json.dumps(row).encode()


# key -> (the raw row, what its last_error names)
BAD: dict[bytes, tuple[bytes, str]] = {
    b"bad-json": (b"{not json", "not a JSON object"),
    b"bad-array": (b"[1, 2]", 'field "k"'),
    b"bad-number": (b"123", "not a JSON object"),
    b"bad-deep": (b"[" * 5000 + b"]" * 5000, "not a JSON object"),
    b"bad-missing": (json.dumps({"k": "bad-missing", "s": "PENDING"}).encode(), 'field "t"'),
    b"bad-kmismatch": (good_row("bad-other"), 'field "k"'),
    b"bad-nandue": (good_row("bad-nandue", d="nan"), 'field "d"'),
    b"bad-infdue": (good_row("bad-infdue", d="inf"), 'field "d"'),
    b"bad-textdue": (good_row("bad-textdue", d="abc"), 'field "d"'),
    b"bad-hexdue": (good_row("bad-hexdue", d="0x10"), 'field "d"'),
    b"bad-hugedue": (good_row("bad-hugedue", d=1e300), 'field "d"'),
    b"bad-listdue": (good_row("bad-listdue", d=[1]), 'field "d"'),
    b"bad-pnum": (good_row("bad-pnum", p=123), 'field "p"'),
    b"bad-task": (good_row("bad-task", t={"x": 1}), 'field "t"'),
    b"bad-neglease": (good_row("bad-neglease", l="-5"), 'field "l"'),
    b"bad-status": (good_row("bad-status", s="WEIRD"), 'field "s"'),
    b"bad-attempt": (good_row("bad-attempt", a="x"), 'field "a"'),
    b"bad-deliveries": (good_row("bad-deliveries", dl=1.5), 'field "dl"'),
    b"bad-md": (good_row("bad-md", md=0), 'field "md"'),
    b"bad-error": (good_row("bad-error", e={"no": 1}), 'field "e"'),
    b"bad-token": (good_row("bad-token", s="RUNNING", tok="x", lu="1"), 'field "tok"'),
    b"bad-abtext": (good_row("bad-abtext", s="RUNNING", tok=1, lu="1", ab="yes"), 'field "ab"'),
    b"bad-abtwo": (good_row("bad-abtwo", s="RUNNING", tok=1, lu="1", ab=2), 'field "ab"'),
    b"bad-abtrue": (good_row("bad-abtrue", s="RUNNING", tok=1, lu="1", ab=True), 'field "ab"'),
    b"bad-abpending": (good_row("bad-abpending", ab=1), 'field "ab"'),
    b"bad-value-utf8": (good_row("bad-value-utf8").replace(b'"t"', b'"t\xff"', 1), "UTF-8"),
    b"bad-\xff": (good_row("bad-XX").replace(b"bad-XX", b"bad-\xff"), "UTF-8"),
    b"bad-\xc0\xaf": (good_row("bad-XX").replace(b"bad-XX", b"bad-\xc0\xaf"), "UTF-8"),
}
# The store's keys as a str (surrogateescape keeps the bytes that are not UTF-8).
BAD_KEYS = {raw.decode("utf-8", "surrogateescape"): why for raw, (_, why) in BAD.items()}


async def write_garbage(store: RedisStore, score: float) -> None:
    client = store._client
    assert client is not None
    prefix = "{" + store.prefix + "}"
    for key, (raw, _why) in BAD.items():
        await client.hset(f"{prefix}:rows", {key: raw})
        await client.zadd(f"{prefix}:q", {key: score})
        await client.zadd(f"{prefix}:all", {key: score})


async def test_every_script_goes_on_past_malformed_rows(redis_store: Factory) -> None:
    async with redis_store() as store:
        now = await store.time()
        await store.add([NewRow(f"good{i}", "t", "[1]", delay=0.0) for i in range(30)])
        await write_garbage(store, now - 10)
        claims = await store.claim("w", 1000)  # one batch holds every row
        assert sorted(c.entry.key for c in claims) == sorted(f"good{i}" for i in range(30))
        assert await store.claim("w", 1000) == []

        listed = {e.key: e for e in await store.entries(status=Status.FAILED)}
        assert set(listed) == set(BAD_KEYS)
        for key, why in BAD_KEYS.items():
            entry = listed[key]
            assert entry.last_error is not None
            assert entry.last_error.startswith("malformed row set aside")
            assert why in entry.last_error, key
            assert await store.get(key) == entry
            assert not await store.retry(key)  # nothing in it can be trusted to run
            assert await store.add([NewRow(key, "t", "[]", delay=0.0)]) == [entry]

        client = store._client
        assert client is not None
        kept = await client.hgetall(f"{{{store.prefix}}}:bad")
        assert kept == {key: raw for key, (raw, _why) in BAD.items()}  # the raw bytes
        for key in BAD_KEYS:
            assert await store.delete(key)
            assert await store.get(key) is None
        assert await client.hgetall(f"{{{store.prefix}}}:bad") == {}
        assert len(await store.entries()) == 30


async def test_cancel_get_and_abort_of_a_malformed_row_do_not_raise(
    redis_store: Factory,
) -> None:
    async with redis_store() as store:
        await write_garbage(store, await store.time())
        # the first script to read each row is cancel, get, aborts or abort
        for i, key in enumerate(BAD_KEYS):
            if i % 4 == 0:
                assert await store.cancel(key)
                continue
            if i % 4 == 1:
                entry = await store.get(key)
                assert entry is not None
                assert entry.status is Status.FAILED
            elif i % 4 == 2:
                assert await store.aborts([(key, 1)]) == [False]
            assert await store.abort(key)  # a dead letter: deleted
        assert await store.entries() == []


async def test_a_row_in_the_queue_but_not_in_the_rows_is_dropped(redis_store: Factory) -> None:
    async with redis_store() as store:
        client = store._client
        assert client is not None
        await client.zadd(f"{{{store.prefix}}}:q", {"ghost": await store.time() - 1})
        await store.add([NewRow("real", "t", "[]", delay=0.0)])
        assert [c.entry.key for c in await store.claim("w", 10)] == ["real"]
        assert await store.head() is not None  # the running row's lease end only


async def test_python_side_decoding_never_raises_for_one_row() -> None:
    for raw in (
        b"{",
        b"[]",
        b'{"k": "x"}',
        good_row("x", d="1e999"),
        good_row("x", a=1.5),
        good_row("x", ab=1),  # a request on a row that is not RUNNING
        good_row("x", s="RUNNING", ab=True),
        good_row("x", s="RUNNING", ab="1"),
    ):
        entry = read(b"x\xff", raw)
        assert entry.status is Status.FAILED
        assert entry.key == "x\udcff"
        assert entry.last_error is not None
        assert entry.last_error.startswith("malformed row")
    ok = read("x", good_row("x"))
    assert ok.status is Status.PENDING
    assert ok.args == (1,)
    running = read("x", good_row("x", s="RUNNING", ab=1))
    assert (running.status, running.abort_requested) == (Status.RUNNING, True)


async def test_a_worker_runs_every_good_entry_next_to_garbage(redis_store: Factory) -> None:
    tasks = duetime.TaskRegistry()
    ran: set[int] = set()
    done = anyio.Event()

    @tasks.task("echo")
    async def echo(i: int) -> None:
        ran.add(i)
        if len(ran) == 100:
            done.set()

    store = redis_store(lease=2.0)
    async with duetime.Scheduler(store=store, tasks=tasks) as s:
        await write_garbage(store, await store.time() - 1)
        await s.defer_many(echo, [(i,) for i in range(100)], keys=[f"good{i}" for i in range(100)])
        with anyio.fail_after(30):
            await done.wait()
        dead = {e.key: e for e in await s.dead_letters()}
        assert set(dead) == set(BAD_KEYS)
        for key, why in BAD_KEYS.items():
            assert why in (dead[key].last_error or "")
            assert dead[key].deliveries == 0  # set aside, never delivered
            # The Scheduler takes printable keys only; the store takes any key it lists.
            deleted = await (s.delete_deferred if key.isprintable() else store.delete)(key)
            assert deleted
        assert await s.dead_letters() == []
        statuses = {e.status for e in await s.deferred_entries()}
        assert statuses == {Status.COMPLETED}


async def test_a_claimed_row_python_cannot_read_is_dead_lettered_alone(
    redis_store: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from duetime.durable import _redis_rows

    entry = _redis_rows.entry

    def picky(row: dict[str, Any]) -> Any:
        if row["k"] == "b":
            raise ValueError("field 'd' is not finite")
        return entry(row)

    async with redis_store() as store:
        await store.add([NewRow(k, "t", "[]", delay=0.0) for k in "abc"])
        monkeypatch.setattr(_redis_rows, "entry", picky)
        assert sorted(c.entry.key for c in await store.claim("w", 10)) == ["a", "c"]
        monkeypatch.undo()
        dead = await store.get("b")
        assert dead is not None
        assert dead.status is Status.FAILED
        assert dead.last_error == "malformed row: ValueError: field 'd' is not finite"
