"""A worker process for the multi-process crash test (run as a script, not collected).

Loops claim -> "run" -> finish on a SQLiteStore until nothing is left, and
appends one line per event to its own file: ``run KEY TOKEN`` before the
work, ``done KEY TOKEN`` after a fenced finish succeeded, ``fenced KEY TOKEN``
when the finish was refused (the lease had lapsed and another worker held it).

Usage: python _crash_worker.py DB OUT OWNER BACKEND RUN_SECONDS
"""

from __future__ import annotations

import sys

import anyio

from duetime.durable import Done, SQLiteStore


async def main(db: str, out: str, owner: str, run_s: float) -> None:
    # Line-buffered: each line is one write(), so SIGKILL tears at most the last one.
    with open(out, "a", buffering=1) as log:  # noqa: ASYNC230 (a test log, tiny writes)
        async with SQLiteStore(db, lease=1.0, poll=0.05) as store:
            while True:
                claims = await store.claim(owner, 10)
                if not claims:
                    if await store.head() is None:
                        return
                    await store.wait_changed(0.05)
                    continue
                for c in claims:
                    log.write(f"run {c.entry.key} {c.token}\n")
                    await anyio.sleep(run_s)
                    ok = (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
                    log.write(f"{'done' if ok else 'fenced'} {c.entry.key} {c.token}\n")


if __name__ == "__main__":
    db, out, owner, backend, run_s = sys.argv[1:6]
    anyio.run(main, db, out, owner, float(run_s), backend=backend)
