"""Every async test runs on asyncio and on trio, both on virtual time."""

from __future__ import annotations

from duetime.testing import anyio_backend_fixture

anyio_backend = anyio_backend_fixture()

# Real Redis servers for the RedisStore tests (skip locally without one; fail under CI=true).
pytest_plugins = ["tests.durable.redis_server"]
