"""The store commands of the command line: ``entries``, ``dead-letters``, ``retry``,
``delete``, ``abort``.

Listing opens the store read-only (``open_store(url, read_only=True)``): it
never creates a store, never writes to one, and works on a read-only file or
mount.  ``retry`` and ``delete`` select their entries on a read-only store
too, show what they selected, and open the store for writing only to change
what was selected, through the Store protocol (``retry``, ``delete``: what
``Scheduler.retry_deferred`` and ``delete_deferred`` call).  A change of every
dead letter of a task, or of all of them, needs ``--yes``; ``--dry-run`` shows
the selection and changes nothing.  ``abort`` takes keys only: it deletes a
pending or failed entry and aborts a running one (``Store.abort``: what
``Scheduler.cancel_deferred(key, abort=True)`` calls), whichever process runs it.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio

from .._vocab import Status
from ._cli_run import ERROR, EXIT_CODES
from ._cli_show import print_entries, visible
from ._store import Entry, Store

__all__ = ["STORE_COMMANDS", "add_store_commands", "run_store_command"]

STORE_COMMANDS = ("entries", "dead-letters", "retry", "delete", "abort")
ALL = sys.maxsize  # a store's "no limit"
DEFAULT_LIMIT = 1000
PARTLY = 3  # exit status: some entries named with --key were skipped
_PAST = {"retry": "retried", "delete": "deleted"}

_CHANGE_CODES = EXIT_CODES.replace(
    "  0    done\n",
    "  0    every selected entry was changed (or would be, with --dry-run),\n"
    "       or --task/--all-failed selected none\n",
).replace(
    "  130 ",
    "  2    also: --task or --all-failed without --yes (nothing was changed)\n"
    "  3    some entries named with --key were skipped (absent, or not in a\n"
    "       state that allows it); the others were changed\n"
    "  130 ",
)

_ABORT_CODES = EXIT_CODES.replace(
    "  0    done\n",
    "  0    every named entry was aborted or deleted (or would be, with --dry-run)\n",
).replace(
    "  130 ",
    "  3    some named entries were skipped (absent or finished); the others\n"
    "       were aborted or deleted\n"
    "  130 ",
)


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0: every entry)")
    return n


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not s > 0:  # rejects nan too
        raise argparse.ArgumentTypeError("must be > 0 (inf: wait as long as it takes)")
    return s


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="URL", help="e.g. sqlite:///jobs.db")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="give up when the store does not answer within this (10; per step)",
    )


def _listing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", metavar="NAME", help="only entries of this task")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--plain", action="store_true", help="plain text, even on a terminal")
    p.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most N entries, by due time ({DEFAULT_LIMIT}; 0: all); when"
        " more are stored, stderr says so",
    )
    p.add_argument("--all", action="store_true", help="list every entry (--limit 0)")


def _parser(sub: Any, name: str, help: str, description: str, codes: str) -> Any:
    return sub.add_parser(
        name,
        help=help,
        description=textwrap.fill(description, 78),
        epilog=codes,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_store_commands(sub: Any) -> None:
    """Add ``entries``, ``dead-letters``, ``retry``, ``delete`` and ``abort`` to
    argparse subparsers."""
    entries = _parser(
        sub,
        "entries",
        "list the entries of a durable store",
        "List a store's entries by due time: a table on a terminal, plain text"
        " otherwise, or JSON lines. The store is opened read-only: listing never"
        " creates or changes one.",
        EXIT_CODES,
    )
    _common(entries)
    entries.add_argument("--failed", action="store_true", help="dead letters only")
    _listing(entries)
    dead = _parser(
        sub,
        "dead-letters",
        "list the dead letters (FAILED entries) of a durable store",
        "List the dead letters of a store (entries whose retries ran out, whose"
        " task a worker did not know, whose payload it could not decode, or that"
        " killed their workers), with the reason. Read-only, like entries.",
        EXIT_CODES,
    )
    _common(dead)
    _listing(dead)
    for name, verb, extra in (
        (
            "retry",
            "retry",
            "A retried entry is PENDING again, due now, at attempt 1: a worker that"
            " knows its task runs it.",
        ),
        (
            "delete",
            "delete",
            "Deleting is final. Only dead letters are deleted, unless --any-status"
            " lets --key delete a pending or finished entry too (never a running one).",
        ),
    ):
        p = _parser(
            sub,
            name,
            f"{verb} dead letters, by key or by task",
            f"{verb.capitalize()} dead letters: the ones named by --key, every one of"
            f" a task (--task), or every one (--all-failed). {extra} The selection is"
            " printed first; --dry-run stops there, and --task or --all-failed need"
            " --yes to change anything.",
            _CHANGE_CODES,
        )
        _common(p)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--key", action="append", metavar="KEY", help="an entry's key (repeatable)"
        )
        which.add_argument("--task", metavar="NAME", help="every dead letter of this task")
        which.add_argument("--all-failed", action="store_true", help="every dead letter")
        p.add_argument("--dry-run", action="store_true", help="show the selection, change nothing")
        p.add_argument("--yes", action="store_true", help="confirm --task or --all-failed")
        if name == "delete":
            p.add_argument(
                "--any-status",
                action="store_true",
                help="with --key: delete a pending or finished entry too (not a running one)",
            )
    abort = _parser(
        sub,
        "abort",
        "abort running entries (and delete pending ones), by key",
        "Abort the entries named by --key: a running one is aborted (the worker"
        " holding it, on any host, cancels its run; a sync task stops when it next"
        " checks current_entry().abort_requested) and ends CANCELLED, not retried;"
        " a series stops. A pending or failed one is deleted. A finished one is"
        " skipped. The selection is printed first; --dry-run stops there.",
        _ABORT_CODES,
    )
    _common(abort)
    abort.add_argument(
        "--key", action="append", required=True, metavar="KEY", help="an entry's key (repeatable)"
    )
    abort.add_argument("--dry-run", action="store_true", help="show the selection, change nothing")


def run_store_command(args: argparse.Namespace) -> int:
    """Run a parsed store command; return its exit status (errors raise)."""
    if args.command in ("entries", "dead-letters"):
        return _list_command(args)
    if args.command == "abort":
        return _abort_command(args)
    return _change_command(args)


# -- listing -------------------------------------------------------------------------


@asynccontextmanager
async def _deadline(seconds: float, what: str) -> AsyncIterator[anyio.CancelScope]:
    """A TimeoutError that says what did not answer, after ``seconds`` (inf: none);
    the caller may move the yielded scope's deadline for each step."""
    try:
        with anyio.fail_after(None if math.isinf(seconds) else seconds) as scope:
            yield scope
    except TimeoutError:
        raise TimeoutError(
            f"the store did not answer within {seconds:g} s ({what}; --timeout sets the limit)"
        ) from None


