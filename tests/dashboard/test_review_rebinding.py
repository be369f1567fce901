"""DNS rebinding: ``python -m duetime dashboard``, bound to loopback, answers
only a request addressed to loopback (``localhost`` or an address), so a web
page whose name an attacker re-points at 127.0.0.1 cannot read the store
through it."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from .browser import seed_store, serve

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_loopback_server_refuses_other_host_names(tmp_path: Path, backend: str) -> None:
    db = tmp_path / "jobs.db"
    seed_store(db)
    with serve(db, tmp_path / "dashboard.log", backend=backend) as served:
        port = served.url.rsplit(":", 1)[1].strip("/")
        with httpx.Client(base_url=served.url) as client:
            for host, code in [
                (f"rebind.evil.example:{port}", 421),
                (f"localhost.evil.example:{port}", 421),
                ("rebind.evil.example", 421),
                (f"127.0.0.1:{port}", 200),
                (f"localhost:{port}", 200),
                (f"[::1]:{port}", 200),
            ]:
                for path in ("/", "/entries", "/static/refresh.js", "/login"):
                    r = client.get(path, headers={"host": host})
                    if path == "/login" and code == 200:
                        assert r.status_code == 401, (host, path)
                    else:
                        assert r.status_code == code, (host, path, r.status_code)
                    assert "invoice" not in r.text or code == 200
