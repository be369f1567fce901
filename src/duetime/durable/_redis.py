"""RedisStore: the durable store several hosts share, on Redis or Valkey through coredis.

coredis is built on anyio, so the store runs on asyncio and on trio with no thread
bridge.  The data model and the scripts are described in :mod:`._redis_lua`: one
Lua script per operation, on the server's clock (``TIME``), so workers on hosts
with skewed clocks agree on due times and leases.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Awaitable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.lowlevel

from .._exceptions import EntryExists
from .._vocab import Status
from . import _redis_lua as lua
from . import _redis_rows as codec
from ._redact import redact_url
from ._redis_log import check_eviction, quiet_coredis, unquiet_coredis
from ._redis_stats import RedisInspection
from ._row_text import check_new_rows
from ._store import (
    Claim,
    Dead,
    Entry,
    NewRow,
    OnConflict,
    Outcome,
    ReadOnlyStore,
    check_result_ttl,
)
from ._wakeup import Wakeup

if TYPE_CHECKING:
    import coredis

__all__ = ["RedisStore"]

T = TypeVar("T")

logger = logging.getLogger("duetime")


_SCHEMES = ("redis://", "rediss://", "unix://")
_CONFLICTS = ("keep", "replace", "error")


class RedisStore(RedisInspection):
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
    Log lines, errors and the repr show the URL without its password.

    A malformed row (written by something else than duetime) never stops the
    others: the scripts set it aside as a FAILED entry whose ``last_error`` says
    what is wrong (its raw bytes kept in ``{prefix}:bad``); it lists and deletes
    like any dead letter, and :meth:`retry` refuses it.

    :param url: the server's URL (``redis://``, ``rediss://`` or ``unix://``)
    :param prefix: names this store's keys (``{prefix}:...``, one Cluster hash
        slot); stores with different prefixes share a server independently
    :param lease: default lease in seconds, for rows that carry none
    :param dedupe_ttl: how long a completed key is kept as a tombstone (seconds)
    :param poll: the safety poll: :meth:`wait_changed` returns after at most this
        many seconds even if a wake-up message was lost (a reconnect)
    :param connect_timeout: how long opening the store may take (connecting,
        authenticating, the first commands), in seconds
    :param timeout: how long one command may wait for its reply, in seconds
    :param read_only: open the store for listing only (``get``, ``entries``,
        ``head``, ``time``, ``aborts`` and the ``wait_*`` methods): nothing is
        written to the server
        (expired tombstones are left out of the results instead of purged, a
        malformed row is reported as FAILED without being set aside), and every
        writing method raises :class:`~duetime.durable.ReadOnlyStore`
    :raises TypeError: a parameter of the wrong type
    :raises ValueError: a URL of another scheme or whose path is not a database
        number, an empty prefix or one with braces, a non-positive lease, poll or
        timeout, a negative dedupe_ttl
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "duetime",
        lease: float = 30.0,
        dedupe_ttl: float = 86400.0,
        result_ttl: float | None = None,
        poll: float = 1.0,
        connect_timeout: float = 5.0,
        timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        if importlib.util.find_spec("coredis") is None:
            # At the call site, not at the first connection.
            raise ImportError("RedisStore needs coredis: pip install 'duetime[redis]'")
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not url.startswith(_SCHEMES):
            raise ValueError(
                f"a RedisStore URL starts with {' or '.join(_SCHEMES)}: {redact_url(url)!r}"
            )
        if not url.startswith("unix://"):
            # coredis would quietly use database 0 for any other path
            db = urlsplit(url).path.strip("/")
            if db and not (db.isascii() and db.isdigit()):
                raise ValueError(
                    "the path of a RedisStore URL is the database number"
                    f" (redis://host:6379/0): {redact_url(url)!r}"
                )
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        self.url = url
        self.prefix = prefix
        self.lease = codec.seconds(lease, "lease")
        self.dedupe_ttl = codec.seconds(dedupe_ttl, "dedupe_ttl", zero=True)
        self.result_ttl = (
            self.dedupe_ttl
            if result_ttl is None and self.dedupe_ttl == 0
            else check_result_ttl(result_ttl, self.dedupe_ttl)
        )
        self.poll = codec.seconds(poll, "poll")
        self.connect_timeout = codec.seconds(connect_timeout, "connect_timeout")
        self.timeout = codec.seconds(timeout, "timeout")
        self.read_only = bool(read_only)
        tag = "{" + prefix + "}"
        names = ("q", "all", "tomb", "seq", "rows", "bad")
        self._keys = [codec.arg(f"{tag}:{name}") for name in names]
        self._channel = f"{tag}:wake"
        self._done_channel = f"{tag}:done"
        self._abort_channel = f"{tag}:abort"
        self._finished = Wakeup()  # a finish message (or a resubscription) arrived
        self._aborted = Wakeup()  # an abort message (or a resubscription) arrived
        self._offset = 0.0
        self._client: coredis.Redis[bytes] | None = None
        self._shas: dict[str, str] = {}  # script name -> SHA1, loaded at open
        self._stack: AsyncExitStack | None = None
        self._changed: anyio.Event | None = None  # set (and replaced) per wake-up message
        self._dirty = False  # a wake-up message arrived that no wait_changed has seen
        self._indexed = False  # every row counted for inspection (see _redis_stats)

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"RedisStore({redact_url(self.url)!r}, prefix={self.prefix!r}{mode})"

    # -- life --------------------------------------------------------------------

    async def __aenter__(self) -> RedisStore:
        """Connect, load the scripts, subscribe to wake-ups and check the eviction policy.

        All of it within ``connect_timeout`` seconds; a cancellation of the
        caller's scope interrupts it at any point.

        :raises RuntimeError: the store is already open
        :raises ImportError: coredis is not installed (``pip install duetime[redis]``)
        :raises ValueError: a URL coredis cannot parse
        :raises TimeoutError: no answer within ``connect_timeout`` seconds
        :raises ConnectionError: the server cannot be reached or refused the
            connection (a wrong address, password or TLS setting)
        """
        if self._stack is not None:
            raise RuntimeError("this RedisStore is already open")
        try:
            import coredis
            from coredis.exceptions import RedisError
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("RedisStore needs coredis: pip install 'duetime[redis]'") from exc
        try:
            client: coredis.Redis[bytes] = coredis.Redis.from_url(
                self.url,
                decode_responses=False,
                decode_components=True,
                connect_timeout=self.connect_timeout,
            )
        except Exception as exc:  # its message may quote the URL: not repeated here
            raise ValueError(
                f"RedisStore: cannot parse the URL {redact_url(self.url)!r} ({type(exc).__name__})"
            ) from None
        # One deadline over the whole opening, entered first so that it is left last:
        # coredis's task groups, entered inside it, must exit inside it.
        deadline = anyio.CancelScope(deadline=anyio.current_time() + self.connect_timeout)
        stack = AsyncExitStack()
        quiet_coredis()
        stack.callback(unquiet_coredis)  # left last, after coredis's own exits
        try:
            stack.enter_context(deadline)
            await stack.enter_async_context(client)
            # The first round trip: a wrong address or password fails here, plainly.
            await client.ping()
            await check_eviction(client, self.url)
            for name in lua.__all__:  # loaded now, so no call ever meets NOSCRIPT first
                self._shas[name] = codec.text(await client.script_load(getattr(lua, name)))
            self._changed = anyio.Event()
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            await tg.start(self._listen, client)  # subscribed when it returns
            deadline.deadline = math.inf
        except BaseException as exc:
            timed_out = deadline.cancel_called
            # No shielding scope here: coredis's task groups were entered before it,
            # and must be exited in the scope they were entered in.
            try:
                await stack.aclose()
            except Exception:  # coredis re-raises the same error from its task group
                logger.debug("RedisStore: error while closing after a failed open", exc_info=True)
            self._changed = None
            if timed_out:
                raise TimeoutError(
                    f"RedisStore {redact_url(self.url)}: no answer within"
                    f" {self.connect_timeout:g} s (connect_timeout)"
                ) from None
            if isinstance(exc, RedisError | OSError):
                raise ConnectionError(
                    f"RedisStore {redact_url(self.url)}: cannot open: {codec.describe(exc)}"
                ) from exc
            raise
        self._client = client
        self._stack = stack
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Unsubscribe and close the connections."""
        stack, self._stack = self._stack, None
        self._client = None
        self._changed = None
        if stack is not None:
            await stack.aclose()

    async def _within(self, what: str, request: Awaitable[T]) -> T:
        """Await one command, at most ``timeout`` seconds.

        :raises TimeoutError: no reply in time
        """
        with anyio.move_on_after(self.timeout):
            return await request
        raise TimeoutError(
            f"RedisStore {redact_url(self.url)}: no reply to {what} within {self.timeout:g} s"
        )

    # -- testing -----------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Test hook: move this store object's view of the server clock forward.

        Every script adds the offset to ``TIME``, so a test can lapse a lease or a
        tombstone without waiting.  Other store objects do not see it: shift each
        one.  Never useful in production.

        :raises ValueError: a negative or non-finite number of seconds
        """
        self._offset += codec.seconds(seconds, "seconds", zero=True)

    # -- calls -------------------------------------------------------------------

    async def _run(self, name: str, *args: str | int | bytes) -> Any:
        client = self._client
        if client is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        from coredis.exceptions import NoScriptError

        argv = [
            codec.arg(self._channel),
            codec.arg(codec.timestr(self._offset)),
            *map(codec.arg, args),
        ]
        try:
            return await self._within(name, client.evalsha(self._shas[name], self._keys, argv))
        except NoScriptError:
            # The server restarted (or ran SCRIPT FLUSH) since the scripts were
            # loaded: load this one again, quietly, and run it once more.
            await self._within(name, client.script_load(getattr(lua, name)))
            return await self._within(name, client.evalsha(self._shas[name], self._keys, argv))

    @property
    def _ro_flag(self) -> str:
        return "1" if self.read_only else ""

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(
                f"RedisStore {redact_url(self.url)} is open read-only (read_only=True):"
                " it cannot be changed"
            )

    async def time(self) -> float:
        """The store's clock: the server's ``TIME``, in UTC epoch seconds."""
        return float(await self._run("TIME"))

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        """Insert rows, idempotent by key, in one script (see :class:`Store`).

        Under ``"error"`` and ``"replace"`` the batch is checked first and nothing
        is written if a row conflicts.

        :raises EntryExists: a conflict under ``"error"``, or a RUNNING row under ``"replace"``
        :raises ValueError: an unknown ``on_conflict``
        :raises ValueError: a row whose key, task, payload or schedule is not
            valid Unicode text (a lone surrogate); nothing is written
        :raises TypeError: a row that is not a NewRow
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if on_conflict not in _CONFLICTS:
            raise ValueError(f"on_conflict must be one of {_CONFLICTS}, got {on_conflict!r}")
        check_new_rows(rows, key_bytes=True)  # coredis sends a key's surrogateescapes as bytes
        if not rows:
            return []
        reply = await self._run("ADD", on_conflict, *codec.add_args(rows, self.lease))
        if reply[0] == b"exists":
            raise EntryExists(f"a durable entry with key {codec.text(reply[1])!r} already exists")
        return [codec.read(row.key, raw) for row, raw in zip(rows, reply[1:], strict=True)]

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        return bool(await self._run("CANCEL", key))

    async def abort(self, key: str) -> bool:
        """Delete a PENDING or FAILED row, or store an abort request in a RUNNING
        one and announce it (the key, on the ``{prefix}:abort`` channel), in one
        script; False if absent or finished (see :class:`Store`).

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        return bool(await self._run("ABORT", key))

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """For each ``(key, token)``, whether that RUNNING row has an abort request
        and the token is current, in one script."""
        if not claims:
            return []
        args: list[str | int] = [self._ro_flag]
        for key, token in claims:
            args += [key, token]
        reply: bytes = await self._run("ABORTS", *args)
        return [c == ord("1") for c in reply]

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (unexpired tombstones included), or None."""
        reply = await self._run("GET", key, self._ro_flag)
        if reply is None:
            return None
        raw, now = reply
        return codec.read(key, raw, float(codec.text(now)))

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time, optionally only those with ``status``.

        :raises TypeError: a limit that is not an int
        :raises ValueError: a negative limit
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        want = "" if status is None else Status(status).value
        reply = await self._run("ENTRIES", want, limit, self._ro_flag)
        return [codec.read(reply[i], reply[i + 1]) for i in range(0, len(reply), 2)]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` due rows, each with a new fencing token (see :class:`Store`).

        A claimed row this side cannot decode is dead-lettered at once, alone,
        with the reason (the scripts set malformed rows aside before that).

        :raises ValueError: a negative limit
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        if limit == 0:
            return []
        reply = await self._run("CLAIM", owner, limit, codec.timestr(self.dedupe_ttl))
        claims = []
        unreadable: list[tuple[str, int, Outcome]] = []
        for i in range(0, len(reply), 3):
            key, token, raw = codec.text(reply[i]), int(reply[i + 1]), reply[i + 2]
            try:
                row = codec.row(raw)
                claims.append(
                    Claim(
                        entry=codec.entry(row),
                        payload=codec.string(row, "p"),
                        token=token,
                        lease_until=codec.number(row, "lu"),
                        lease=codec.number(row, "l"),
                    )
                )
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                reason = codec.unreadable(key, exc).last_error or "malformed row"
                logger.error("RedisStore: dead-lettered the unreadable row %r: %s", key, reason)
                unreadable.append((key, token, Dead(reason)))
        if unreadable:
            await self.finish_many(unreadable)
        return claims

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs by each row's lease, in one script.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if not claims:
            return []
        args: list[str | int] = []
        for key, token in claims:
            args += [key, token]
        reply: bytes = await self._run("EXTEND", *args)
        return [c == ord("1") for c in reply]

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """Apply each ``(key, token, outcome)`` whose token is still current, in one
        round trip; each item is fenced by its own token and gets its own result.

        :raises TypeError: an outcome that is not one of the outcome classes
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if not items:
            return []
        args: list[str | int] = [codec.timestr(self.dedupe_ttl), codec.timestr(self.result_ttl)]
        for key, token, outcome in items:
            args += [key, token, *codec.outcome_args(outcome)]
        reply: bytes = await self._run("FINISH", *args)
        return [c == ord("1") for c in reply]

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED
        or set aside as malformed (nothing in it can be trusted to run).

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        return bool(await self._run("RETRY", key))

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included).

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        return bool(await self._run("DELETE", key))

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None."""
        client = self._client
        if client is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        first = await self._within("ZRANGE", client.zrange(self._keys[0], 0, 0, withscores=True))
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

    async def wait_finished(self, timeout: float) -> None:
        """Return when a row may have finished (a message on the ``{prefix}:done``
        channel, or the subscription came back: messages may have been lost), or
        after ``timeout`` seconds.  A message since this task's previous call
        returns at once.  Never raises on a timeout."""
        if self._changed is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        await self._finished.wait(timeout)

    async def wait_aborted(self, timeout: float) -> None:
        """Return when an abort may have been requested (a message on the
        ``{prefix}:abort`` channel, or the subscription came back: messages may
        have been lost), or after ``timeout`` seconds.  A message since this
        task's previous call returns at once.  Never raises on a timeout."""
        if self._changed is None:
            raise RuntimeError("the RedisStore is not open: use `async with store:`")
        await self._aborted.wait(timeout)

    async def _listen(
        self,
        client: coredis.Redis[bytes],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        # One task per open store turns wake-up messages into an Event.  The
        # subscription is this task's own, not coredis's self-healing one: when
        # its connection drops (a restart), it is opened again here after a short
        # pause, and leaving the store never waits on a reconnect in progress.
        # A new subscription counts as a wake-up: messages sent meanwhile are lost.
        pause = 0.05
        started = False
        while True:
            try:
                async with client.pubsub(
                    channels=[self._channel, self._done_channel, self._abort_channel],
                    ignore_subscribe_messages=True,
                    retry_policy=None,
                ) as pubsub:
                    if started:
                        logger.debug("RedisStore: wake-up subscription back")
                        self._wake()
                        self._finished.notify()
                        self._aborted.notify()
                    else:
                        started = True
                        task_status.started()
                    pause = 0.05
                    while True:
                        message = await pubsub.get_message()
                        if message is None:
                            continue
                        channel = codec.text(message["channel"])
                        if channel == self._done_channel:
                            self._finished.notify()
                        elif channel == self._abort_channel:
                            self._aborted.notify()
                        else:
                            self._wake()
            except Exception as exc:
                if not started:
                    raise
                logger.debug("RedisStore: wake-up subscription lost: %s", codec.describe(exc))
            await anyio.sleep(pause)
            pause = min(1.0, pause * 2)

    def _wake(self) -> None:
        if self._changed is None:
            return  # closed meanwhile
        self._dirty = True
        changed, self._changed = self._changed, anyio.Event()
        changed.set()
