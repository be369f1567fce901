"""A real dashboard process and a real headless Chromium, for the browser tests
and for the screenshots in the docs (``docs/screenshots.py``).

Chromium is Debian's (``/usr/bin/chromium``, which ``.ci/run`` installs),
driven by Playwright over its own protocol: ``playwright install`` is never
run and nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from duetime.durable import Dead, Done, NewRow, NextOccurrence, RetryAt, SQLiteStore

__all__ = ["CHROMIUM", "ARGS", "Served", "chromium", "launch", "seed_store", "serve", "shoot"]

CHROMIUM = "/usr/bin/chromium"
#: Launch arguments: headless, sandbox off (CI runs as root), nothing fetched from the network.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "browser-test-token-0123456789"
SRC = str(Path(__file__).resolve().parents[2] / "src")


def chromium() -> str | None:
    """Debian's Chromium, if installed."""
    found = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(path: Path, rich: bool) -> None:
    """A store with one entry of each kind; ``rich`` adds an hour of activity
    and a few hundred entries (for the screenshots)."""
    now = time.time()
    clock = [now]
    async with SQLiteStore(path, clock=lambda: clock[0]) as store:
        series = json.dumps(
            {
                "v": 1,
                "trigger": {"every": 300.0},
                "start": now + 40,
                "misfire": "coalesce",
                "overlap": "skip",
            }
        )
        await store.add(
            [
                NewRow(
                    key="invoice-2024-0042",
                    task="billing.charge",
                    payload='[42, "EUR"]',
                    due=now - 30,
                ),
                NewRow(
                    key="report-nightly",
                    task="reports.build",
                    payload="[]",
                    due=now + 40,
                    schedule=series,
                ),
                NewRow(
                    key="mail-<script>", task="mail.send", payload='["<b>hi</b>"]', due=now + 900
                ),
            ]
        )
        [c] = await store.claim("web-1:4242", 1)
        await store.finish_many(
            [
                (
                    c.entry.key,
                    c.token,
                    Dead(
                        "ValueError: card declined",
                        "builtins.ValueError",
                        'Traceback (most recent call last):\n  File "billing.py", line 7,'
                        " in charge\n    raise ValueError('card declined')\nValueError: card"
                        " declined",
                    ),
                )
            ]
        )
        if not rich:
            return
        tasks = ["mail.send", "billing.charge", "reports.build", "images.resize"]
        for minute in range(60, 0, -1):
            clock[0] = now - minute * 60
            n = 3 + (minute * 7) % 11
            rows = [
                NewRow(
                    key=f"m{minute:02d}-{i}",
                    task=tasks[i % 4],
                    payload=json.dumps([i]),
                    due=clock[0] - (i % 5) * 0.8,
                )
                for i in range(n)
            ]
            await store.add(rows)
            claims = await store.claim(f"worker-{minute % 3}", n + 20)
            outcomes: list[Any] = []
            for i, cl in enumerate(claims):
                if i % 9 == 4:
                    outcomes.append((cl.entry.key, cl.token, RetryAt(clock[0] + 30, "timeout")))
                elif i % 13 == 6:
                    outcomes.append((cl.entry.key, cl.token, Dead("KeyError: 'user'")))
                elif cl.entry.schedule is not None:
                    outcomes.append((cl.entry.key, cl.token, NextOccurrence(clock[0] + 300)))
                else:
                    outcomes.append((cl.entry.key, cl.token, Done(json.dumps([i]))))
            await store.finish_many(outcomes)
        clock[0] = now
        await store.add(
            [
                NewRow(
                    key=f"later-{i:03d}",
                    task=tasks[i % 4],
                    payload=json.dumps([i]),
                    due=now + 60 + i * 7,
                )
                for i in range(120)
            ]
        )
        await store.claim("worker-0", 4)


def seed_store(path: Path, *, rich: bool = False) -> None:
    """Write the test store at ``path`` (see :func:`_seed`), in a thread of its
    own: Playwright's sync API keeps an event loop running in this one."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            anyio.run(_seed, path, rich)
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


@dataclass
class Served:
    """A running ``python -m duetime dashboard`` process."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)


@contextmanager
def serve(
    db: Path, log: Path, *, backend: str = "asyncio", extra: Sequence[str] = ()
) -> Iterator[Served]:
    """``python -m duetime dashboard`` on ``db`` with the admin token, on a free
    loopback port (``extra``: more arguments); stopped (SIGINT) afterwards."""
    port = _free_port()
    env = {**os.environ, "DUETIME_DASHBOARD_TOKEN": TOKEN, "PYTHONPATH": SRC}
    # A relative path (the process runs beside the file): what the header shows.
    cmd = [
        sys.executable,
        "-m",
        "duetime",
        "dashboard",
        "--store",
        f"sqlite:///{db.name}",
        "--port",
        str(port),
        "--backend",
        backend,
        *extra,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=db.parent
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the dashboard exited: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard never listened: {log.read_text()}") from None
                time.sleep(0.05)
        yield Served(f"http://127.0.0.1:{port}", TOKEN, process, log)
    finally:
        process.send_signal(2)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def launch() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser)."""
    from playwright.sync_api import sync_playwright

    path = chromium()
    assert path is not None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


PAGES = {
    "overview": "/",
    "entries": "/entries",
    "entry": "/entry?key=invoice-2024-0042",
    "series": "/series",
    "dead-letters": "/dead-letters",
}


def shoot(browser: Any, served: Served, out: Path) -> list[Path]:
    """A screenshot of every page, as the admin, into ``out/dashboard-NAME.png``."""
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(
        viewport={"width": 1280, "height": 860},
        http_credentials={"username": "admin", "password": served.token},
    )
    made = []
    try:
        page = context.new_page()
        page.goto(served.url + "/login")  # signed in: the pages show their actions
        for name, path in PAGES.items():
            page.goto(served.url + path)
            target = out / f"dashboard-{name}.png"
            page.screenshot(path=str(target), full_page=False)
            made.append(target)
    finally:
        context.close()
    return made
