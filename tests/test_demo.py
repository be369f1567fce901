"""The demo tour runs to the end on both backends (on virtual time here)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from trio.testing import MockClock

from duetime._demo import _tour
from duetime.testing import VirtualTimeLoop


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("plain", [True, False])
def test_demo_tour(backend: str, plain: bool, capsys: pytest.CaptureFixture[str]) -> None:
    options: dict[str, Any] = (
        {"loop_factory": VirtualTimeLoop}
        if backend == "asyncio"
        else {"clock": MockClock(autojump_threshold=0)}
    )
    anyio.run(_tour, 2.0, plain, backend=backend, backend_options=options)
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "await handle -> 3" in out
    assert "8 runs" in out
    assert "worst offset from the grid: 0.00 ms" in out  # virtual time: no drift at all
    assert "reaped=3" in out
    assert "completed=9" in out
    assert "wasted=0.000 s" in out
    assert "9 orders handled" in out
    assert "every handle ended in a final state" in out
