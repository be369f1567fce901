"""A usage error of ``python -m duetime`` never shows a store URL's credentials.

argparse quotes what was typed in some errors ("unrecognized arguments: ..."):
a store URL given twice, or one left over after a typo, must be shown redacted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import duetime
from duetime.durable._redact import redact_text

SRC = str(Path(duetime.__file__).resolve().parents[1])
SECRET = "s3cretPW"


@pytest.mark.parametrize(
    "argv",
    [
        ["entries", "--store", "sqlite:///jobs.db", f"redis://:{SECRET}@127.0.0.1:1/0"],
        ["retry", "--store", "sqlite:///jobs.db", "--key", "a", f"redis://u:{SECRET}@h/0"],
        ["entries", "--store", "sqlite:///jobs.db", f"redis://h/0?password={SECRET}"],
    ],
)
def test_unrecognized_arguments_are_shown_without_credentials(
    tmp_path: Path, argv: list[str]
) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [sys.executable, "-m", "duetime", *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unrecognized arguments" in proc.stderr
    assert "***" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "jobs.db").exists()  # nothing ran


def test_redact_text_redacts_every_url_in_a_message() -> None:
    text = f"unrecognized arguments: redis://:{SECRET}@h/0 x 'rediss://u:{SECRET}@h:1/2' y"
    shown = redact_text(text)
    assert SECRET not in shown
    assert shown == "unrecognized arguments: redis://:***@h/0 x 'rediss://u:***@h:1/2' y"
    assert redact_text("no url here") == "no url here"