async def _fetch(
    url: str, status: Status | None, task: str | None, limit: int, timeout: float
) -> tuple[list[Entry], bool]:
    """Up to ``limit`` entries (0: all) and whether more are stored."""
    from ._url import open_store

    store = open_store(url, read_only=True)
    async with _deadline(timeout, "opening and listing it"), store:
        # One more than asked tells whether there are more; a task filter
        # is applied here, so it needs every row of the status.
        want = ALL if limit == 0 or task is not None else limit + 1
        rows = await store.entries(status=status, limit=want)
    if task is not None:
        rows = [e for e in rows if e.task == task]
    more = limit > 0 and len(rows) > limit
    return (rows[:limit] if limit else rows), more


def _list_command(args: argparse.Namespace) -> int:
    failed = args.command == "dead-letters" or args.failed
    limit = 0 if args.all else args.limit
    rows, more = anyio.run(
        _fetch, args.store, Status.FAILED if failed else None, args.task, limit, args.timeout
    )
    print_entries(rows, as_json=args.json, plain=args.plain)
    if more:
        what = "dead letters" if failed else "entries"
        print(
            f"duetime {args.command}: showing the first {limit} {what} by due time; more"
            " are stored (--limit N for more, --all for every one)",
            file=sys.stderr,
        )
    return 0


# -- retry and delete ----------------------------------------------------------------


def _describe(e: Entry) -> str:
    error = visible(e.last_error or "")
    text = f"{visible(e.key)}  (task {visible(e.task)}, {e.status}, attempt {e.attempt})"
    return f"{text}: {error}" if error else text


