"""Every async test runs on asyncio and on trio, both on virtual time."""

from __future__ import annotations

from typing import Any

import pytest
from trio.testing import MockClock

try:
    from duetime.testing import VirtualTimeLoop
except ImportError:  # pragma: no cover - until duetime.testing lands
    VirtualTimeLoop = None


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if request.param == "trio":
        return ("trio", {"clock": MockClock(autojump_threshold=0)})
    if VirtualTimeLoop is None:
        return ("asyncio", {})
    return ("asyncio", {"loop_factory": VirtualTimeLoop})
