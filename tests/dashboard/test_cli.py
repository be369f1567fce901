"""``python -m duetime dashboard``: its help, its checks, its errors without
credentials, and a real server process with and without the admin token."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .browser import SRC, TOKEN, seed_store, serve

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m duetime dashboard ARGS`` (without a token unless ``env`` gives one)."""
    full = {k: v for k, v in os.environ.items() if k != "DUETIME_DASHBOARD_TOKEN"}
    full.update(PYTHONPATH=SRC, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "duetime", "dashboard", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=120,
    )


def test_help_names_the_token_variable_and_the_loopback_default() -> None:
    done = run("--help")
    assert done.returncode == 0
    assert "DUETIME_DASHBOARD_TOKEN" in done.stdout
    assert "127.0.0.1" in done.stdout
    assert "--backend {asyncio,trio}" in done.stdout


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    done = run("--store", "memory://", env={"DUETIME_DASHBOARD_TOKEN": "short"})
    assert done.returncode == 2
    assert "at least 16 characters" in done.stderr


def test_without_the_token_a_missing_store_is_never_created(tmp_path: Path) -> None:
    done = run("--store", "sqlite:///missing.db", "--port", "1", cwd=tmp_path)
    assert done.returncode == 2
    assert "missing.db" in done.stderr
    assert not (tmp_path / "missing.db").exists()  # opened read-only


def test_the_store_url_is_redacted(tmp_path: Path) -> None:
    url = "redis://ops:hunter2-secret@127.0.0.1:1/0"
    done = run("--store", url, env={"DUETIME_DASHBOARD_TOKEN": "x" * 20})
    assert done.returncode == 2
    out = done.stdout + done.stderr
    assert "hunter2" not in out
    assert "redis://ops:***@127.0.0.1:1/0" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_real_server_with_the_admin_token(tmp_path: Path, backend: str) -> None:
    db = tmp_path / "jobs.db"
    seed_store(db)
    with serve(db, tmp_path / "dashboard.log", backend=backend) as served:
        with httpx.Client(base_url=served.url) as viewer:
            page = viewer.get("/entry", params={"key": "invoice-2024-0042"})
            assert page.status_code == 200
            assert 'id="action-retry"' not in page.text
            assert viewer.get("/login").status_code == 401
        auth = "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()
        with httpx.Client(base_url=served.url, headers={"authorization": auth}) as admin:
            page = admin.get("/entry", params={"key": "invoice-2024-0042"})
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            r = admin.post(
                "/act", data={"csrf": token[1], "action": "retry", "key": "invoice-2024-0042"}
            )
            assert r.status_code == 303
            after = admin.get(r.headers["location"])
            assert 'id="entry-status">PENDING<' in after.text
    log = served.log.read_text()
    assert "retry of 'invoice-2024-0042' by ops (admin token): done" in log
    assert TOKEN not in log
    assert served.process.returncode == 130  # stopped by SIGINT, on either server


@pytest.mark.parametrize(("flag", "secure"), [((), False), (("--secure-cookies",), True)])
def test_secure_cookies_marks_the_cookie_behind_a_tls_proxy(
    tmp_path: Path, flag: tuple[str, ...], secure: bool
) -> None:
    # Behind a proxy that terminates TLS the server sees plain HTTP: only the
    # flag can tell it to keep the cookie off plain connections.
    db = tmp_path / "jobs.db"
    seed_store(db)
    with serve(db, tmp_path / "dashboard.log", extra=flag) as served:
        auth = "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()
        with httpx.Client(base_url=served.url, headers={"authorization": auth}) as admin:
            page = admin.get("/entry", params={"key": "invoice-2024-0042"})
            assert page.status_code == 200
            [cookie] = page.headers.get_list("set-cookie")
            assert ("; secure" in cookie.lower()) is secure
            assert "httponly" in cookie.lower()
