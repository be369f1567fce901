"""Tests for duetime.testing: virtual time on asyncio (VirtualTimeLoop) and trio (MockClock)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketStream

from duetime.testing import (
    DEFAULT_WALL_START,
    VirtualTimeLoop,
    VirtualWallClock,
    advance_time,
    anyio_backend_fixture,
    hold_autojump,
    virtual_time_backend,
    virtual_time_backends,
)

# Every async test in this module runs on asyncio+VirtualTimeLoop and trio+MockClock.
anyio_backend = anyio_backend_fixture()

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def busy_work(seconds: float = 0.05) -> str:
    """Keep a worker thread busy (spinning, not sleeping) for a short real time."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return "done"


# -- clock basics ----------------------------------------------------------------------


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_a_fresh_clock(run: int) -> None:
    assert anyio.current_time() == 0.0
    await anyio.sleep(1000 * run)
    assert anyio.current_time() == 1000 * run


async def test_24_hour_sleep_is_fast() -> None:
    started = time.perf_counter()
    before = anyio.current_time()
    await anyio.sleep(24 * 3600)
    assert anyio.current_time() - before == 24 * 3600
    assert time.perf_counter() - started < 5


async def test_fixed_rate_sleep_until_lands_on_exact_times() -> None:
    start = anyio.current_time()
    for k in range(1, 1441):
        target = start + k * 60
        await anyio.sleep_until(target)
        assert anyio.current_time() == target
    assert anyio.current_time() == start + 24 * 3600


async def test_concurrent_sleepers_wake_in_order() -> None:
    woke: list[tuple[int, float]] = []

    async def sleeper(n: int) -> None:
        await anyio.sleep(n * 10)
        woke.append((n, anyio.current_time()))

    async with anyio.create_task_group() as tg:
        for n in (3, 1, 2):
            tg.start_soon(sleeper, n)
    assert woke == [(1, 10.0), (2, 20.0), (3, 30.0)]


async def test_move_on_after_follows_virtual_time() -> None:
    start = anyio.current_time()
    with anyio.move_on_after(10) as scope:
        await anyio.sleep(100)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 10


async def test_fail_after_follows_virtual_time() -> None:
    start = anyio.current_time()
    with pytest.raises(TimeoutError), anyio.fail_after(30):
        await anyio.sleep(60)
    assert anyio.current_time() - start == 30

    with anyio.fail_after(30):
        await anyio.sleep(29)
    assert anyio.current_time() - start == 59


async def test_virtual_time_never_goes_backwards() -> None:
    seen = [anyio.current_time()]

    async def ticker() -> None:
        for _ in range(50):
            await anyio.sleep(0.7)
            seen.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(50):
            await anyio.lowlevel.checkpoint()
            seen.append(anyio.current_time())
            if i % 10 == 0:
                advance_time(1.5)
                seen.append(anyio.current_time())
            if i % 17 == 0:
                await anyio.to_thread.run_sync(busy_work, 0.001)
                seen.append(anyio.current_time())
            await anyio.sleep(0.3)
            seen.append(anyio.current_time())
    assert seen == sorted(seen)
    assert seen[-1] > seen[0]
    with pytest.raises(ValueError, match="backwards"):
        advance_time(-1)
    assert anyio.current_time() == seen[-1]


async def test_advance_time_fires_due_timers() -> None:
    start = anyio.current_time()
    advance_time(3600)
    assert anyio.current_time() == start + 3600
    with anyio.fail_after(1):  # a pending timer at start+3601 must not fire early
        await anyio.sleep(0.5)
    assert anyio.current_time() == start + 3600.5


# -- things that must keep working ---------------------------------------------------------


async def test_to_thread_run_sync_works() -> None:
    assert await anyio.to_thread.run_sync(busy_work, 0.001) == "done"
    assert await anyio.to_thread.run_sync(lambda: 6 * 7) == 42


async def test_timeout_around_thread_work_does_not_jump_when_held() -> None:
    start = anyio.current_time()
    with hold_autojump(), anyio.fail_after(5):
        assert await anyio.to_thread.run_sync(busy_work) == "done"
    elapsed = anyio.current_time() - start
    # Virtual time flowed (at most) at the real rate instead of jumping 5 s.
    assert 0 <= elapsed < 5


