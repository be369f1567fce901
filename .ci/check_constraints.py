"""Fail if the running environment holds a package that .ci/constraints.txt does
not pin at the installed version.

Usage: ``python .ci/check_constraints.py .ci/constraints.txt``, with the
environment's own Python.  CI runs it in each venv it made, after every install:
a dependency added to an extra (or a new transitive one) without
``bash .ci/refresh-constraints`` would otherwise install unpinned, silently.
The project itself and the venv's own pip, setuptools and wheel are left out.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import distributions
from pathlib import Path

SKIP = {"duetime", "pip", "setuptools", "wheel"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    pins: dict[str, str] = {}
    for line in Path(argv[0]).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                print(f"{argv[0]}: not an exact pin: {line}", file=sys.stderr)
                return 1
            pins[canonical(name)] = version.strip()
    problems = []
    installed = 0
    for dist in distributions():
        name = canonical(dist.metadata["Name"])
        if name in SKIP:
            continue
        installed += 1
        if name not in pins:
            problems.append(f"{name} {dist.version} is installed but not pinned")
        elif pins[name] != dist.version:
            problems.append(f"{name} {dist.version} is installed, {pins[name]} is pinned")
    for problem in problems:
        print(f"{sys.prefix}: {problem}", file=sys.stderr)
    if problems:
        print("refresh the pins on purpose: bash .ci/refresh-constraints", file=sys.stderr)
        return 1
    print(f"{sys.prefix}: {installed} packages, each at its pinned version")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
