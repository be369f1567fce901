"""Several hosts, simulated: four worker processes share one server (PostgreSQL or Redis).

Each worker (tests/durable/_store_host.py) has its own connections, like a host
would; two run on asyncio and two on trio.  During one run :func:`four_hosts`

- ``kill -9``s one worker while it holds leases,
- SIGSTOPs another past its lease, then SIGCONTs it (a paused or partitioned host),
- crashes and restarts the server (the test's ``restart``),

while one-shot entries come due at a steady rate and a recurring series ticks
every 0.1 s.  Then: 0 lost (every entry COMPLETED in the store), 0 completed
twice (no key with two successful fenced finishes; the paused host's late
finishes are refused), the killed host's entries claimed again within lease +
poll, and each occurrence of the series completed exactly once.

Real processes and real time (about 10 s): tests/durable/test_postgres_hosts.py
and tests/durable/test_redis_hosts.py run it on their server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread

from duetime import Status
from duetime.durable import NewRow

from ._server_stores import LABELS, open_store

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0
POLL = 0.25  # the workers' safety poll
ENTRIES = 1200  # due over SPREAD seconds: 200/s, well under the workers' capacity
SPREAD = 6.0


def parse(path: Path) -> list[tuple[str, str, str, float]]:
    events = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:  # a kill -9 may cut the last line
            try:
                events.append((parts[0], parts[1], parts[2], float(parts[3])))
            except ValueError:
                continue
    return events


def four_hosts(kind: str, url: str, restart: Callable[[], None], tmp_path: Path) -> None:
    """Run the scenario on the server at ``url`` (asserting all the above).

    :param kind: the store's kind (see :func:`._server_stores.open_store`)
    :param restart: crash and restart the server, returning once it answers
        again (run in a worker thread while the hosts run)
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    logs = [tmp_path / f"host{i}.log" for i in range(4)]
    backends = ["asyncio", "trio", "asyncio", "trio"]
    prefix = "hosts"
    host = [sys.executable, "-m", "tests.durable._store_host", kind, url, prefix]
    procs = [
        subprocess.Popen(
            [*host, str(log), backend, str(LEASE)],
            env=env,
            cwd=ROOT,
        )
        for log, backend in zip(logs, backends, strict=True)
    ]
    try:
        # The worker processes run on both backends; this process only drives them.
        anyio.run(_run, kind, url, restart, prefix, procs, logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=10)


async def _run(
    kind: str,
    url: str,
    restart: Callable[[], None],
    prefix: str,
    procs: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> None:
    with anyio.fail_after(15):
        while not all(log.exists() and "ready" in log.read_text() for log in logs):
            await anyio.sleep(0.05)
    async with open_store(kind, url, prefix, lease=LEASE) as producer:
        now = await producer.time()
        rows = [
            NewRow(f"job-{i}", "t", "[]", due=now + 0.5 + SPREAD * i / ENTRIES)
            for i in range(ENTRIES)
        ]
        series = json.dumps({"every": 0.1, "until": now + 0.5 + SPREAD})
        rows.append(NewRow("tick", "t", "[]", due=now + 0.5, schedule=series))
        await producer.add(rows)

    t0 = time.time()
    # kill -9 host 0 while it holds leases
    await _until_holding(logs[0])
    t_kill = time.time()
    procs[0].send_signal(signal.SIGKILL)
    # pause host 1 past its lease, while it holds leases, then let it go on
    await anyio.sleep(max(0.0, t0 + 1.5 - time.time()))
    await _until_holding(logs[1])
    procs[1].send_signal(signal.SIGSTOP)
    await anyio.sleep(LEASE + 0.5)
    procs[1].send_signal(signal.SIGCONT)
    # crash and restart the server: every committed write survives
    await anyio.sleep(max(0.0, t0 + 4.0 - time.time()))
    t_down = time.time()
    await anyio.to_thread.run_sync(restart)
    took = time.time() - t_down

    async with open_store(kind, url, prefix) as store:
        with anyio.fail_after(30):
            while True:
                pending = [
                    e for e in await store.entries(limit=5000) if e.status is not Status.COMPLETED
                ]
                if not pending:
                    break
                await anyio.sleep(0.2)
        entries = await store.entries(limit=5000)

    events = [(i, *event) for i, log in enumerate(logs) for event in parse(log)]
    done = Counter(key for _, what, key, _, _ in events if what == "done" and key != "tick")
    ticks = Counter(
        tok.split("@")[1] for _, what, key, tok, _ in events if what == "done" and key == "tick"
    )
    fenced = [(i, key) for i, what, key, _, _ in events if what == "fenced"]
    # 0 lost: every entry ended COMPLETED in the store
    assert len(entries) == ENTRIES + 1
    assert all(e.status is Status.COMPLETED for e in entries)
    # 0 completed twice: one successful fenced finish per key (a kill -9 may lose the
    # log line of a finish that did succeed, never add one)
    assert max(done.values()) == 1
    assert len(done) >= ENTRIES - 8
    # the series: every occurrence completed once, none skipped.  The store's
    # occurrence counter says how many there were; the logs may miss one whose
    # finish succeeded just before its host's kill -9 (as for one-shot entries).
    assert max(ticks.values()) == 1
    occurrences = sorted(int(k) for k in ticks)
    [tick_row] = [e for e in entries if e.key == "tick"]
    total = tick_row.occurrence + 1
    assert set(occurrences) <= set(range(total))
    assert len(set(range(total)) - set(occurrences)) <= 1
    assert total >= int(SPREAD / 0.1) - 1
    # the paused host's late finishes were refused
    assert any(i == 1 for i, _ in fenced)
    # recovery: what host 0 held at its death, others claimed within lease + poll
    held = {k for i, what, k, _, _ in events if i == 0 and what == "claim" and k != "tick"}
    held -= {k for i, what, k, _, _ in events if i == 0 and what == "done"}
    # (measured to the first claim by another host: that host may be the one
    # paused next, whose lease on it then lapses too)
    recovered: dict[str, float] = {}
    for i, what, key, _, t in events:
        if i != 0 and what == "claim" and key in held and t > t_kill:
            recovered[key] = min(t, recovered.get(key, t))
    assert recovered
    worst = max(recovered.values()) - t_kill
    assert worst <= LEASE + POLL + 0.5, worst
    print(
        f"\nhosts: {ENTRIES} entries + {len(occurrences)} occurrences, 0 lost, 0 double;"
        f" kill -9: {len(recovered)} orphaned leases recovered in <= {worst:.2f} s"
        f" (lease {LEASE} + poll {POLL}); paused host: {sum(i == 1 for i, _ in fenced)}"
        f" late finishes fenced; the {LABELS[kind]} restart took {took:.2f} s"
    )


async def _until_holding(log: Path) -> None:
    """Wait until the host's log shows a claim it has not finished yet."""
    with anyio.fail_after(10):
        while True:
            open_claims: set[str] = set()
            for what, key, token, _ in parse(log):
                ident = f"{key}/{token.split('@')[0]}"
                if what == "claim":
                    open_claims.add(ident)
                elif what in ("done", "fenced"):
                    open_claims.discard(ident)
            if open_claims:
                return
            await anyio.sleep(0.002)