async def test_raw_thread_wakes_idle_loop_without_timers() -> None:
    """No timer pending: the loop must block on real I/O until the thread reports."""
    token = anyio.lowlevel.current_token()
    done = anyio.Event()

    def worker() -> None:
        busy_work(0.02)
        anyio.from_thread.run_sync(done.set, token=token)

    thread = threading.Thread(target=worker)
    thread.start()
    await done.wait()
    thread.join()


async def test_raw_thread_with_timeout_under_hold_autojump() -> None:
    token = anyio.lowlevel.current_token()
    done = anyio.Event()

    def worker() -> None:
        busy_work(0.05)
        anyio.from_thread.run_sync(done.set, token=token)

    thread = threading.Thread(target=worker)
    with hold_autojump(), anyio.fail_after(10):
        thread.start()
        await done.wait()
    thread.join()


async def test_memory_object_streams_work() -> None:
    send, receive = anyio.create_memory_object_stream[tuple[int, float]](1)
    received: list[tuple[int, float]] = []

    async def producer() -> None:
        async with send:
            for i in range(5):
                await anyio.sleep(60)
                await send.send((i, anyio.current_time()))

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        async with receive:
            async for item in receive:
                received.append(item)
    assert received == [(i, start + 60 * (i + 1)) for i in range(5)]


async def test_real_tcp_socket_pair_works() -> None:
    ticks = 0

    async def ticker() -> None:
        # Keeps timers pending (so autojump is active) while real I/O is in flight.
        nonlocal ticks
        while True:
            await anyio.sleep(1)
            ticks += 1

    async def echo(stream: SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk.upper())

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener,
        anyio.create_task_group() as tg,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, echo)
        tg.start_soon(ticker)
        with anyio.fail_after(3600):
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                for word in (b"hello", b"virtual", b"time"):
                    await client.send(word)
                    assert await client.receive() == word.upper()
        tg.cancel_scope.cancel()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
async def test_signals_are_delivered() -> None:
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        with anyio.fail_after(60):
            async for signum in signals:
                assert signum == signal.SIGUSR1
                break


# -- VirtualWallClock -------------------------------------------------------------------


async def test_wall_clock_follows_virtual_time() -> None:
    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    wall = VirtualWallClock(start)
    t0 = anyio.current_time()
    assert wall() == start
    await anyio.sleep(90)
    assert wall() == start + timedelta(seconds=90)
    for _ in range(3):
        await anyio.sleep(3600)
        assert wall() == start + timedelta(seconds=anyio.current_time() - t0)
    assert wall().tzinfo is UTC


async def test_wall_clock_step_and_set_do_not_move_loop_clock() -> None:
    wall = VirtualWallClock()
    assert wall() == DEFAULT_WALL_START
    loop_before = anyio.current_time()

    wall.step(-3600)  # e.g. an NTP correction backwards
    assert wall() == DEFAULT_WALL_START - timedelta(hours=1)
    assert anyio.current_time() == loop_before

    await anyio.sleep(10)
    assert wall() == DEFAULT_WALL_START - timedelta(hours=1) + timedelta(seconds=10)

    target = datetime(2031, 1, 1, tzinfo=UTC)
    wall.set(target)
    assert wall() == target
    await anyio.sleep(5)
    assert wall() == target + timedelta(seconds=5)
    assert anyio.current_time() == loop_before + 15


async def test_wall_clock_converts_aware_start_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    wall = VirtualWallClock(datetime(2030, 1, 1, 13, 0, tzinfo=cet))
    assert wall() == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert wall().utcoffset() == timedelta(0)


def test_wall_clock_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        VirtualWallClock(datetime(2030, 1, 1))
    wall = VirtualWallClock()
    with pytest.raises(ValueError, match="aware"):
        wall.set(datetime(2030, 1, 1))


