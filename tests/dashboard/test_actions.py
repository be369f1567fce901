"""The dashboard's actions: POST only, admin only, CSRF-checked, logged with
who did it; and no GET ever changes the store."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from duetime import Status
from duetime.dashboard import Grant, create_app
from duetime.durable import EntryQuery, Store

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio


async def snapshot(store: Store) -> list[tuple[str, Status, int, int]]:
    """Every entry's key, status, attempt and deliveries."""
    page = await store.page(EntryQuery(limit=1000))
    return [(e.key, e.status, e.attempt, e.deliveries) for e in page.entries]


async def test_retry_a_dead_letter(
    store: Store, client_for: Callable[..., httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    await seed(store)
    caplog.set_level(logging.INFO, logger="duetime.dashboard")
    async with client_for("admin") as client:
        page = await client.get("/entry?key=dead-1")
        assert 'id="action-retry"' in page.text
        r = await client.post(
            "/act", data={"csrf": csrf_of(page.text), "action": "retry", "key": "dead-1"}
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/entry?key=dead-1&done=retried"
        after = await client.get(r.headers["location"])
    assert 'id="entry-status">PENDING<' in after.text
    assert "Retried: the entry is PENDING again" in after.text
    e = await store.get("dead-1")
    assert e is not None
    assert e.status is Status.PENDING
    [record] = [r for r in caplog.records if r.name == "duetime.dashboard"]
    assert record.getMessage().startswith("dashboard: retry of 'dead-1' by 127.0.0.1:123: done")


@pytest.mark.parametrize(
    ("action", "key", "gone"), [("delete", "done-1", True), ("cancel", "pending-1", True)]
)
async def test_delete_and_cancel(
    store: Store,
    client_for: Callable[..., httpx.AsyncClient],
    action: str,
    key: str,
    gone: bool,
) -> None:
    await seed(store)
    async with client_for("admin") as client:
        token = csrf_of((await client.get(f"/entry?key={key}")).text)
        r = await client.post("/act", data={"csrf": token, "action": action, "key": key})
        assert r.status_code == 303
        assert (await store.get(key) is None) is gone
        # again: nothing left to change
        r = await client.post("/act", data={"csrf": token, "action": action, "key": key})
        assert r.headers["location"].endswith("done=unchanged")


async def test_a_running_entry_cannot_be_deleted(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    async with client_for("admin") as client:
        page = (await client.get("/entry?key=run-1")).text
        assert 'id="action-delete"' not in page
        token = csrf_of((await client.get("/entry?key=dead-1")).text)
        r = await client.post("/act", data={"csrf": token, "action": "delete", "key": "run-1"})
        assert r.headers["location"].endswith("done=unchanged")
    e = await store.get("run-1")
    assert e is not None
    assert e.status is Status.RUNNING


async def test_actions_need_the_csrf_token(
    store: Store, client_for: Callable[..., httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    await seed(store)
    before = await snapshot(store)
    async with client_for("admin") as client:
        token = csrf_of((await client.get("/entry?key=dead-1")).text)
        for data in (
            {"action": "retry", "key": "dead-1"},
            {"csrf": "", "action": "retry", "key": "dead-1"},
            {
                "csrf": token[:-1] + ("0" if token[-1] != "0" else "1"),
                "action": "retry",
                "key": "dead-1",
            },
        ):
            r = await client.post("/act", data=data)
            assert r.status_code == 403
        # the right token from another origin
        r = await client.post(
            "/act",
            data={"csrf": token, "action": "retry", "key": "dead-1"},
            headers={"origin": "http://evil.example"},
        )
        assert r.status_code == 403
        # the right token without its cookie (another browser)
        client.cookies.clear()
        r = await client.post("/act", data={"csrf": token, "action": "retry", "key": "dead-1"})
        assert r.status_code == 403
    assert await snapshot(store) == before
    assert any("bad CSRF token" in r.getMessage() for r in caplog.records)


async def test_a_viewer_cannot_act(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    before = await snapshot(store)
    async with client_for("viewer") as client:
        page = (await client.get("/entry?key=dead-1")).text
        assert 'id="action-retry"' not in page
        assert "Read-only" in page
        # a token is still made for the (absent) forms: a viewer with it is refused
        async with client_for("admin") as admin:
            token = csrf_of((await admin.get("/entry?key=dead-1")).text)
            client.cookies.update(admin.cookies)
        r = await client.post("/act", data={"csrf": token, "action": "retry", "key": "dead-1"})
        assert r.status_code == 403
        r = await client.post("/act-bulk", data={"csrf": token, "action": "delete"})
        assert r.status_code == 403
    assert await snapshot(store) == before


async def test_no_get_changes_anything(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    await seed(store)
    before = await snapshot(store)
    async with client_for("admin") as client:
        token = csrf_of((await client.get("/entry?key=dead-1")).text)
        for path in ("/", "/entries", "/series", "/dead-letters", "/entry?key=dead-1"):
            r = await client.get(path, params={"action": "delete", "key": "dead-1", "csrf": token})
            assert r.status_code == 200
        for path in ("/act", "/act-bulk"):
            r = await client.get(path, params={"action": "delete", "key": "dead-1", "csrf": token})
            assert r.status_code == 405
    assert await snapshot(store) == before


async def test_bulk_retry_and_delete_the_matching_dead_letters(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from .conftest import seed_hostile

    await seed(store)
    await seed_hostile(store)
    caplog.set_level(logging.INFO, logger="duetime.dashboard")
    failed = (await store.page(EntryQuery(status=Status.FAILED, limit=100))).entries
    assert len(failed) == 7
    app = create_app(store, authorize=lambda request: Grant("admin", "alice"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        token = csrf_of((await client.get("/dead-letters")).text)
        form = {"csrf": token, "action": "retry", "prefix": "h", "task": ""}
        r = await client.post("/act-bulk", data=form)
        assert r.status_code == 400  # not confirmed: nothing changed
        assert len((await store.page(EntryQuery(status=Status.FAILED))).entries) == 7
        r = await client.post("/act-bulk", data={**form, "confirm": "yes"})
        assert r.status_code == 303
        assert "done=bulk-retried" in r.headers["location"]
        assert "Retried 6 dead letters." in (await client.get(r.headers["location"])).text
        left = (await store.page(EntryQuery(status=Status.FAILED))).entries
        assert [e.key for e in left] == ["dead-1"]
        r = await client.post(
            "/act-bulk", data={"csrf": token, "action": "delete", "confirm": "yes"}
        )
        assert "Deleted 1 dead letters." in (await client.get(r.headers["location"])).text
    assert await store.get("dead-1") is None
    logged = [r.getMessage() for r in caplog.records if r.name == "duetime.dashboard"]
    assert logged == [
        "dashboard: bulk retry of the dead letters matching {'prefix': 'h'} by alice: 6 changed",
        "dashboard: bulk delete of the dead letters matching {} by alice: 1 changed",
    ]


async def test_a_form_that_is_not_a_form(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    async with client_for("admin") as client:
        r = await client.post("/act", json={"action": "retry", "key": "x"})
        assert r.status_code == 400
        r = await client.post(
            "/act",
            content=b"a" * 100_000,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 400


async def test_authorize_may_be_async_and_must_return_a_role(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def authorize(request: object) -> str:
        return "viewer"

    app = create_app(store, authorize=authorize)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as c:
        assert (await c.get("/")).status_code == 200
    bad = create_app(store, authorize=lambda request: "root")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=bad), base_url="http://d") as c:
        assert (await c.get("/")).status_code == 500
    [record] = [r for r in caplog.records if r.name == "duetime.dashboard"]
    assert "TypeError: authorize(request) must return" in record.getMessage()


def test_create_app_checks_its_arguments() -> None:
    from duetime.durable import MemoryStore

    with pytest.raises(TypeError, match="Store"):
        create_app(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="authorize"):
        create_app(MemoryStore(), authorize="admin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh"):
        create_app(MemoryStore(), refresh=-1)
    with pytest.raises(ValueError, match="role"):
        Grant("root")  # type: ignore[arg-type]


async def test_abort_a_running_entry_on_a_store_that_can(anyio_backend: Any) -> None:
    from duetime.durable import MemoryStore

    class AbortingStore(MemoryStore):
        """A store with ``abort`` (the protocol's abort, as stores that have it)."""

        def __init__(self) -> None:
            super().__init__()
            self.aborted: list[str] = []

        async def abort(self, key: str) -> bool:
            self.aborted.append(key)
            return True

    store = AbortingStore()
    await seed(store)
    app = create_app(store, authorize=lambda request: "admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        page = (await client.get("/entry?key=run-1")).text
        assert 'id="action-abort"' in page
        r = await client.post(
            "/act", data={"csrf": csrf_of(page), "action": "abort", "key": "run-1"}
        )
        assert r.headers["location"].endswith("done=aborted")
        assert "Abort requested" in (await client.get(r.headers["location"])).text
    assert store.aborted == ["run-1"]
    # the real abort: the RUNNING entry now carries the request
    real = MemoryStore()
    await seed(real)
    transport = httpx.ASGITransport(app=create_app(real, authorize=lambda request: "admin"))
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        page = (await client.get("/entry?key=run-1")).text
        r = await client.post(
            "/act", data={"csrf": csrf_of(page), "action": "abort", "key": "run-1"}
        )
        assert r.headers["location"].endswith("done=aborted")
    running = await real.get("run-1")
    assert running is not None
    assert running.abort_requested
