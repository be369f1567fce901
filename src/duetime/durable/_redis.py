"""RedisStore: the durable store several hosts share, on Redis or Valkey through coredis.

coredis is built on anyio, so the store runs on asyncio and on trio with no thread
bridge.  The data model and the scripts are described in :mod:`._redis_lua`: one
Lua script per operation, on the server's clock (``TIME``), so workers on hosts
with skewed clocks agree on due times and leases.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import EntryExists
from .._handle import Status
from . import _redis_lua as lua
from ._store import (
    Claim,
    Dead,
    Done,
    Entry,
    NewRow,
    NextOccurrence,
    OnConflict,
    Outcome,
    Release,
    RetryAt,
    entry_args,
    utc,
)

if TYPE_CHECKING:
    import coredis
    from coredis.commands.script import Script
    from coredis.patterns.pubsub import PubSub

__all__ = ["RedisStore"]

logger = logging.getLogger("duetime")

_SCHEMES = ("redis://", "rediss://", "unix://")
_CONFLICTS = ("keep", "replace", "error")
_STATUSES = {s.value: s for s in Status}


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(
        key=row["k"],
        task=row["t"],
        args=entry_args(row["p"]),
        due=utc(float(row["d"])),
        status=_STATUSES[row["s"]],
        attempt=int(row["a"]),
        last_error=row.get("e"),
        occurrence=int(row["o"]),
        schedule=row.get("sch"),
        deliveries=int(row["dl"]),
    )


def _seconds(value: object, what: str, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{what} must be a finite number {'>=' if zero else '>'} 0, got {value!r}")
    return float(value)


def _time(value: float) -> str:
    # repr round-trips a float exactly; Redis parses it back with strtod.
    return repr(float(value))


class RedisStore:
    """A durable store on Redis (or Valkey) that several processes and hosts share.

    Open it with ``async with`` (the Scheduler does).  Times are the server's
    clock (``TIME``): a ``delay`` is added to it, and leases lapse by it, so the
    hosts' clocks need not agree.  Passwords, the database and TLS go in the URL:
    ``redis://user:password@host:6379/0`` (percent-encode ``@``, ``:`` and ``/``
    in a password), ``rediss://host:6380/0?ssl_ca_certs=/etc/ssl/redis-ca.pem``
    (TLS; also ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``,
    ``ssl_check_hostname``), ``unix:///run/redis.sock?db=0``.

    At startup the store logs a WARNING on the ``duetime`` logger if the server's
    ``maxmemory-policy`` is not ``noeviction`` (an evicted row is a lost entry).

    :param url: the server's URL (``redis://``, ``rediss://`` or ``unix://``)
    :param prefix: names this store's keys (``{prefix}:...``, one Cluster hash
        slot); stores with different prefixes share a server independently
    :param lease: default lease in seconds, for rows that carry none
    :param dedupe_ttl: how long a completed key is kept as a tombstone (seconds)
    :param poll: the safety poll: :meth:`wait_changed` returns after at most this
        many seconds even if a wake-up message was lost (a reconnect)
    :raises TypeError: a parameter of the wrong type
    :raises ValueError: a URL of another scheme, an empty prefix or one with
        braces, a non-positive lease or poll, a negative dedupe_ttl
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "duetime",
        lease: float = 30.0,
        dedupe_ttl: float = 86400.0,
        poll: float = 1.0,
    ) -> None:
        if importlib.util.find_spec("coredis") is None:
            # At the call site, not at the first connection.
            raise ImportError("RedisStore needs coredis: pip install 'duetime[redis]'")
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not url.startswith(_SCHEMES):
            raise ValueError(f"a RedisStore URL starts with {' or '.join(_SCHEMES)}: {url!r}")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.lease = _seconds(lease, "lease")
        self.dedupe_ttl = _seconds(dedupe_ttl, "dedupe_ttl", zero=True)
        self.poll = _seconds(poll, "poll")
        tag = "{" + prefix + "}"
        self._keys = [f"{tag}:q", f"{tag}:all", f"{tag}:tomb", f"{tag}:seq", f"{tag}:rows"]
        self._channel = f"{tag}:wake"
        self._offset = 0.0
        self._client: coredis.Redis[str] | None = None
        self._pubsub: PubSub[str] | None = None
        self._scripts: dict[str, Script[str]] = {}
        self._stack: AsyncExitStack | None = None
        self._changed: anyio.Event | None = None  # set (and replaced) per wake-up message
        self._dirty = False  # a wake-up message arrived that no wait_changed has seen

    def __repr__(self) -> str:
        return f"RedisStore({_redact(self.url)!r}, prefix={self.prefix!r})"

    # -- life --------------------------------------------------------------------

    async def __aenter__(self) -> RedisStore:
        """Connect, subscribe to wake-ups and check the eviction policy.

        :raises RuntimeError: the store is already open
        :raises ImportError: coredis is not installed (``pip install duetime[redis]``)
        """
        if self._stack is not None:
            raise RuntimeError("this RedisStore is already open")
        try:
            import coredis
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("RedisStore needs coredis: pip install 'duetime[redis]'") from exc
        client: coredis.Redis[str] = coredis.Redis.from_url(
            self.url, decode_responses=True, decode_components=True
        )
        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(client)
            # The first round trip: a wrong address or password fails here, plainly.
            await client.ping()
            await self._check_eviction(client)
            self._scripts = {
                name: client.register_script(getattr(lua, name)) for name in lua.__all__
            }
            self._pubsub = await stack.enter_async_context(
                client.pubsub(channels=[self._channel], ignore_subscribe_messages=True)
            )
            self._changed = anyio.Event()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(self._listen, self._pubsub)
        except BaseException:
            # No shielding scope here: coredis's task groups were entered before it,
            # and must be exited in the scope they were entered in.
            try:
                await stack.aclose()
            except Exception:  # coredis re-raises the same error from its task group
                logger.debug("RedisStore: error while closing after a failed open", exc_info=True)
            raise
        self._client = client
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unsubscribe and close the connections."""
        stack, self._stack = self._stack, None
        self._client = None
        self._pubsub = None
        self._changed = None
        if stack is not None:
            await stack.aclose()

    async def _check_eviction(self, client: coredis.Redis[str]) -> None:
        from coredis.exceptions import ResponseError

        try:
            config = await client.config_get(["maxmemory-policy"])
        except ResponseError:  # CONFIG is disabled on some managed servers
            logger.info("RedisStore: cannot read maxmemory-policy (CONFIG is disabled)")
            return
        policy = config.get("maxmemory-policy", "noeviction")
        if policy != "noeviction":
            logger.warning(
                "RedisStore %s: the server's maxmemory-policy is %r, not 'noeviction': "
                "under memory pressure Redis may evict durable entries (lost work)",
                _redact(self.url),
                policy,
            )

    # -- testing -----------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Test hook: move this store object's view of the server clock forward.

        Every script adds the offset to ``TIME``, so a test can lapse a lease or a
        tombstone without waiting.  Other store objects do not see it: shift each
        one.  Never useful in production.

        :raises ValueError: a negative or non-finite number of seconds
        """
        self._offset += _seconds(seconds, "seconds", zero=True)

    # -- calls -------------------------------------------------------------------

    async def _run(self, name: str, *args: str | int) -> Any:
        if self._client is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        script = self._scripts[name]
        return await script(self._keys, [self._channel, _time(self._offset), *args])

    async def time(self) -> float:
        """The store's clock: the server's ``TIME``, in UTC epoch seconds."""
        return float(await self._run("TIME"))

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        """Insert rows, idempotent by key, in one script (see :class:`Store`).

        Under ``"error"`` and ``"replace"`` the batch is checked first and nothing
        is written if a row conflicts.

        :raises EntryExists: a conflict under ``"error"``, or a RUNNING row under ``"replace"``
        :raises ValueError: an unknown ``on_conflict``
        """
        if on_conflict not in _CONFLICTS:
            raise ValueError(f"on_conflict must be one of {_CONFLICTS}, got {on_conflict!r}")
        if not rows:
            return []
        args: list[str] = [on_conflict]
        for row in rows:  # a NewRow checked itself when it was made
            fields: dict[str, Any] = {
                "t": row.task,
                "p": row.payload,
                "l": _time(self.lease if row.lease is None else row.lease),
                "md": row.max_deliveries,
            }
            if row.schedule is not None:
                fields["sch"] = row.schedule
            args += [
                row.key,
                json.dumps(fields),
                "" if row.due is None else _time(row.due),
                "" if row.delay is None else _time(row.delay),
            ]
        reply = await self._run("ADD", *args)
        if reply[0] == "exists":
            raise EntryExists(f"a durable entry with key {reply[1]!r} already exists")
        return [_entry(json.loads(raw)) for raw in reply[1:]]

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished."""
        return bool(await self._run("CANCEL", key))

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (tombstones included), or None."""
        raw = await self._run("GET", key)
        return None if raw is None else _entry(json.loads(raw))

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time, optionally only those with ``status``.

        :raises ValueError: a negative limit
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        want = "" if status is None else Status(status).value
        return [_entry(json.loads(raw)) for raw in await self._run("ENTRIES", want, limit)]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` due rows, each with a new fencing token (see :class:`Store`)."""
        if limit <= 0:
            return []
        claims = []
        for raw in await self._run("CLAIM", owner, limit):
            row = json.loads(raw)
            claims.append(
                Claim(
                    entry=_entry(row),
                    payload=row["p"],
                    token=int(row["tok"]),
                    lease_until=float(row["lu"]),
                    lease=float(row["l"]),
                )
            )
        return claims

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs by each row's lease, in one script."""
        if not claims:
            return []
        args: list[str | int] = []
        for key, token in claims:
            args += [key, token]
        reply: str = await self._run("EXTEND", *args)
        return [c == "1" for c in reply]

    async def finish(self, key: str, token: int, outcome: Outcome) -> bool:
        """Apply ``outcome`` if ``token`` is still current; False (no change) otherwise.

        :raises TypeError: ``outcome`` is not one of the outcome classes
        """
        (applied,) = await self.finish_many([(key, token, outcome)])
        return applied

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """:meth:`finish` for several ``(key, token, outcome)`` in one round trip
        (a worker that completes many entries at once commits them as a group).

        :raises TypeError: an outcome that is not one of the outcome classes
        """
        if not items:
            return []
        args: list[str | int] = [_time(self.dedupe_ttl)]
        for key, token, outcome in items:
            args += [key, token, *_outcome_args(outcome)]
        reply: str = await self._run("FINISH", *args)
        return [c == "1" for c in reply]

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED."""
        return bool(await self._run("RETRY", key))

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included)."""
        return bool(await self._run("DELETE", key))

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None."""
        if self._client is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        first = await self._client.zrange(self._keys[0], 0, 0, withscores=True)
        if not first:
            return None
        return float(first[0][1])

    async def wait_changed(self, timeout: float) -> None:
        """Return when another writer may have moved the head earlier, or after
        ``timeout`` seconds.  Never raises on a timeout.

        A wake-up message (pub/sub) returns at once, and so does one that arrived
        since the previous call.  Messages sent while the subscription reconnects
        are lost, so every ``poll`` seconds the head is also read: an earlier head
        than at the start returns too.
        """
        changed = self._changed
        if changed is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        deadline = anyio.current_time() + max(0.0, timeout)
        start = None if self._dirty else await self.head()
        while not self._dirty:
            remaining = deadline - anyio.current_time()
            if remaining <= 0:
                break
            with anyio.move_on_after(min(self.poll, remaining)):
                await changed.wait()
                break
            if anyio.current_time() >= deadline:
                break  # the caller's own deadline (its head is due): it claims next
            head = await self.head()  # the safety poll
            if head is not None and (start is None or head < start):
                break
        self._dirty = False

    async def _listen(self, pubsub: PubSub[str]) -> None:
        # One task per open store turns wake-up messages into an Event; coredis
        # re-subscribes after a reconnect (messages sent meanwhile are lost: the
        # safety poll covers them).
        while True:
            if await pubsub.get_message() is None:
                continue
            self._dirty = True
            changed, self._changed = self._changed, anyio.Event()
            if changed is not None:
                changed.set()


def _outcome_args(outcome: Outcome) -> tuple[str, str, str]:
    """The script arguments of an outcome: its kind, a time or '', an error or ''."""
    match outcome:
        case Done():
            return "done", "", ""
        case RetryAt(at=when, error=err):
            return "retry", _time(when), err
        case NextOccurrence(due=when, error=err):
            return "next", _time(when), err or ""
        case Dead(error=err):
            return "dead", "", err
        case Release():
            return "release", "", ""
    raise TypeError(f"not an outcome: {outcome!r}")


def _redact(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and reprs)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = creds.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"
