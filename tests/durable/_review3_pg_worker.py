"""A worker process for the PostgreSQL piggyback crash test (run as a script).

Loops ``finish_and_claim`` on a PostgresStore: each call records the previous
batch's finishes and claims the next batch in one transaction.  Appends
``run KEY TOKEN`` per claim it got and ``done KEY TOKEN`` per finish that
applied, one line per write.

Usage: python _review3_pg_worker.py DSN SCHEMA OUT OWNER BACKEND
"""

from __future__ import annotations

import sys

import anyio

from duetime.durable import Done, Outcome, PostgresStore


async def main(dsn: str, schema: str, out: str, owner: str) -> None:
    with open(out, "a", buffering=1) as log:  # noqa: ASYNC230 (a test log, tiny writes)
        async with PostgresStore(dsn, schema=schema, lease=1.0, poll=0.05) as store:
            held: list[tuple[str, int, Outcome]] = []
            while True:
                results, claims = await store.finish_and_claim(held, owner, 5)
                for (key, token, _), ok in zip(held, results, strict=True):
                    if ok:
                        log.write(f"done {key} {token}\n")
                for c in claims:
                    log.write(f"run {c.entry.key} {c.token}\n")
                held = [(c.entry.key, c.token, Done()) for c in claims]
                await anyio.sleep(0.01 * len(claims))  # the runs
                if not claims:
                    if await store.head() is None:
                        return
                    await store.wait_changed(0.05)


if __name__ == "__main__":
    dsn, schema, out, owner, backend = sys.argv[1:6]
    anyio.run(main, dsn, schema, out, owner, backend=backend)
