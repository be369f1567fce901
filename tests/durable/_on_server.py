"""The conformance suites' wiring for a store on a real server (PostgreSQL or Redis).

The server answers over real sockets, so each test holds the virtual clock's
autojump (time flows at the real rate while the server replies).  The suite's
:meth:`advance` moves the stores' view of the server clock instead (the store's
test-only ``advance_clock`` offset), so leases and tombstones lapse without
waiting.  The tests that wait on the loop clock itself are re-stated with real
waits under 1 s: here what every such store shares, in each test module what
differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from duetime.durable import Store
from duetime.durable.conformance import StoreConformance
from duetime.testing import hold_autojump


class OnServer:
    """Makes the suite's stores with the fixture named :attr:`store_fixture`
    (``postgres_store`` or ``redis_store``: a factory of stores on the test's
    server, each test in a namespace of its own)."""

    store_fixture: ClassVar[str]
    stores: list[Any]
    factory: Callable[..., Any]

    @pytest.fixture(autouse=True)
    def _store_factory(self, request: pytest.FixtureRequest) -> None:
        self.factory = request.getfixturevalue(self.store_fixture)
        self.stores = []

    @pytest.fixture(autouse=True)
    async def _real_server(self, anyio_backend: Any) -> AsyncIterator[None]:
        with hold_autojump():
            yield

    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        store: Store = self.factory(poll=0.2, **options)
        self.stores.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        for store in self.stores:
            store.advance_clock(seconds)


class OnServerConformance(OnServer, StoreConformance):
    """The store suite on a server, with real waits where the suite waits on the loop clock."""

    async def test_wait_changed_times_out(self, store: Store) -> None:
        t0 = anyio.current_time()
        await store.wait_changed(0.5)  # two safety polls see the same head: no early return
        assert 0.5 <= anyio.current_time() - t0 < 1.5