def test_wall_clock_created_outside_loop_anchors_on_first_call() -> None:
    wall = VirtualWallClock()

    async def main() -> tuple[datetime, datetime]:
        await anyio.sleep(100)  # before the first call: not counted
        first = wall()
        await anyio.sleep(25)
        return first, wall()

    first, second = anyio.run(
        main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop}
    )
    assert first == DEFAULT_WALL_START
    assert second == DEFAULT_WALL_START + timedelta(seconds=25)


# -- asyncio-specific VirtualTimeLoop behaviour (driven by anyio.run directly) ----------------


def run_virtual(main: Callable[[], Awaitable[T]], **loop_options: Any) -> T:
    factory = partial(VirtualTimeLoop, **loop_options) if loop_options else VirtualTimeLoop
    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})


def test_anyio_run_with_loop_factory() -> None:
    async def main() -> float:
        assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
        await anyio.sleep(7 * 24 * 3600)
        return anyio.current_time()

    started = time.perf_counter()
    assert run_virtual(main) == 7 * 24 * 3600
    assert run_virtual(main, start=1000.0) == 1000.0 + 7 * 24 * 3600
    assert time.perf_counter() - started < 5


def test_thread_work_suspends_autojump() -> None:
    """A timeout around busy anyio/asyncio thread work must not fire instantly."""

    async def main() -> float:
        start = anyio.current_time()
        with anyio.fail_after(5):
            assert await anyio.to_thread.run_sync(busy_work) == "done"
        with anyio.fail_after(5):
            assert await asyncio.to_thread(busy_work) == "done"
        with anyio.fail_after(5):
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, busy_work) == "done"
        return anyio.current_time() - start

    elapsed = run_virtual(main)
    assert 0 < elapsed < 5


def test_autojump_disabled_moves_only_by_advance() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        assert loop.autojump is False
        woke: list[float] = []

        async def sleeper() -> None:
            await anyio.sleep(10)
            woke.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            loop.advance(4)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            loop.advance(6)
        return woke

    assert run_virtual(main, autojump=False) == [10.0]


def test_autojump_threshold_still_jumps() -> None:
    async def main() -> float:
        await anyio.sleep(3600)
        return anyio.current_time()

    assert run_virtual(main, autojump_threshold=0.001) == 3600.0


def test_loop_rejects_invalid_settings() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(ValueError, match="backwards"):
            loop.advance(-0.1)
        with pytest.raises(ValueError, match="autojump_threshold"):
            loop.autojump_threshold = -1
        loop.advance(2.5)
        assert loop.time() == 2.5
    finally:
        loop.close()
    with pytest.raises(ValueError, match="finite"):
        VirtualTimeLoop(start=float("nan"))


# -- real work in flight is not overtaken by default (issue 16) ------------------------------

