"""Every page of the dashboard, on every store and both backends, through
httpx's ASGI transport: what it shows, its filters and pagination."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import quote

import httpx
import pytest

from duetime.durable import NewRow, Store

from .conftest import seed

pytestmark = pytest.mark.anyio

PAGES = ["/", "/entries", "/series", "/dead-letters", "/entry?key=dead-1"]


def keys_in(html: str) -> list[str]:
    """The entry keys a listing links to, in order."""
    return re.findall(r'<td class="key"><a href="/entry\?key=[^"]*">([^<]*)</a>', html)


async def test_every_page_answers(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("viewer") as client:
        for path in PAGES:
            r = await client.get(path)
            assert r.status_code == 200, (path, r.text[:500])
            assert r.headers["content-type"].startswith("text/html")
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "default-src 'none'" in csp
            assert "http" not in csp  # nothing from elsewhere: no CDN
        for name in ("refresh.js", "dashboard.css"):
            r = await client.get(f"/static/{name}")
            assert r.status_code == 200
            assert "http://" not in r.text
            assert "https://" not in r.text


async def test_overview_counts_charts_and_health(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("viewer") as client:
        html = (await client.get("/")).text
    pattern = r'<span class="n">(\d+)</span> <span class="what">(\w+)</span>'
    cards = {name: int(n) for n, name in re.findall(pattern, html)}
    assert cards == {
        "PENDING": 3,
        "RUNNING": 1,
        "COMPLETED": 1,
        "FAILED": 1,
        "CANCELLED": 0,
        "EXPIRED": 0,
        "total": 6,
    }
    assert f"Store <strong>{type(store).__name__}</strong>: healthy" in html
    assert html.count("<svg") == 2
    assert 'class="bar completed"' in html  # the run that completed this minute
    assert 'class="bar failed"' in html
    assert 'class="line max"' in html
    assert "2 runs finished in the last 60 min: 1 completed, 0 retried, 1 failed" in html
    assert "3 runs started in the last 60 min" in html
    assert re.search(r">bill\.charge</a></td>\s*<td><a [^>]*>2</a>", html)  # 2 PENDING


async def test_entries_filters(store: Store, client_for: Callable[..., httpx.AsyncClient]) -> None:
    await seed(store)
    now = await store.time()
    async with client_for("viewer") as client:

        async def keys(query: str) -> list[str]:
            r = await client.get(f"/entries?{query}")
            assert r.status_code == 200, r.text[:300]
            return keys_in(r.text)

        assert await keys("") == [
            "done-1", "dead-1", "run-1", "every-minute", "pending-1", "pending-2",
        ]  # fmt: skip
        assert await keys("status=PENDING") == ["every-minute", "pending-1", "pending-2"]
        assert await keys("status=failed") == ["dead-1"]
        assert await keys("task=bill.charge") == ["run-1", "pending-1", "pending-2"]
        assert await keys("prefix=pending-") == ["pending-1", "pending-2"]
        assert await keys(f"due_from={now + 100}") == ["pending-1", "pending-2"]
        assert await keys(f"due_before={now}&task=mail.send") == ["done-1", "dead-1"]
        r = await client.get("/entries?status=NOPE")
        assert r.status_code == 400
        assert "unknown status" in r.text
        r = await client.get("/entries?due_from=yesterday")
        assert r.status_code == 400


async def test_entries_paginate(store: Store, client_for: Callable[..., httpx.AsyncClient]) -> None:
    now = await store.time()
    await store.add(
        [NewRow(key=f"k{i:02d}", task="t", payload="[]", due=now + i // 3) for i in range(11)]
    )
    seen: list[str] = []
    async with client_for("viewer") as client:
        url = "/entries?limit=4"
        for _ in range(10):
            html = (await client.get(url)).text
            seen += keys_in(html)
            nxt = re.search(r'<a rel="next" href="([^"]+)"', html)
            if nxt is None:
                break
            url = nxt.group(1).replace("&amp;", "&")
            assert "limit=4" in url
    assert seen == [f"k{i:02d}" for i in range(11)]


async def test_one_entry_shows_everything(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("viewer") as client:
        dead = (await client.get("/entry?key=dead-1")).text
        running = (await client.get("/entry?key=run-1")).text
        done = (await client.get("/entry?key=done-1")).text
        missing = await client.get("/entry?key=nope")
    assert 'id="entry-status">FAILED<' in dead
    assert "ValueError: no such account" in dead
    assert "builtins.ValueError" in dead
    assert "Traceback (...)\n  x" in dead
    assert "held by <code>worker-1</code>" in running
    assert re.search(r"<th>Fencing token</th><td>[1-9]\d*</td>", running)
    assert "&#34;sent&#34;" in done  # the stored result, escaped
    assert missing.status_code == 404
    assert "No entry with this key" in missing.text


async def test_series_show_their_next_due_times(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("viewer") as client:
        html = (await client.get("/series")).text
    assert keys_in(html) == ["every-minute"]
    assert "every 60 s (coalesce, overlap skip)" in html
    times = re.findall(r'<li title="([^"]+)">', html)
    assert len(times) == 5
    assert times == sorted(set(times))  # five different times, in order


async def test_dead_letters_page(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("viewer") as client:
        html = (await client.get("/dead-letters")).text
        assert keys_in(html) == ["dead-1"]
        assert "Retry all matching" not in html  # a viewer has no actions
        assert keys_in((await client.get("/dead-letters?task=other")).text) == []
    async with client_for("admin") as client:
        assert "Retry all matching" in (await client.get("/dead-letters")).text


async def test_refused_and_unknown_requests(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    async with client_for(None) as client:
        for path in PAGES:
            assert (await client.get(path)).status_code == 403
    async with client_for("viewer") as client:
        assert (await client.get("/entry")).status_code == 400
        assert (await client.get("/nowhere")).status_code == 404
        assert (await client.get(f"/entry?key={quote('a&b=c')}")).status_code == 404


async def test_mounted_in_fastapi_under_a_prefix(store: Store) -> None:
    from fastapi import FastAPI

    from duetime.dashboard import create_app

    await seed(store)
    outer = FastAPI()
    outer.mount("/ops/duetime", create_app(store, authorize=lambda request: "admin"))
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        r = await client.get("/ops/duetime/")  # the first page sets the CSRF cookie
        assert "path=/ops/duetime/" in r.headers["set-cookie"].lower()
        html = (await client.get("/ops/duetime/entries")).text
        assert 'href="/ops/duetime/entry?key=dead-1"' in html
        assert 'href="/ops/duetime/static/dashboard.css"' in html
        assert (await client.get("/ops/duetime/static/refresh.js")).status_code == 200


async def test_a_store_that_does_not_answer(anyio_backend: object) -> None:
    from duetime.dashboard import create_app
    from duetime.durable import MemoryStore

    class Down(MemoryStore):
        async def time(self) -> float:
            raise ConnectionError("redis://:<secret>@db: connection refused <b>")

    app = create_app(Down(), authorize=lambda request: "viewer")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        for path in PAGES:
            r = await client.get(path)
            assert r.status_code == 503, path
            assert "The store did not answer: ConnectionError" in r.text
            assert "<b>" not in r.text
