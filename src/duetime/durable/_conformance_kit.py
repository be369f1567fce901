"""The conformance suite's helpers and its malformed-row part (see :mod:`.conformance`)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from .._vocab import Status
from ._store import MALFORMED, Claim, Done, NewRow, Store

__all__ = [
    "MALFORMED_FAULTS",
    "START",
    "MalformedRowConformance",
    "StoreUnderTest",
    "loop_epoch_clock",
    "row",
    "wake_delay",
]

#: Where :func:`loop_epoch_clock` starts by default: 2024-01-01T00:00Z, epoch seconds.
START = 1704067200.0


def loop_epoch_clock(start: float = START) -> Callable[[], float]:
    """A store clock (epoch seconds) that advances with the event loop's clock."""
    t0 = anyio.current_time()
    return lambda: start + (anyio.current_time() - t0)


def row(key: str, *args: Any, task: str = "t", **kw: Any) -> NewRow:
    """A NewRow due now unless ``due``/``delay`` is given."""
    if "due" not in kw and "delay" not in kw:
        kw["delay"] = 0.0
    return NewRow(key=key, task=task, payload=json.dumps(list(args)), **kw)


async def wake_delay(
    wait: Callable[[float], Awaitable[None]],
    act: Callable[[], Awaitable[object]],
    *,
    settle: float = 0.5,
    prime: bool = False,
) -> float:
    """How long after ``act()`` a task blocked in ``wait(600)`` returned, in
    seconds of the loop clock (``inf`` if it returned before ``act``).

    :param wait: a ``wait_*`` method of a store
    :param act: what should wake it (awaited ``settle`` seconds after the
        waiter started)
    :param prime: first call ``wait(0)`` in the waiting task, so that what
        happened before it (that task's earlier wake-ups) is consumed
    """
    woke = math.inf

    async def waiter() -> None:
        nonlocal woke
        if prime:
            await wait(0)
        await wait(600.0)
        woke = anyio.current_time()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.sleep(settle)
        t_act = anyio.current_time()
        await act()
    return woke - t_act if woke >= t_act else math.inf


@pytest.mark.anyio
class StoreUnderTest:
    """What every part of the suite stands on: the store under test and its clock.

    Subclasses implement :meth:`make_store` (and may override :meth:`advance`).
    """

    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        """A new, unentered store (the suite enters it).

        :param tmp_path: a fresh directory of this test
        :param options: ``lease``, ``dedupe_ttl`` and ``result_ttl``, in seconds
        """
        raise NotImplementedError

    async def advance(self, seconds: float) -> None:
        """Move the store's clock forward by ``seconds``."""
        await anyio.sleep(seconds)

    @pytest.fixture
    async def store(self, anyio_backend: Any, tmp_path: Path) -> AsyncIterator[Store]:
        """The store under test, entered, with a 10 s lease."""
        async with self.make_store(tmp_path, lease=10.0) as s:
            yield s


#: The faults :meth:`MalformedRowConformance.corrupt` writes into a row.
MALFORMED_FAULTS = ("due_not_a_number", "due_infinite", "lease_negative", "status_unknown")


@pytest.mark.anyio
class MalformedRowConformance(StoreUnderTest):
    """A row another program wrote wrong is dead-lettered alone and never breaks a listing.

    For stores that can hold such a row: subclasses implement :meth:`make_store`
    and :meth:`corrupt` (which writes the fault with the store's own client, as
    another program would).  Every test runs on asyncio and trio.
    """

    async def corrupt(self, store: Store, key: str, fault: str) -> None:
        """Overwrite the PENDING row ``key`` with ``fault``, one of :data:`MALFORMED_FAULTS`:
        a due time that is text or infinite, a negative lease, an unknown status."""
        raise NotImplementedError

    @pytest.mark.parametrize("fault", MALFORMED_FAULTS)
    async def test_a_malformed_row_is_dead_lettered_alone(self, store: Store, fault: str) -> None:
        await store.add([row("good1", 1), row("bad", 2), row("good2", 3)])
        await self.corrupt(store, "bad", fault)
        # Listing never raises, and shows the row.
        assert {e.key for e in await store.entries()} == {"good1", "bad", "good2"}
        assert await store.get("bad") is not None
        claims: list[Claim] = []
        for _ in range(3):
            claims += await store.claim("w", 10)
        assert sorted(c.entry.key for c in claims) == ["good1", "good2"]
        bad = await store.get("bad")
        assert bad is not None
        assert bad.status is Status.FAILED
        assert str(bad.last_error).startswith(MALFORMED), bad.last_error
        assert [e.key for e in await store.entries(status=Status.FAILED)] == ["bad"]
        for c in claims:
            assert (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
        assert await store.delete("bad")
        assert await store.get("bad") is None
        assert await store.claim("w", 10) == []
