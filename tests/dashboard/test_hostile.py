"""Hostile values in a store (keys, task names, arguments, errors, tracebacks)
and in the query string show as text on every page: escaped, controls made
visible, huge values cut."""

from __future__ import annotations

import html as htmllib
import re

import httpx
import pytest

from duetime.dashboard import create_app
from duetime.durable import EntryQuery, Store

from .conftest import HOSTILE, csrf_of, seed, seed_hostile

pytestmark = pytest.mark.anyio

#: What must never reach a page as it is.
RAW = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "\x1b",
    "\x00",
    "\x07",
    "\u202e",
]


def check(page: str) -> None:
    for raw in RAW:
        assert raw not in page, repr(raw)


async def test_hostile_values_on_every_page(store: Store) -> None:
    await seed(store)
    await seed_hostile(store)
    app = create_app(store, authorize=lambda request: "admin", title=HOSTILE[0], label=HOSTILE[3])
    transport = httpx.ASGITransport(app=app)
    keys = [e.key for e in (await store.page(EntryQuery(key_prefix="h"))).entries]
    assert len(keys) == len(HOSTILE)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        pages: list[tuple[str, dict[str, str]]] = [
            (path, {}) for path in ("/", "/entries", "/series", "/dead-letters")
        ]
        pages += [("/entries", {"task": t, "prefix": t}) for t in HOSTILE]
        pages += [("/dead-letters", {"prefix": t}) for t in HOSTILE]
        seen = ""
        for path, params in pages:
            r = await client.get(path, params=params)
            assert r.status_code == 200, (path, params)
            check(r.text)
            seen += r.text
        for key in keys:
            r = await client.get("/entry", params={"key": key})
            assert r.status_code == 200, key
            check(r.text)
            seen += r.text
            # the action's form carries the key whole (percent-encoded)
            field = re.search(r'name="key" value="([^"]*)"', r.text)
            assert field is not None
            form = {"csrf": csrf_of(r.text), "action": "retry", "key": htmllib.unescape(field[1])}
            r = await client.post("/act", data=form)
            assert r.status_code == 303
            assert "done=retried" in r.headers["location"], key
            assert (await store.get(key)).status.value == "PENDING"  # type: ignore[union-attr]
        # a filter value that is not a time is reported, escaped
        r = await client.get("/entries", params={"due_from": HOSTILE[0]})
        assert r.status_code == 400
        check(r.text)
    assert htmllib.escape(HOSTILE[0]) in seen  # shown as text
    assert "[bold]x[/bold]" in seen
    assert "t{{7*7}}" in seen  # a task name with template syntax, never evaluated
    assert "ctl\\x1b[31m\\x00\\x07end" in seen  # controls made visible
    assert "rtl\\u202eevil" in seen
    assert "more characters)" in seen  # 5000-character arguments cut in listings
    assert htmllib.escape("w<b>") not in seen  # a RUNNING owner only: these finished


async def test_a_huge_traceback_is_shown_whole_but_escaped(store: Store) -> None:
    await seed_hostile(store)
    app = create_app(store)
    transport = httpx.ASGITransport(app=app)
    key = (await store.page(EntryQuery(key_prefix="h0"))).entries[0].key
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        page = (await client.get("/entry", params={"key": key})).text
    check(page)
    assert page.count("tb ") >= 9000 * 0.9  # stores keep the end of a long traceback


async def test_a_key_that_is_not_utf8(store_kind: str, store: Store) -> None:
    if store_kind != "redis":
        pytest.skip("only Redis keeps keys as bytes: other stores refuse such a key at add")
    from duetime.durable import NewRow

    key = "bad-\udcff-key"  # bytes b"bad-\xff-key", as a store that read them reports them
    await store.add([NewRow(key=key, task="t", payload="[]", delay=0.0)])
    app = create_app(store, authorize=lambda request: "admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        for path in ("/", "/entries", "/dead-letters"):
            r = await client.get(path)
            assert r.status_code == 200, path
            check(r.text)
        assert (
            "bad-\\udcff-key" in r.text or "bad-\\udcff-key" in (await client.get("/entries")).text
        )
