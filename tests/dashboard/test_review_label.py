"""A careless operator labels the dashboard with the store's URL as configured,
credentials and all: the header shows it without them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from duetime.dashboard import create_app
from duetime.durable import MemoryStore

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "label",
    [
        "redis://:hunter2@db.internal:6379/0",
        "postgresql://app:hunter2@db.internal/jobs?sslmode=require",
        "postgresql://app@db.internal/jobs?password=hunter2",
    ],
)
async def test_a_label_with_credentials(anyio_backend: Any, label: str) -> None:
    async with MemoryStore() as store:
        app = create_app(store, label=label)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            for path in ("/", "/entries", "/entry?key=x"):
                r = await client.get(path)
                assert "hunter2" not in r.text
                assert "db.internal" in r.text
                assert "***" in r.text
