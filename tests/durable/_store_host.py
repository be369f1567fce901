"""One simulated host for tests/durable/_hosts_scenario.py: a worker process that
drives a PostgresStore's or a RedisStore's API directly (claim -> run -> fenced finish).

Usage: ``python -m tests.durable._store_host KIND URL NAMESPACE LOG BACKEND LEASE``,
``KIND`` ``postgres`` (``NAMESPACE`` is the schema) or ``redis`` (the key prefix).

It logs one line per event to ``LOG`` (flushed at once, so a ``kill -9`` loses at
most a partial last line)::

    claim <key> <token> <time>
    done <key> <token> <time>      finish returned True (the one completion)
    fenced <key> <token> <time>    finish returned False (the lease was lost)

A row with a schedule (``{"every": s, "until": t}``) is a series: its next
occurrence is due on the grid (``due + every``) until ``until``, then it is Done.
Server errors (a restart) are retried every 50 ms: the process never gives up.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import IO, Any

import anyio

from duetime.durable import Claim, Done, NextOccurrence, Outcome, Store

from ._server_stores import open_store

TASK_SECONDS = 0.05  # each "task" holds its lease this long
CONCURRENCY = 8


def log(out: IO[str], what: str, key: str, token: int) -> None:
    out.write(f"{what} {key} {token} {time.time():.6f}\n")
    out.flush()


async def retrying(fn: Any, *args: Any) -> Any:
    while True:
        try:
            return await fn(*args)
        except Exception:  # a restarting server: try again
            await anyio.sleep(0.05)


async def run(claim: Claim, store: Store, out: IO[str]) -> None:
    await anyio.sleep(TASK_SECONDS)
    entry = claim.entry
    outcome: Outcome = Done()
    if entry.schedule is not None:
        spec = json.loads(entry.schedule)
        nxt = entry.due.timestamp() + spec["every"]
        if nxt <= spec["until"]:
            outcome = NextOccurrence(nxt)
        token = f"{claim.token}@{entry.occurrence}"
    else:
        token = str(claim.token)
    [ok] = await retrying(store.finish_many, [(entry.key, claim.token, outcome)])
    out.write(f"{'done' if ok else 'fenced'} {entry.key} {token} {time.time():.6f}\n")
    out.flush()


async def main(kind: str, url: str, namespace: str, path: str, lease: float) -> None:
    owner = f"host-{os.getpid()}"
    with open(path, "a") as out:  # noqa: ASYNC230 - once, at startup
        store = open_store(kind, url, namespace, lease=lease, poll=0.25)
        while True:
            try:
                await store.__aenter__()
                break
            except Exception:
                await anyio.sleep(0.05)
        out.write(f"ready - 0 {time.time():.6f}\n")
        out.flush()
        limiter = anyio.CapacityLimiter(CONCURRENCY)
        async with anyio.create_task_group() as tg:
            while True:
                free = int(limiter.available_tokens)
                claims = await retrying(store.claim, owner, free) if free else []
                for claim in claims:
                    log(out, "claim", claim.entry.key, claim.token)
                    await limiter.acquire_on_behalf_of(claim.token)
                    tg.start_soon(_one, claim, store, out, limiter)
                if claims:
                    continue
                now = await retrying(store.time)
                head = await retrying(store.head)
                wait = 0.25 if head is None else max(0.0, min(head - now, 0.25))
                if free and wait > 0:
                    await retrying(store.wait_changed, wait)
                else:
                    await anyio.sleep(0.002)


async def _one(claim: Claim, store: Store, out: IO[str], limiter: anyio.CapacityLimiter) -> None:
    try:
        await run(claim, store, out)
    finally:
        limiter.release_on_behalf_of(claim.token)


if __name__ == "__main__":
    kind, url, namespace, path, backend, lease = sys.argv[1:7]
    anyio.run(main, kind, url, namespace, path, float(lease), backend=backend)
