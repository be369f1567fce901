"""Run CPython's own asyncio tests against ``duetime.testing.VirtualTimeLoop``.

Usage: ``python .ci/asyncio_conformance.py [MODULE ...]`` (default: all of
:data:`MODULES`). Each module runs in its own subprocess with a time limit, with
every event loop the tests create replaced by a ``VirtualTimeLoop`` in its
DEFAULT settings:

* ``asyncio.new_event_loop()``, ``asyncio.run()``, ``asyncio.Runner`` and
  ``unittest.IsolatedAsyncioTestCase`` get one through the default policy's
  loop factory (patched on the class, so a test that resets the policy still
  gets a virtual loop);
* test_events' selector-loop test classes (``SelectEventLoopTests``,
  ``PollEventLoopTests``, ``EPollEventLoopTests``) get one wrapping the selector
  they were written for.

Tests that cannot pass under virtual time are listed, each with its reason, in
``asyncio_conformance_exclusions.txt`` next to this script; they are skipped.
Every other test must pass. An exclusion that no longer matches a test is an
error too, so the list cannot rot.

Exit status: 0 when every module passed (or the interpreter ships without the
``test`` package: then the job is skipped with a message), 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
EXCLUSIONS = HERE / "asyncio_conformance_exclusions.txt"

#: Modules of ``test.test_asyncio`` to run, with each one's time limit in real seconds.
MODULES: dict[str, float] = {
    "test_events": 150.0,
    "test_streams": 60.0,
    "test_tasks": 90.0,
    "test_timeouts": 30.0,
    "test_taskgroups": 30.0,
    "test_waitfor": 30.0,
    # Beyond the required six: these exercise real I/O, TLS with peer threads
    # and child processes while timeouts are pending.
    "test_ssl": 90.0,
    "test_sslproto": 60.0,
    "test_subprocess": 90.0,
}

#: test_events' selector-loop test classes whose loop is replaced.
SELECTOR_CLASSES = ("SelectEventLoopTests", "PollEventLoopTests", "EPollEventLoopTests")


def load_exclusions() -> dict[str, str]:
    """Parse the exclusion list: ``<test id>  # <reason>`` per line; ``#`` lines are comments."""
    excluded: dict[str, str] = {}
    for number, raw in enumerate(EXCLUSIONS.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        test_id, sep, reason = line.partition("#")
        test_id, reason = test_id.strip(), reason.strip()
        if not sep or not reason:
            raise SystemExit(f"{EXCLUSIONS.name}:{number}: an exclusion needs a '# reason'")
        excluded[test_id] = reason
    return excluded


def _iter_tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    found: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            found.extend(_iter_tests(item))
        else:
            found.append(item)
    return found


def run_module(name: str) -> int:
    """Child process: run one module on VirtualTimeLoop; print a summary line; return 0/1."""
    sys.path.insert(0, str(SRC))
    import asyncio
    import selectors

    from duetime.testing import VirtualTimeLoop

    created = 0

    class CountingVirtualTimeLoop(VirtualTimeLoop):
        # Counting proves the tests really ran on the virtual loop.
        def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
            nonlocal created
            created += 1
            super().__init__(selector)

    policy_class = type(asyncio.get_event_loop_policy())
    policy_class._loop_factory = CountingVirtualTimeLoop  # type: ignore[attr-defined]

    module = importlib.import_module(f"test.test_asyncio.{name}")
    if name == "test_events":
        for class_name in SELECTOR_CLASSES:
            cls = getattr(module, class_name, None)
            if cls is None:
                continue
            selector_class: type[selectors.BaseSelector] = {
                "SelectEventLoopTests": selectors.SelectSelector,
                "PollEventLoopTests": getattr(selectors, "PollSelector", selectors.SelectSelector),
                "EPollEventLoopTests": getattr(
                    selectors, "EpollSelector", selectors.SelectSelector
                ),
            }[class_name]

            def create_event_loop(
                self: object, _selector: type[selectors.BaseSelector] = selector_class
            ) -> VirtualTimeLoop:
                return CountingVirtualTimeLoop(_selector())

            cls.create_event_loop = create_event_loop

    excluded = load_exclusions()
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    tests = _iter_tests(suite)
    prefix = f"{module.__name__}."
    mine = {k.removeprefix(prefix): v for k, v in excluded.items() if k.startswith(prefix)}
    seen: set[str] = set()
    for test in tests:
        short = test.id().removeprefix(prefix)
        reason = mine.get(short)
        if reason is not None:
            seen.add(short)
            method = getattr(test, test._testMethodName)
            setattr(
                test,
                test._testMethodName,
                unittest.skip(f"excluded under virtual time: {reason}")(method),
            )
    stale = sorted(set(mine) - seen)

    verbosity = 2 if os.environ.get("CONFORMANCE_VERBOSE") else 1
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=verbosity)
    result = runner.run(unittest.TestSuite(tests))
    passed = result.testsRun - len(result.failures) - len(result.errors) - len(result.skipped)
    n_excluded = len(seen)
    other_skips = len(result.skipped) - n_excluded
    print(
        f"RESULT {name} passed={passed} failed={len(result.failures) + len(result.errors)} "
        f"excluded={n_excluded} skipped={other_skips} virtual_loops={created}",
        flush=True,
    )
    for test_id in stale:
        print(f"STALE exclusion (no such test): {prefix}{test_id}", flush=True)
    ok = result.wasSuccessful() and not stale and created > 0
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    """Parent: one subprocess per module, with its time limit; print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return run_module(args.modules[0])

    try:
        importlib.import_module("test.test_asyncio")
    except ImportError as exc:
        print(
            f"SKIPPED: this interpreter ({sys.executable}, {sys.version.split()[0]}) ships "
            f"without CPython's test package ({exc}); nothing to run",
        )
        return 0

    failed: list[str] = []
    started_all = time.perf_counter()
    for name in args.modules:
        limit = MODULES.get(name, 120.0)
        started = time.perf_counter()
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
            err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode()
            sys.stderr.write(err[-20000:])
            print(out, end="")
            print(f"{name}: TIMED OUT after {limit:.0f} s")
            failed.append(name)
            continue
        elapsed = time.perf_counter() - started
        summary = [
            line for line in proc.stdout.splitlines() if line.startswith(("RESULT", "STALE"))
        ]
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-20000:])
            failed.append(name)
        for line in summary:
            print(line)
        if not summary:
            print(f"{name}: the child died with status {proc.returncode}")
        print(f"  {name}: {'ok' if proc.returncode == 0 else 'FAILED'} in {elapsed:.1f} s")
    total = time.perf_counter() - started_all
    print(f"asyncio conformance on VirtualTimeLoop: {total:.1f} s wall")
    if failed:
        print(f"FAILED modules: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
