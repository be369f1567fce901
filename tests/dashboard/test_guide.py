"""The dashboard guide's FastAPI app (docs/examples/dashboard_app.py) serves
its pages under /ops/duetime, to the people its ``authorize`` lets in."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import httpx
import pytest

from duetime.testing import hold_autojump

from .conftest import csrf_of, seed

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "dashboard_app.py"


async def test_the_guide_app(
    anyio_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the app's store is jobs.db in the working directory
    example = runpy.run_path(str(EXAMPLE))
    app, lifespan = example["app"], example["lifespan"]
    with hold_autojump():
        async with lifespan(app):
            await seed(example["store"])
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                assert (await client.get("/ops/duetime/")).status_code == 403  # nobody
                bo = {"x-forwarded-user": "bo"}
                page = await client.get("/ops/duetime/entry?key=dead-1", headers=bo)
                assert 'id="action-retry"' in page.text
                r = await client.post(
                    "/ops/duetime/act",
                    headers=bo,
                    data={"csrf": csrf_of(page.text), "action": "retry", "key": "dead-1"},
                )
                assert r.status_code == 303
                eve = {"x-forwarded-user": "eve"}
                page = await client.get("/ops/duetime/entry?key=dead-1", headers=eve)
                assert 'id="entry-status">PENDING<' in page.text
                assert "Read-only" in page.text
    assert (tmp_path / "jobs.db").exists()
