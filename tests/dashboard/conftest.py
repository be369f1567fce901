"""Fixtures of the dashboard tests: a store of each kind, seeded with one entry
of every kind (and hostile ones), and an httpx client on the app's ASGI side."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetime.dashboard import create_app
from duetime.durable import Dead, Done, MemoryStore, NewRow, SQLiteStore, Store
from duetime.testing import hold_autojump

pytest.importorskip("jinja2")

#: What a hostile program could store: markup, template syntax, rich markup,
#: quotes, control characters, bidirectional overrides.
HOSTILE = [
    "<script>alert(1)</script>",
    "[bold]x[/bold]",
    "{{7*7}}",
    "\"'><img src=x onerror=alert(2)>",
    "ctl\x1b[31m\x00\x07end",
    "rtl\u202eevil",
]
SERIES = '{"v":1,"trigger":{"every":60.0},"start":%r,"misfire":"coalesce","overlap":"skip"}'


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Store]]:
    """A factory of the unopened store under test (Redis, PostgreSQL: the test servers)."""
    if store_kind == "memory":
        yield lambda: MemoryStore()
    elif store_kind == "sqlite":
        yield lambda: SQLiteStore(tmp_path / "jobs.db")
    else:  # the test servers (skipped without PostgreSQL, as the other Postgres tests)
        factory = request.getfixturevalue(f"{store_kind}_store")
        yield lambda: factory()


@pytest.fixture
async def store(anyio_backend: Any, make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    """The store under test, entered, on real time (SQLite's thread, Redis's socket)."""
    with hold_autojump():
        async with make_store() as s:
            yield s


async def seed(store: Store) -> None:
    """One entry of each kind: pending, running, completed, dead letter, series, hostile."""
    now = await store.time()
    await store.add(
        [
            NewRow(key="done-1", task="mail.send", payload='["a@example.com"]', due=now - 5),
            NewRow(key="dead-1", task="mail.send", payload="[2]", due=now - 4),
            NewRow(key="run-1", task="bill.charge", payload="[3]", due=now - 3),
            NewRow(key="pending-1", task="bill.charge", payload="[4]", due=now + 600),
            NewRow(key="pending-2", task="bill.charge", payload="[5]", due=now + 700),
            NewRow(
                key="every-minute",
                task="report",
                payload="[]",
                due=now + 30,
                schedule=SERIES % (now + 30),
            ),
        ]
    )
    claims = {c.entry.key: c for c in await store.claim("worker-1", 3)}
    assert set(claims) == {"done-1", "dead-1", "run-1"}
    await store.finish_many(
        [
            ("done-1", claims["done-1"].token, Done('["sent"]')),
            (
                "dead-1",
                claims["dead-1"].token,
                Dead("ValueError: no such account", "builtins.ValueError", "Traceback (...)\n  x"),
            ),
        ]
    )


async def seed_hostile(store: Store) -> None:
    """Hostile keys, arguments, task names and errors, each a dead letter with a traceback."""
    import json

    now = await store.time()
    # PostgreSQL text cannot hold NUL: there, the control characters come without it.
    nul = "" if type(store).__name__ == "PostgresStore" else "\x00"
    rows = [
        NewRow(
            key=f"h{i}-{text}".replace("\x00", nul),
            task=f"t{text}"[:40].replace("\x00", nul),
            payload=json.dumps([text.replace("\x00", nul), "x" * 5000]),
            due=now - 10 + i,
        )
        for i, text in enumerate(HOSTILE)
    ]
    await store.add(rows)
    claims = await store.claim("w<b>", len(rows))
    await store.finish_many(
        [
            (
                c.entry.key,
                c.token,
                Dead(f"err {c.entry.args[0]}", f"T{c.entry.args[0]}", "tb " * 9000),
            )
            for c in claims
        ]
    )


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no form with a CSRF token on the page"
    return found.group(1)


@pytest.fixture
def client_for(store: Store) -> Callable[..., httpx.AsyncClient]:
    """An httpx client on a dashboard of the store (``role``: what authorize returns)."""

    def make(role: str | None = "admin", **options: Any) -> httpx.AsyncClient:
        app = create_app(store, authorize=(lambda request: role), **options)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://dash")

    return make
