"""RedisStore on a real server: what only Redis has (the conformance suite covers the rest).

Redis answers over real sockets, so every test here holds the virtual clock's
autojump (``hold_autojump``): time flows at the real rate while the server
replies.  Leases and tombstones lapse through ``RedisStore.advance_clock``, so no
test waits for them; the only real waits are the safety poll (0.2 s).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from duetime import Status
from duetime._exceptions import EntryExists
from duetime.durable import Dead, Done, NewRow, NextOccurrence, RedisStore, Release, RetryAt, utc

from .redis_server import RedisServer

Factory = Callable[..., RedisStore]


pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


def row(key: str, *, delay: float = 0.0, **options: object) -> NewRow:
    return NewRow(key=key, task="t", payload="[1]", delay=delay, **options)  # type: ignore[arg-type]


# -- construction -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"url": b"redis://x"}, TypeError),
        ({"url": "http://127.0.0.1"}, ValueError),
        ({"url": "redis://127.0.0.1:6379/abc"}, ValueError),
        ({"url": "redis://:pa/ss@127.0.0.1:6379/0"}, ValueError),  # "/" not percent-encoded
        ({"url": "redis://127.0.0.1", "connect_timeout": 0}, ValueError),
        ({"url": "redis://127.0.0.1", "timeout": -1}, ValueError),
        ({"url": "redis://127.0.0.1", "prefix": ""}, ValueError),
        ({"url": "redis://127.0.0.1", "prefix": "a{b}"}, ValueError),
        ({"url": "redis://127.0.0.1", "prefix": 3}, TypeError),
        ({"url": "redis://127.0.0.1", "lease": 0}, ValueError),
        ({"url": "redis://127.0.0.1", "lease": "30"}, TypeError),
        ({"url": "redis://127.0.0.1", "lease": float("inf")}, ValueError),
        ({"url": "redis://127.0.0.1", "dedupe_ttl": -1}, ValueError),
        ({"url": "redis://127.0.0.1", "poll": 0}, ValueError),
    ],
)
async def test_bad_arguments_raise_at_the_call(kwargs: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        RedisStore(**kwargs)  # type: ignore[arg-type]


async def test_repr_hides_the_password() -> None:
    store = RedisStore("redis://alice:s3cret@127.0.0.1:6379/0", prefix="p")
    assert "s3cret" not in repr(store)
    assert "alice:***@127.0.0.1" in repr(store)


async def test_unopened_store_says_so() -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await RedisStore("redis://127.0.0.1:1").claim("w", 1)


# -- on the shared server -------------------------------------------------------------


async def test_tokens_grow_and_are_never_reused_after_a_replace(redis_store: Factory) -> None:
    async with redis_store() as store:
        await store.add([row("a")])
        (first,) = await store.claim("w1", 10)
        (await store.finish_many([("a", first.token, Done())]))[0]
        await store.add([row("a")], on_conflict="replace")
        (second,) = await store.claim("w1", 10)
        assert second.token > first.token
        assert not (await store.finish_many([("a", first.token, Done())]))[0]
        assert (await store.finish_many([("a", second.token, Done())]))[0]


async def test_delay_is_on_the_server_clock_and_due_times_are_exact(redis_store: Factory) -> None:
    async with redis_store() as store:
        now = await store.time()
        at = now + 12.345678
        (entry,) = await store.add([NewRow("exact", "t", "[]", due=at)])
        assert entry.due == utc(at)
        assert await store.head() == at  # no rounding through Lua's number formatting
        (delayed,) = await store.add([row("later", delay=60.0)])
        assert now + 60 <= delayed.due.timestamp() <= now + 61
        assert await store.claim("w", 10) == []
        store.advance_clock(13)
        (claim,) = await store.claim("w", 10)
        assert claim.entry.key == "exact"
        assert claim.lease_until >= at + 30


async def test_a_lapsed_lease_is_reclaimed_and_the_old_token_is_fenced(
    redis_store: Factory,
) -> None:
    async with redis_store(lease=5.0) as a, redis_store(lease=5.0) as b:
        await a.add([row("job", lease=5.0)])
        (first,) = await a.claim("host-a", 10)
        assert await b.claim("host-b", 10) == []
        b.advance_clock(6)
        (second,) = await b.claim("host-b", 10)
        assert second.entry.deliveries == 2  # claims of this attempt, the live one included
        assert await a.extend([("job", first.token)]) == [False]
        assert not (await a.finish_many([("job", first.token, Done())]))[0]
        assert await b.extend([("job", second.token)]) == [True]
        assert (await b.finish_many([("job", second.token, Done())]))[0]
        entry = await a.get("job")
        assert entry is not None
        assert entry.status is Status.COMPLETED


async def test_poison_is_dead_lettered_after_max_deliveries(redis_store: Factory) -> None:
    async with redis_store() as store:
        await store.add([row("poison", lease=1.0, max_deliveries=2)])
        for _ in range(2):
            assert len(await store.claim("w", 10)) == 1
            store.advance_clock(2)
        assert await store.claim("w", 10) == []
        entry = await store.get("poison")
        assert entry is not None
        assert entry.status is Status.FAILED
        assert "max_deliveries=2" in (entry.last_error or "")
        assert await store.retry("poison")
        (claim,) = await store.claim("w", 10)
        assert claim.entry.attempt == 1
        assert claim.entry.deliveries == 1


async def test_outcomes(redis_store: Factory) -> None:
    async with redis_store() as store:
        now = await store.time()
        await store.add([row(k) for k in ("r", "n", "d", "x")])
        claims = {c.entry.key: c for c in await store.claim("w", 10)}
        assert (await store.finish_many([("r", claims["r"].token, RetryAt(now + 5, "boom"))]))[0]
        assert (await store.finish_many([("n", claims["n"].token, NextOccurrence(now + 7))]))[0]
        assert (await store.finish_many([("d", claims["d"].token, Dead("bad payload"))]))[0]
        assert (await store.finish_many([("x", claims["x"].token, Release())]))[0]
        r, n, d, x = [await store.get(k) for k in "rndx"]
        assert r is not None
        assert (r.status, r.attempt, r.last_error) == ("PENDING", 2, "boom")
        assert n is not None
        assert (n.status, n.occurrence, n.attempt) == ("PENDING", 1, 1)
        assert d is not None
        assert (d.status, d.last_error) == ("FAILED", "bad payload")
        assert x is not None
        assert (x.status, x.deliveries) == ("PENDING", 0)
        assert [c.entry.key for c in await store.claim("w", 10)] == ["x"]


async def test_conflicts_are_checked_before_anything_is_written(redis_store: Factory) -> None:
    async with redis_store() as store:
        await store.add([row("taken")])
        with pytest.raises(EntryExists, match="taken"):
            await store.add([row("fresh"), row("taken")], on_conflict="error")
        assert await store.get("fresh") is None
        await store.claim("w", 10)
        with pytest.raises(EntryExists):
            await store.add([row("taken")], on_conflict="replace")


async def test_tombstones_expire_after_dedupe_ttl(redis_store: Factory) -> None:
    async with redis_store(dedupe_ttl=60.0) as store:
        await store.add([row("once")])
        (claim,) = await store.claim("w", 1)
        (await store.finish_many([("once", claim.token, Done())]))[0]
        (kept,) = await store.add([row("once")])
        assert kept.status is Status.COMPLETED
        store.advance_clock(61)
        assert await store.get("once") is None
        assert await store.entries() == []
        (again,) = await store.add([row("once")])
        assert again.status is Status.PENDING


async def test_another_connection_wakes_a_waiter_when_the_head_moves_earlier(
    redis_store: Factory,
) -> None:
    async with redis_store(poll=30.0) as waiter, redis_store() as producer:
        await producer.add([row("far", delay=3600.0)])
        with anyio.fail_after(5):
            await waiter.wait_changed(30.0)  # the wake-up of that first add
        woke_at: list[float] = []

        async def wait() -> None:
            await waiter.wait_changed(30.0)
            woke_at.append(anyio.current_time())

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.05)
                sent = anyio.current_time()
                await producer.add([row("near", delay=1.0)])
        assert woke_at[0] - sent < 1.0


async def test_a_later_entry_does_not_wake_the_waiter(redis_store: Factory) -> None:
    async with redis_store(poll=0.2) as waiter, redis_store() as producer:
        await producer.add([row("near", delay=60.0)])
        await waiter.wait_changed(1.0)  # its wake-up
        await producer.add([row("far", delay=3600.0)])
        start = anyio.current_time()
        await waiter.wait_changed(0.6)  # the polls see the same head: the full wait
        assert 0.6 <= anyio.current_time() - start < 2


async def test_the_safety_poll_finds_an_earlier_head_without_a_message(
    redis_store: Factory,
) -> None:
    async with redis_store(poll=0.2) as waiter:
        await waiter.add([row("far", delay=3600.0)])
        await waiter.wait_changed(1.0)  # its wake-up
        client = waiter._client
        assert client is not None
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.wait_changed, 30.0)
            await anyio.sleep(0.05)
            # A write whose message was lost (as during a reconnect): only the head moved.
            await client.zadd(f"{{{waiter.prefix}}}:q", {"lost": await waiter.time()})
        assert anyio.current_time() - start < 1.0


async def test_every_key_shares_one_hash_tag(redis_store: Factory, tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        async with RedisStore(server.url, prefix="tagged") as store:
            await store.add([row("a"), row("b", delay=100)])
            (claim,) = await store.claim("w", 10)
            (await store.finish_many([("a", claim.token, Done())]))[0]
            client = store._client
            assert client is not None
            keys = await client.keys("*")
            assert keys
            assert all(k.startswith(b"{tagged}:") for k in keys)


# -- private servers ------------------------------------------------------------------


async def test_warns_when_the_server_may_evict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        RedisServer(tmp_path, extra=("--maxmemory-policy", "allkeys-lru")) as server,
        caplog.at_level(logging.WARNING, logger="duetime"),
    ):
        async with RedisStore(server.url):
            pass
    assert "allkeys-lru" in caplog.text
    assert "noeviction" in caplog.text


async def test_no_warning_with_noeviction(
    redis_store: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="duetime"):
        async with redis_store():
            pass
    assert "maxmemory-policy" not in caplog.text


async def test_password_through_the_url(tmp_path: Path) -> None:
    acl = ("--user", "default", "off", "--user", "app", "on", ">p@ss:word", "~*", "&*", "+@all")
    with RedisServer(tmp_path, extra=acl) as server:
        good = f"redis://app:p%40ss%3Aword@127.0.0.1:{server.port}/0"
        async with RedisStore(good) as store:
            (entry,) = await store.add([row("secret")])
            assert entry.key == "secret"
        with pytest.raises(Exception, match=r"(?i)auth|pass|denied"):
            async with RedisStore(f"redis://app:wrong@127.0.0.1:{server.port}/0"):
                pass


async def test_tls_through_the_url(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    openssl += ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
    openssl += ["-addext", "subjectAltName=IP:127.0.0.1"]
    await anyio.run_process(openssl)
    with RedisServer(tmp_path, tls=(cert, key)) as server:
        url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={cert}"
        async with RedisStore(url) as store:
            (entry,) = await store.add([row("over-tls")])
            assert entry.key == "over-tls"


async def test_finish_many_in_one_round_trip(redis_store: Factory) -> None:
    async with redis_store() as store:
        await store.add([row("a"), row("b"), row("c")])
        claims = {c.entry.key: c for c in await store.claim("w", 10)}
        now = await store.time()
        results = await store.finish_many(
            [
                ("a", claims["a"].token, Done()),
                ("b", claims["b"].token + 999, Done()),  # a stale token: refused
                ("c", claims["c"].token, RetryAt(now + 60, "again")),
            ]
        )
        assert results == [True, False, True]
        assert await store.finish_many([]) == []
        with pytest.raises(TypeError):
            await store.finish_many([("b", claims["b"].token, "done")])  # type: ignore[list-item]
        statuses = [(await store.get(k)).status for k in "abc"]  # type: ignore[union-attr]
        assert statuses == [Status.COMPLETED, Status.RUNNING, Status.PENDING]


# -- inside a Scheduler ------------------------------------------------------------------


async def test_a_scheduler_with_a_redis_store_runs_and_leaves_cleanly(
    redis_store: Factory,
) -> None:
    # Regression: the runner left the store inside a shielded scope of its own, and
    # coredis's task groups (entered with the store) must exit in the scope they
    # were entered in: every Scheduler(store=RedisStore) raised RuntimeError on exit.
    import duetime

    tasks = duetime.TaskRegistry()
    ran = anyio.Event()

    @tasks.task("ping")
    async def ping() -> None:
        ran.set()

    async with duetime.Scheduler(store=redis_store(), tasks=tasks) as s:
        await s.defer(ping, key="p")
        with anyio.fail_after(5):
            await ran.wait()
    async with duetime.Scheduler(store=redis_store(), tasks=tasks, worker=False) as s:
        entry = await s.deferred("p")
        assert entry is not None
        assert entry.status is Status.COMPLETED


async def test_an_abort_from_another_connection_wakes_wait_aborted(redis_store: Factory) -> None:
    """The request travels on the ``{prefix}:abort`` channel: the waiter's own
    store object made no write, and its safety poll is far away."""
    async with redis_store(poll=30.0) as waiter, redis_store() as operator:
        await operator.add([row("a"), row("b", delay=60.0)])
        [c] = await operator.claim("w", 1)
        await waiter.wait_aborted(0)
        woke_at: list[float] = []

        async def wait() -> None:
            await waiter.wait_aborted(30.0)
            woke_at.append(anyio.current_time())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.05)
                assert await operator.abort("b")  # a PENDING row: deleted, no request
                await anyio.sleep(0.3)
                assert woke_at == []
                sent = anyio.current_time()
                assert await operator.abort("a")
        assert woke_at[0] - sent < 5.0
        assert await waiter.aborts([("a", c.token)]) == [True]
        got = await waiter.get("a")
        assert got is not None
        assert got.abort_requested