async def _select(
    args: argparse.Namespace,
) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The entries to change, and the ``(key, reason)`` of keys that are skipped."""
    from ._url import open_store

    picked: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    any_status = getattr(args, "any_status", False)
    store = open_store(args.store, read_only=True)
    async with _deadline(args.timeout, "opening it and selecting entries"), store:
        if not args.key:
            rows = await store.entries(status=Status.FAILED, limit=ALL)
            return [e for e in rows if args.task is None or e.task == args.task], []
        for key in dict.fromkeys(args.key):  # each key once, in the given order
            e = await store.get(key)
            if e is None:
                skipped.append((key, "no such entry"))
            elif e.status is Status.FAILED or (any_status and e.status is not Status.RUNNING):
                picked.append(e)
            elif e.status is Status.RUNNING:
                skipped.append((key, "RUNNING: a worker holds it"))
            else:
                hint = " (--any-status deletes it)" if args.command == "delete" else ""
                skipped.append((key, f"{e.status}, not a dead letter{hint}"))
    return picked, skipped


async def _apply(args: argparse.Namespace, picked: Sequence[Entry]) -> list[tuple[str, str]]:
    """Retry or delete ``picked``; the ``(key, reason)`` of those that changed meanwhile.

    Through the Store protocol itself (``retry``, ``delete``): a dead letter set
    aside for a malformed row may have a key that ``retry_deferred`` would refuse
    as unprintable, and it must still be removable.
    """
    from ._url import open_store

    missed: list[tuple[str, str]] = []
    store = open_store(args.store)
    past = _PAST[args.command]
    any_status = getattr(args, "any_status", False)
    # One scope whose deadline moves on with each step: a store's task groups
    # (RedisStore's) must be entered and left inside the same cancel scope.
    async with _deadline(args.timeout, "opening it, or changing an entry") as scope, store:
        for e in picked:
            scope.deadline = anyio.current_time() + args.timeout
            if args.command == "retry":
                done = await store.retry(e.key)  # FAILED rows only, in the store's own write
            elif any_status or await _still_failed(store, e.key):
                # Store.delete takes any row that is not running: a dead letter
                # retried since it was selected is left alone.
                done = await store.delete(e.key)
            else:
                done = False
            if done:
                print(f"{past}  {_describe(e)}", flush=True)
            else:
                missed.append((e.key, "changed since it was selected (running, or gone)"))
    return missed


async def _still_failed(store: Store, key: str) -> bool:
    """Whether the row under ``key`` is still a dead letter."""
    now = await store.get(key)
    return now is not None and now.status is Status.FAILED


def _change_command(args: argparse.Namespace) -> int:
    verb, past = args.command, _PAST[args.command]
    bulk = not args.key
    picked, skipped = anyio.run(_select, args)
    for key, reason in skipped:
        print(f"skipped  {visible(key)}: {reason}")
    if args.task is not None:
        noun = f"dead letters of task {visible(args.task)!r}"
    else:
        noun = "dead letters" if bulk else "entries named with --key"
    if args.dry_run or (bulk and not args.yes):
        for e in picked:
            print(f"would {verb}  {_describe(e)}")
        print(f"{len(picked)} {noun} would be {past}")
        if args.dry_run:
            print("(dry run: nothing changed)")
            return PARTLY if skipped else 0
        if not picked:
            return 0
        print(
            f"duetime {verb}: nothing changed: add --yes to {verb} these {len(picked)},"
            " or --dry-run to only list them",
            file=sys.stderr,
        )
        return ERROR
    missed = anyio.run(_apply, args, picked) if picked else []
    for key, reason in missed:
        print(f"skipped  {visible(key)}: {reason}")
    print(f"{past} {len(picked) - len(missed)} of {len(picked) + len(skipped)} {noun}")
    return PARTLY if skipped or missed else 0


# -- abort ---------------------------------------------------------------------------


async def _select_abort(args: argparse.Namespace) -> tuple[list[Entry], list[tuple[str, str]]]:
    """The named entries that can be aborted or deleted, and the ``(key, reason)``
    of the others."""
    from ._url import open_store

    picked: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    store = open_store(args.store, read_only=True)
    async with _deadline(args.timeout, "opening it and selecting entries"), store:
        for key in dict.fromkeys(args.key):  # each key once, in the given order
            e = await store.get(key)
            if e is None:
                skipped.append((key, "no such entry"))
            elif e.status in (Status.COMPLETED, Status.CANCELLED):
                skipped.append((key, f"{e.status}: finished"))
            else:
                picked.append(e)
    return picked, skipped


def _abort_verb(e: Entry) -> str:
    return "abort" if e.status is Status.RUNNING else "delete"


async def _apply_abort(args: argparse.Namespace, picked: Sequence[Entry]) -> list[tuple[str, str]]:
    """``Store.abort`` each of ``picked``; the ``(key, reason)`` of those that
    finished meanwhile."""
    from ._client import abort_with_occurrences
    from ._url import open_store

    missed: list[tuple[str, str]] = []
    store = open_store(args.store)
    async with _deadline(args.timeout, "opening it, or aborting an entry") as scope, store:
        for e in picked:
            scope.deadline = anyio.current_time() + args.timeout
            if await abort_with_occurrences(store, e.key):
                # The store decides by the state it finds: say what it found.
                now = await store.get(e.key)
                if now is None:
                    print(f"deleted  {_describe(e)}", flush=True)
                else:
                    print(
                        f"aborted  {_describe(e)}: the worker holding it cancels its run",
                        flush=True,
                    )
            else:
                missed.append((e.key, "finished since it was selected"))
    return missed


def _abort_command(args: argparse.Namespace) -> int:
    picked, skipped = anyio.run(_select_abort, args)
    for key, reason in skipped:
        print(f"skipped  {visible(key)}: {reason}")
    if args.dry_run:
        for e in picked:
            print(f"would {_abort_verb(e)}  {_describe(e)}")
        print(f"{len(picked)} of {len(picked) + len(skipped)} entries would be aborted or deleted")
        print("(dry run: nothing changed)")
        return PARTLY if skipped else 0
    missed = anyio.run(_apply_abort, args, picked) if picked else []
    for key, reason in missed:
        print(f"skipped  {visible(key)}: {reason}")
    done = len(picked) - len(missed)
    print(f"aborted or deleted {done} of {len(picked) + len(skipped)} entries named with --key")
    return PARTLY if skipped or missed else 0
