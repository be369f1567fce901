"""Every async test runs on asyncio and on trio, both on virtual time."""

from __future__ import annotations

from duetime.testing import anyio_backend_fixture

anyio_backend = anyio_backend_fixture()
