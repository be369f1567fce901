"""Write the dashboard's screenshots in docs/img/ (dashboard-*.png).

The same browser code as the browser tests (tests/dashboard/browser.py): a
real ``python -m duetime dashboard`` process on a seeded SQLite store, and
Debian's headless Chromium driven by Playwright.  Run from the checkout:

    .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    env = {**os.environ, "DUETIME_SCREENSHOTS": str(ROOT / "docs" / "img")}
    test = "tests/dashboard/test_browser.py::test_screenshots"
    sys.exit(subprocess.call([sys.executable, "-m", "pytest", "-q", test], cwd=ROOT, env=env))
