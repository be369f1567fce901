"""RedisStore(read_only=True): listing a store without writing anything to the server,
and the logging filter that lives only while a RedisStore is open."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Done, NewRow, ReadOnlyStore, RedisStore

from .test_redis_badrows import BAD, BAD_KEYS, write_garbage

Factory = Callable[..., RedisStore]


pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


def row(key: str, *, delay: float = 0.0) -> NewRow:
    return NewRow(key=key, task="t", payload="[1]", delay=delay)


async def snapshot(store: RedisStore) -> dict[str, Any]:
    """Everything the store keeps on the server, read through a writable store's client."""
    client = store._client
    assert client is not None
    tag = "{" + store.prefix + "}"
    return {
        "rows": await client.hgetall(f"{tag}:rows"),
        "bad": await client.hgetall(f"{tag}:bad"),
        "seq": await client.get(f"{tag}:seq"),
        **{
            name: await client.zrange(f"{tag}:{name}", 0, -1, withscores=True)
            for name in ("q", "all", "tomb")
        },
    }


async def test_lists_and_refuses_every_write(redis_store: Factory) -> None:
    async with redis_store() as writer:
        await writer.add([row("done"), row("later", delay=3600.0)])
        [claim] = await writer.claim("w", 1)
        assert (await writer.finish_many([(claim.entry.key, claim.token, Done())]))[0]
        before = await snapshot(writer)
        reader = redis_store(read_only=True)
        assert "read_only=True" in repr(reader)
        async with reader:
            listed = await reader.entries()
            assert [(e.key, e.status) for e in listed] == [
                ("done", Status.COMPLETED),
                ("later", Status.PENDING),
            ]
            assert await reader.get("later") == listed[1]
            assert await reader.head() is not None
            assert await reader.time() > 0
            await reader.wait_changed(0)
            with pytest.raises(ReadOnlyStore, match="read-only"):
                await reader.add([row("new")])
            with pytest.raises(ReadOnlyStore):
                await reader.claim("w", 5)
            with pytest.raises(ReadOnlyStore):
                await reader.extend([("later", 1)])
            with pytest.raises(ReadOnlyStore):
                (await reader.finish_many([("later", 1, Done())]))[0]
            with pytest.raises(ReadOnlyStore):
                await reader.finish_many([("later", 1, Done())])
            with pytest.raises(ReadOnlyStore):
                await reader.cancel("later")
            with pytest.raises(ReadOnlyStore):
                await reader.retry("later")
            with pytest.raises(ReadOnlyStore):
                await reader.delete("later")
            with pytest.raises(ReadOnlyStore):
                await reader.abort("later")
            assert await reader.aborts([("later", 1)]) == [False]  # a read
            await reader.wait_aborted(0)
        assert await snapshot(writer) == before


async def test_an_expired_tombstone_is_left_out_not_purged(redis_store: Factory) -> None:
    async with redis_store(dedupe_ttl=10.0) as writer, redis_store(read_only=True) as reader:
        await writer.add([row("done"), row("later", delay=3600.0)])
        [claim] = await writer.claim("w", 1)
        (await writer.finish_many([(claim.entry.key, claim.token, Done())]))[0]
        reader.advance_clock(60)  # the tombstone has expired for the reader
        before = await snapshot(writer)
        assert [e.key for e in await reader.entries()] == ["later"]
        assert await reader.get("done") is None
        assert [e.key for e in await reader.entries(status=Status.COMPLETED)] == []
        assert await snapshot(writer) == before  # still there to purge
        assert [key for key, _ in before["tomb"]] == [b"done"]
        writer.advance_clock(60)
        assert [e.key for e in await writer.entries()] == ["later"]
        assert not (await snapshot(writer))["tomb"]  # a writable store purges it


async def test_a_malformed_row_is_listed_not_set_aside(redis_store: Factory) -> None:
    async with redis_store() as writer, redis_store(read_only=True) as reader:
        await writer.add([row("good")])
        await write_garbage(writer, await writer.time() - 10)
        before = await snapshot(writer)
        listed = {e.key: e for e in await reader.entries(status=Status.FAILED)}
        assert set(listed) == set(BAD_KEYS)
        for key, why in BAD_KEYS.items():
            entry = listed[key]
            assert entry.last_error is not None
            assert entry.last_error.startswith("malformed row set aside")
            assert why in entry.last_error, key
            assert await reader.get(key) == entry
        assert [e.key for e in await reader.entries(status=Status.PENDING)] == ["good"]
        after = await snapshot(writer)
        assert after == before
        assert after["bad"] == {}
        assert set(after["rows"]) >= set(BAD)  # the raw rows, untouched


async def test_open_store_read_only_reaches_the_redis_store(redis_url: str) -> None:
    from duetime.durable import open_store

    store = open_store(redis_url, read_only=True)
    assert isinstance(store, RedisStore)
    assert store.read_only
    writable = open_store(redis_url)
    assert isinstance(writable, RedisStore)
    assert not writable.read_only


# -- the filter on coredis's logger --------------------------------------------------


def _noise_filters() -> list[logging.Filter]:
    return [
        f
        for f in logging.getLogger("coredis").filters
        if isinstance(f, logging.Filter) and type(f).__name__ == "_CoredisNoise"
    ]


async def test_the_coredis_filter_lives_only_while_a_store_is_open(redis_store: Factory) -> None:
    assert _noise_filters() == []  # importing duetime.durable._redis added nothing
    async with redis_store() as _first:
        assert len(_noise_filters()) == 1
        async with redis_store(read_only=True) as _second:
            assert len(_noise_filters()) == 1  # counted, not added twice
        assert len(_noise_filters()) == 1  # the first store is still open
    assert _noise_filters() == []


async def test_a_failed_open_removes_the_coredis_filter() -> None:
    from .redis_server import free_port

    with pytest.raises(ConnectionError):
        async with RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=5.0):
            pass
    assert _noise_filters() == []