# A self-signed EC certificate for "localhost"/127.0.0.1. The clients below do not
# verify it (so its validity dates cannot make the test fail): it only makes the
# handshake real, with the server side done by a peer thread.
LOCALHOST_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUMFc33okv9bqg0YaM2bhoCY7f3X0wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTIxMTMyNFoYDzIxMjYxMTA1
MjExMzI0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQaKUWmaZdgFzuqd7P5x360Ujnw7X/ikpSg/TF7jyLs40NvOSDhf53u
ZkfusNKvo+We15Jtc0ycsArrqSyjeB/ao28wbTAdBgNVHQ4EFgQUT/W5R/JCvmGr
51lpoZnoNJHVZSQwHwYDVR0jBBgwFoAUT/W5R/JCvmGr51lpoZnoNJHVZSQwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIhAO6HAhpmdEwx+XKeQLY8Qs+Ugd3BVHAf9BmGRbxxp0YlAiBQ
wuW6EIuBL2R/pQsh+lJdbXsZiCyj3oD/2MgoNWxOgw==
-----END CERTIFICATE-----
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgzbGMF9PgM1jSGjPY
Q7BFX3JrSqU6Ko6bDEjZPoykg7yhRANCAAQaKUWmaZdgFzuqd7P5x360Ujnw7X/i
kpSg/TF7jyLs40NvOSDhf53uZkfusNKvo+We15Jtc0ycsArrqSyjeB/a
-----END PRIVATE KEY-----
"""


@contextmanager
def tls_echo_server_thread(tmp_path: Path, connections: int) -> Iterator[int]:
    """A TLS echo server on 127.0.0.1 whose handshakes run in a peer thread; yields the port."""
    pem = tmp_path / "localhost.pem"
    pem.write_text(LOCALHOST_PEM)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pem)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)  # a broken client cannot hang the thread for ever

    def serve() -> None:
        for _ in range(connections):
            conn, _addr = listener.accept()
            conn.settimeout(30)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:  # the real handshake
                busy_work(0.002)  # the peer takes a few real ms to answer
                tls.sendall(tls.recv(100).upper())
                tls.unwrap()  # a clean TLS close (close_notify both ways)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(30)
        listener.close()


def unverified_client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_tls_handshake_with_peer_thread_is_not_overtaken(tmp_path: Path) -> None:
    """Neither asyncio's 60 s SSL handshake timeout nor the user's may fire on a live handshake."""

    async def main() -> list[bytes]:
        replies = []
        with tls_echo_server_thread(tmp_path, connections=2) as port:
            with anyio.fail_after(3600):  # the user's own timeout, pending all along
                # asyncio's own TLS (ssl_handshake_timeout=60 s is pending)
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=unverified_client_context()
                )
                writer.write(b"asyncio")
                replies.append(await reader.read(100))
                writer.close()
                await writer.wait_closed()  # asyncio's 30 s SSL shutdown timeout is pending
                # anyio's TLS (memory BIO over a plain socket stream)
                async with await anyio.connect_tcp(
                    "127.0.0.1", port, tls=True, ssl_context=unverified_client_context()
                ) as stream:
                    await stream.send(b"anyio")
                    replies.append(await stream.receive())
        return replies

    assert run_virtual(main) == [b"ASYNCIO", b"ANYIO"]


def test_peer_thread_reply_is_not_overtaken_by_a_long_timeout() -> None:
    """A reply a few real ms away must win against a pending one-hour virtual timeout."""
    ours, theirs = socket.socketpair()

    def peer() -> None:
        request = theirs.recv(100)
        busy_work(0.005)
        theirs.sendall(request[::-1])

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        with anyio.fail_after(3600):
            await loop.sock_sendall(ours, b"ping")
            reply = await loop.sock_recv(ours, 100)
        thread.join()
        return reply, anyio.current_time()

    try:
        reply, now = run_virtual(main)
    finally:
        ours.close()
        theirs.close()
    assert reply == b"gnip"
    assert now < 1  # the clock only flowed at the real rate while the peer answered


@pytest.mark.timeout(20)  # a clock frozen by the chatter would hang here
def test_a_peer_that_never_stops_talking_cannot_freeze_the_clock() -> None:
    """While real I/O keeps coming, time flows at the real rate: the timeout still fires."""
    ours, theirs = socket.socketpair()
    stop = threading.Event()

    def chatter() -> None:
        while not stop.is_set():
            theirs.send(b".")
            busy_work(0.01)

    async def main() -> tuple[int, float]:
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        received = 0
        with anyio.move_on_after(0.2):
            while True:
                received += len(await loop.sock_recv(ours, 100))
        return received, anyio.current_time()

    thread = threading.Thread(target=chatter, daemon=True)
    thread.start()
    try:
        received, now = run_virtual(main)
    finally:
        stop.set()
        thread.join()
        ours.close()
        theirs.close()
    assert received > 0
    assert now == pytest.approx(0.2)


def test_peer_that_is_slow_to_read_is_not_overtaken() -> None:
    """Data the peer has not taken yet (a registered writer) keeps the clock from jumping."""
    ours, theirs = socket.socketpair()
    payload = b"x" * (4 << 20)  # far more than the socket buffers hold

    def peer() -> None:
        busy_work(0.25)  # busy for longer than io_grace before it reads anything
        received = 0
        while received < len(payload):
            received += len(theirs.recv(1 << 20))

    async def main() -> float:
        loop = asyncio.get_running_loop()
        ours.setblocking(False)
        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        with anyio.fail_after(60):
            await loop.sock_sendall(ours, payload)
        thread.join()
        return anyio.current_time()

    try:
        now = run_virtual(main)
    finally:
        ours.close()
        theirs.close()
    assert now < 60  # virtual time flowed at the real rate while the peer was busy


@contextmanager
def own_sigalrm() -> Iterator[None]:
    """Borrow SIGALRM and ITIMER_REAL (pytest-timeout's watchdog), restoring both after."""
    handler = signal.getsignal(signal.SIGALRM)
    delay, interval = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, handler)
        if delay > 0:
            left = max(delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_real_signal_timer_is_not_overtaken() -> None:
    """A SIGALRM due in 50 real ms arrives before a 60 s virtual timeout."""

    async def main() -> float:
        with anyio.open_signal_receiver(signal.SIGALRM) as signals:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with anyio.fail_after(60):
                async for signum in signals:
                    assert signum == signal.SIGALRM
                    break
        return anyio.current_time()

    with own_sigalrm():
        assert run_virtual(main) < 60


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_long_real_signal_timer_does_not_stop_jumps() -> None:
    """A watchdog timer (like pytest-timeout's) far away does not slow virtual sleeps."""

    async def main() -> float:
        signal.setitimer(signal.ITIMER_REAL, 30)
        await anyio.sleep(24 * 3600)
        return anyio.current_time()

    with own_sigalrm():
        started = time.perf_counter()
        assert run_virtual(main) == 24 * 3600
        assert time.perf_counter() - started < 5


def test_subprocess_is_not_overtaken() -> None:
    """A child that works for 0.2 real s (silently) finishes inside a 60 s virtual timeout."""
    spin = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 0.2: pass\n"

    async def main() -> tuple[int, float]:
        with anyio.fail_after(60):
            result = await anyio.run_process([sys.executable, "-c", spin])
        return result.returncode, anyio.current_time()

    returncode, now = run_virtual(main)
    assert returncode == 0
    # Virtual time flowed meanwhile (not frozen, not jumped to the timeout).  Not
    # ">= 0.2": the loop's clock follows real time only while it waits, so on a
    # loaded machine it can trail the child's own clock.
    assert 0 < now < 60


def test_io_grace_setting() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        assert loop.io_grace == 0.0
        loop.io_grace = 0.01
        assert loop.io_grace == 0.01
        with pytest.raises(ValueError, match="io_grace"):
            loop.io_grace = -1
        with pytest.raises(ValueError, match="io_grace"):
            loop.io_grace = float("inf")
        await anyio.sleep(60)
        return anyio.current_time()

    assert run_virtual(main, io_grace=0) == 60


# -- far in the future (issue 16) ------------------------------------------------------------


@pytest.mark.timeout(20)  # before the fix the loop spun for ever
def test_timer_due_exactly_now_runs_past_2_pow_24_seconds() -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        loop.call_at(loop.time(), fut.set_result, "ran")
        with anyio.fail_after(1):
            return await fut

    for start in (2.0**24, 2.0**24 + 0.5, 2.0**30, 4e9):
        assert run_virtual(main, start=start) == "ran"


@pytest.mark.timeout(20)  # before the fix the loop spun for ever
async def test_ten_year_sleep_returns() -> None:
    ten_years = 10 * 365 * 24 * 3600
    start = anyio.current_time()
    await anyio.sleep(ten_years)
    assert anyio.current_time() - start == ten_years
    for _ in range(3):  # and the clock keeps working out there
        await anyio.sleep(1)
    assert anyio.current_time() - start == ten_years + 3


# -- pytest glue ---------------------------------------------------------------------------


def test_virtual_time_backend_values() -> None:
    assert virtual_time_backends == ("asyncio", "trio")
    assert virtual_time_backend("asyncio") == ("asyncio", {"loop_factory": VirtualTimeLoop})
    name, options = virtual_time_backend("trio")
    assert name == "trio"
    assert options["clock"] is not virtual_time_backend("trio")[1]["clock"]
    with pytest.raises(ValueError, match="unknown backend"):
        virtual_time_backend("curio")


def test_advance_time_outside_virtual_loop_raises() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="VirtualTimeLoop"):
            advance_time(1)
        with hold_autojump():  # no-op on a real clock
            await anyio.lowlevel.checkpoint()

    anyio.run(main, backend="asyncio")
