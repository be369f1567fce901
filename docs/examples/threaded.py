"""Synchronous programs with ThreadedScheduler: the code of docs/guide-threaded.md.

Plain synchronous code, no ``async`` anywhere in the caller.  It runs in well
under a second of real time: ``python docs/examples/threaded.py``.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import anyio

from duetime import CallbackCancelled, Job, SchedulerClosed, Status, ThreadedScheduler
from duetime.testing import VirtualTimeLoop


def say_hello(name: str) -> str:
    return f"Greeting for {name} sent."


def divide(a: int, b: int) -> float:
    return a / b


def basics() -> None:
    # --8<-- [start:basics]
    with ThreadedScheduler() as scheduler:  # an event loop in a background thread
        job = scheduler.call_later(0.1, say_hello, "Alice")
        print(job.id)  # a UUID string, e.g. '0b6d4c1e-...'
        assert job.result(timeout=5) == "Greeting for Alice sent."  # blocks, like a Future
        assert job.status is Status.COMPLETED
        assert scheduler.get(job.id) is job  # look a job up by id

        at_noon = datetime.now(UTC) + timedelta(seconds=0.1)  # an aware datetime
        greeting = scheduler.call_at(at_noon, say_hello, "Bob")
        assert greeting.result(timeout=5) == "Greeting for Bob sent."

        failing = scheduler.call_later(0.1, divide, 1, 0)
        err = failing.exception(timeout=5)  # waits, then returns the exception
        assert repr(err) == "ZeroDivisionError('division by zero')"
        assert failing.status is Status.FAILED
    # --8<-- [end:basics]


def cancelling() -> None:
    # --8<-- [start:cancel]
    with ThreadedScheduler() as scheduler:
        job = scheduler.call_later(3600, say_hello, "nobody")
        assert job.cancel() is True
        assert job.status is Status.CANCELLED
        try:
            job.result()
        except CallbackCancelled:
            print("cancelled jobs raise CallbackCancelled")

        # result(timeout=...) gives up waiting; the job itself goes on.
        later = scheduler.call_later(3600, say_hello, "later")
        try:
            later.result(timeout=0.05)
        except TimeoutError:
            assert later.status is Status.PENDING
    # --8<-- [end:cancel]


def from_many_threads() -> None:
    # --8<-- [start:threads]
    def slow(seconds: float) -> str:
        time.sleep(seconds)  # blocking is fine: sync callbacks run in worker threads
        return threading.current_thread().name

    with ThreadedScheduler(max_threads=4) as scheduler:
        # Every method is safe to call from any thread.
        with ThreadPoolExecutor(max_workers=8) as pool:
            jobs: list[Job[str]] = list(
                pool.map(lambda _: scheduler.call_soon(slow, 0.05), range(8))
            )
        start = time.monotonic()
        workers = {job.result(timeout=5) for job in jobs}
        # Four threads at a time: 8 jobs of 50 ms take about 100 ms, not 400 ms.
        assert time.monotonic() - start < 0.35
        assert 1 <= len(workers) <= 4

        # A callback that blocks never delays the others' timers.
        blocker = scheduler.call_soon(slow, 0.3)
        quick = scheduler.call_later(0.05, say_hello, "on time")
        assert quick.result(timeout=5) == "Greeting for on time sent."
        assert not blocker.done()
        blocker.result(timeout=5)
    # --8<-- [end:threads]


def failures() -> None:
    # --8<-- [start:failures]
    def load_config() -> None:
        sys.exit(2)  # e.g. a helper written for a CLI, which exits on bad input

    with ThreadedScheduler() as scheduler:
        job = scheduler.call_later(0.05, load_config)
        try:
            job.result(timeout=5)
        except SystemExit as exc:  # as with concurrent.futures: the job's own exception
            print(f"the job called sys.exit({exc.code})")
        assert job.status is Status.FAILED
        # Only that job failed: the scheduler keeps running.
        still = scheduler.call_soon(say_hello, "still here")
        assert still.result(timeout=5) == "Greeting for still here sent."
    # --8<-- [end:failures]


def async_callbacks_and_done_callbacks() -> None:
    # --8<-- [start:async]
    async def fetch(url: str) -> str:
        await anyio.sleep(0.05)  # async callbacks run on the scheduler's event loop
        return f"<body of {url}>"

    finished = threading.Event()
    with ThreadedScheduler() as scheduler:
        job = scheduler.call_soon(fetch, "https://example.org")
        job.add_done_callback(lambda j: finished.set())  # runs on the loop thread
        assert job.result(timeout=5) == "<body of https://example.org>"
        assert finished.wait(5)
    # --8<-- [end:async]


def shutting_down() -> None:
    # --8<-- [start:shutdown]
    started = threading.Event()

    def work() -> str:
        started.set()
        time.sleep(0.1)
        return "done"

    # One worker thread, or use it as a context manager: `with ThreadedScheduler():`
    scheduler = ThreadedScheduler(max_threads=1).start()
    running = scheduler.call_soon(work)
    waiting = scheduler.call_soon(say_hello, "queued")  # the only thread is busy
    pending = scheduler.call_later(3600, say_hello, "never")
    assert started.wait(5)
    assert running.status is Status.RUNNING
    assert waiting.status is Status.PENDING  # RUNNING only once a thread runs it
    scheduler.shutdown(wait=True)  # pending jobs are cancelled, running ones finish
    assert running.status is Status.COMPLETED
    assert waiting.status is Status.CANCELLED  # it never started
    assert pending.status is Status.CANCELLED
    try:
        scheduler.call_soon(say_hello, "too late")
    except SchedulerClosed:
        print("after shutdown every call raises SchedulerClosed, never hangs")
    scheduler.shutdown()  # twice is safe
    # --8<-- [end:shutdown]


def virtual_time() -> None:
    # --8<-- [start:virtual]
    # In tests, run the background loop on virtual time: an hour passes at once.
    with ThreadedScheduler(backend_options={"loop_factory": VirtualTimeLoop}) as scheduler:
        job = scheduler.call_later(3600, say_hello, "the future")
        assert job.result(timeout=5) == "Greeting for the future sent."
    # --8<-- [end:virtual]


def main() -> None:
    basics()
    cancelling()
    from_many_threads()
    failures()
    async_callbacks_and_done_callbacks()
    shutting_down()
    virtual_time()
    print("all ThreadedScheduler examples passed")


if __name__ == "__main__":
    main()
