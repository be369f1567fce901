"""The ``python -m duetime demo`` tour: each capability, live, in a few seconds."""

from __future__ import annotations

import logging

import anyio

from ._handle import Handle
from ._scheduler import Scheduler

__all__ = ["run_demo"]


def _say(text: str) -> None:
    print(text, flush=True)


def _add(a: int, b: int) -> int:
    return a + b


async def _fetch(url: str, seconds: float) -> str:
    await anyio.sleep(seconds)
    return f"<body of {url}>"


def _divide(a: int, b: int) -> float:
    return a / b


async def _tour(scale: float) -> None:
    t0 = anyio.current_time()

    def stamp() -> str:
        return f"[t+{anyio.current_time() - t0:5.2f}s]"

    errors: list[str] = []

    def on_error(handle: Handle[object], exc: BaseException) -> None:
        errors.append(f"{handle.name}: {exc!r}")

    async with Scheduler(on_error=on_error) as scheduler:
        _say(f"{stamp()} 1. deferred results: call_later returns an awaitable Handle")
        h = scheduler.call_later(0.5 * scale, _add, 1, 2)
        _say(f"{stamp()}    scheduled {h!r}")
        result = await h
        _say(f"{stamp()}    await handle -> {result}   status={h.status}")

        _say(f"{stamp()} 2. async callbacks run concurrently, each with its own result")
        pages = [
            scheduler.call_soon(_fetch, f"https://example.org/{i}", 0.3 * scale) for i in range(3)
        ]
        for page in pages:
            body = await page
            _say(f"{stamp()}    {body}")

        _say(f"{stamp()} 3. cancellation: a pending handle is removed in O(1)")
        doomed = scheduler.call_later(60, _add, 0, 0, name="never-runs")
        _say(
            f"{stamp()}    cancel() -> {doomed.cancel()}, again -> {doomed.cancel()},"
            f" status={doomed.status}"
        )

        _say(f"{stamp()} 4. errors are captured, never lost, never kill the loop")
        bad = scheduler.call_later(0.2 * scale, _divide, 1, 0, name="divide-by-zero")
        await bad.wait()
        _say(f"{stamp()}    status={bad.status} exception={bad.exception!r}")
        scheduler.call_soon(_divide, 2, 0, name="unwatched")
        await anyio.sleep(0.1 * scale)
        _say(f"{stamp()}    nobody awaited 'unwatched': on_error got {errors[-1]!r}")

        _say(f"{stamp()} 5. timeouts: a callback past its time fails with TimeoutError")
        slow = scheduler.call_soon(_fetch, "https://slow.example.org", 10, timeout=0.3 * scale)
        await slow.wait()
        _say(f"{stamp()}    status={slow.status} exception={slow.exception!r}")

        stats = scheduler.statistics()
        _say(
            f"{stamp()} statistics: completed={stats.completed} failed={stats.failed} "
            f"cancelled={stats.cancelled} pending={stats.pending} "
            f"max lateness={stats.max_lateness * 1000:.2f} ms"
        )
    _say(f"{stamp()} scheduler closed; every handle ended in a final state")


def run_demo(*, fast: bool = False, backend: str = "asyncio") -> int:
    """Run the tour on ``backend``; ``fast`` shrinks every delay for CI."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(_tour, 0.1 if fast else 1.0, backend=backend)
    return 0
