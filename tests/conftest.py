"""Every async test runs on asyncio and on trio, both on virtual time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from duetime.testing import anyio_backend_fixture, hold_autojump

anyio_backend = anyio_backend_fixture()

# Real Redis and PostgreSQL servers for the store tests (skip locally without
# one; fail under CI=true).
pytest_plugins = ["tests.durable.redis_server", "tests.durable.postgres_server"]


@pytest.fixture
async def real_time() -> AsyncIterator[None]:
    """Hold virtual time still while the test waits on a real server or process."""
    with hold_autojump():
        yield
