"""The ``python -m duetime demo`` tour: each capability, live, in about 14 seconds.

With the ``cli`` extra (rich) it draws a progress bar for the batch and a live
statistics table; without it, it prints plain text.  ``--fast`` shrinks every
delay tenfold, for CI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import anyio

# The public names only: the tour shows what users can write.
from . import Handle, PendingReplies, Scheduler, Timeouts, WorkerPool, process_batch

__all__ = ["run_demo"]


class _Out(Protocol):
    def section(self, title: str) -> None: ...

    def say(self, text: str) -> None: ...

    def progress(self, total: int) -> Callable[[int, int], None]: ...

    def stats(self, scheduler: Scheduler) -> None: ...

    def close(self) -> None: ...


class _Plain:
    """Plain-text output: works everywhere, no extra dependency."""

    def __init__(self) -> None:
        self._t0 = anyio.current_time()

    def _stamp(self) -> str:
        return f"[t+{anyio.current_time() - self._t0:5.2f}s]"

    def section(self, title: str) -> None:
        print(f"\n{self._stamp()} == {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"{self._stamp()}    {text}", flush=True)

    def progress(self, total: int) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if done == total or done % max(total // 4, 1) == 0:
                self.say(f"batch progress {done}/{total}")

        return report

    def stats(self, scheduler: Scheduler) -> None:
        st = scheduler.statistics()
        self.say(
            f"statistics: pending={st.pending} running={st.running} completed={st.completed}"
            f" failed={st.failed} cancelled={st.cancelled} expired={st.expired}"
            f" max lateness={st.max_lateness * 1000:.2f} ms"
        )

    def close(self) -> None:
        pass


class _Rich:
    """rich output: a live statistics table and a progress bar for the batch."""

    def __init__(self) -> None:
        from rich.console import Console

        self._console = Console()
        self._t0 = anyio.current_time()

    def _stamp(self) -> str:
        return f"[dim]t+{anyio.current_time() - self._t0:5.2f}s[/dim]"

    def section(self, title: str) -> None:
        self._console.rule(f"[bold cyan]{title}")

    def say(self, text: str) -> None:
        from rich.markup import escape

        self._console.print(f"{self._stamp()} {escape(text)}")

    def progress(self, total: int) -> Callable[[int, int], None]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("batch"), BarColumn(), MofNCompleteColumn(), console=self._console
        )
        task = bar.add_task("batch", total=total)
        bar.start()
        self._bar = bar

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done)
            if done == total:
                bar.stop()

        return report

    def stats(self, scheduler: Scheduler) -> None:
        from rich.table import Table

        st = scheduler.statistics()
        table = Table(title="scheduler.statistics()", show_header=True)
        for col in (
            "pending",
            "running",
            "completed",
            "failed",
            "cancelled",
            "expired",
            "max late",
        ):
            table.add_column(col, justify="right")
        table.add_row(
            *(
                str(v)
                for v in (st.pending, st.running, st.completed, st.failed, st.cancelled, st.expired)
            ),
            f"{st.max_lateness * 1000:.2f} ms",
        )
        self._console.print(table)

    def close(self) -> None:
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.stop()


def _make_output(plain: bool) -> _Out:
    if not plain:
        try:
            import rich  # noqa: F401
        except ImportError:
            pass
        else:
            return _Rich()
    return _Plain()


def _divide(a: int, b: int) -> float:
    return a / b


def _add(a: int, b: int) -> int:
    return a + b


async def _fetch(url: str, seconds: float) -> str:
    await anyio.sleep(seconds)
    return f"<body of {url}>"


async def _tour(scale: float, plain: bool) -> None:
    out = _make_output(plain)
    errors: list[str] = []

    def on_error(handle: Handle[Any], exc: BaseException) -> None:
        errors.append(f"{handle.name}: {exc!r}")

    try:
        async with Scheduler(on_error=on_error) as scheduler:
            out.section("1. Deferred results: call_later returns an awaitable Handle")
            h = scheduler.call_later(0.5 * scale, _add, 1, 2)
            out.say(f"scheduled {h!r}")
            value = await h
            out.say(f"await handle -> {value}   status={h.status}")
            pages = [
                scheduler.call_soon(_fetch, f"https://example.org/{i}", 0.3 * scale)
                for i in range(3)
            ]
            for page in pages:
                body = await page
                out.say(f"async callback -> {body}")

            out.section("2. Cancellation and captured errors")
            doomed = scheduler.call_later(60, _add, 0, 0, name="never-runs")
            out.say(
                f"cancel() -> {doomed.cancel()}, again -> {doomed.cancel()}, status={doomed.status}"
            )
            bad = scheduler.call_later(0.2 * scale, _divide, 1, 0, name="divide-by-zero")
            await bad.wait()
            out.say(f"status={bad.status} exception={bad.exception!r}")
            scheduler.call_soon(_divide, 2, 0, name="unwatched")
            await anyio.sleep(0.1 * scale)
            out.say(f"nobody awaited 'unwatched', so on_error got: {errors[-1]}")

            out.section("3. A drift-free periodic job: run k is due at start + k * interval")
            interval = 0.25 * scale
            t0 = anyio.current_time()
            ticks: list[float] = []

            async def tick() -> None:
                ticks.append(anyio.current_time() - t0)
                await anyio.sleep(interval * 0.6)  # slow runs do not shift the grid

            series = scheduler.call_every(interval, tick, max_runs=8)
            runs = await series
            drift = max(abs(t - k * interval) for k, t in enumerate(ticks))
            out.say(
                f"{runs} runs, each taking 60% of the interval;"
                f" worst offset from the grid: {drift * 1000:.2f} ms"
            )

            out.section("4. A watchdog: Timeouts keyed by name, reset by heartbeats")
            timeouts = Timeouts(scheduler)
            fired = anyio.Event()

            def stalled(key: str) -> None:
                out.say(f"watchdog: no heartbeat from {key!r} for {0.6 * scale:.2f} s: restart it")
                fired.set()

            timeouts.set("worker-1", 0.6 * scale, stalled, "worker-1")
            for _ in range(3):
                await anyio.sleep(0.3 * scale)
                timeouts.reset("worker-1")
                out.say("heartbeat: countdown reset")
            await fired.wait()

            out.section("5. Reaping leaked RPC callbacks: PendingReplies")
            replies: PendingReplies[str] = PendingReplies(scheduler, timeout=1.0 * scale)
            calls = [replies.expect(msg_id) for msg_id in range(5)]
            replies.resolve(0, "pong")
            replies.resolve(3, "pong")
            out.say(f"5 requests sent, 2 replies arrived; pending={replies.pending_count}")
            for call in calls:
                await call.wait()
            out.say(
                f"after the timeout: pending={replies.pending_count} reaped={replies.reaped_count}"
            )
            out.say(
                f"a late reply is ignored: resolve(1) -> {replies.resolve(1, 'late')},"
                f" late={replies.late_count}"
            )

            out.section("6. A deadline-bounded batch returns partial results")

            async def work(item: int) -> int:
                await anyio.sleep(0.1 * scale)
                return item * item

            report = None
            with anyio.move_on_after(1.0 * scale):
                report = await process_batch(list(range(20)), work, on_progress=out.progress(20))
            assert report is not None
            out.say(
                f"20 items of {0.1 * scale:.2f} s under a {1.0 * scale:.2f} s deadline: "
                f"completed={len(report.completed)} skipped={len(report.skipped)} "
                f"timed_out={len(report.timed_out)} wasted={report.wasted:.3f} s"
            )

            out.section("7. A worker pool: backpressure, then drain on shutdown")
            done: list[int] = []

            async def handle_order(order: int) -> None:
                await anyio.sleep(0.2 * scale)
                done.append(order)

            async with WorkerPool(handle_order, workers=3, maxsize=2) as pool:
                for order in range(9):
                    await pool.submit(order)  # waits while the queue is full
                out.say(
                    f"9 orders submitted; {pool.statistics().queued} still queued as the block ends"
                )
            out.say(f"pool drained on exit: {len(done)} orders handled, {pool.statistics()}")

            out.stats(scheduler)
        out.say("scheduler closed: every handle ended in a final state")
    finally:
        out.close()


def run_demo(*, fast: bool = False, backend: str = "asyncio", plain: bool = False) -> int:
    """Run the tour on ``backend``; ``fast`` shrinks every delay for CI."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    anyio.run(_tour, 0.1 if fast else 2.0, plain, backend=backend)
    return 0
