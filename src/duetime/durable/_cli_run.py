"""How a command of the command line ends: one clear line for an operator's error.

A bad store URL, a missing directory, a file that is not a store, an
unreachable server, a wrong password, a read-only mount: each is one line on
stderr, ``duetime COMMAND: STORE: what went wrong``, and exit status 2.  The
store is shown through :func:`~duetime.durable._redact.redact_url` and every
credential of its URL is scrubbed from the line, whatever library wrote the
message.  Only an unexpected exception (a bug) prints its traceback (scrubbed
too), with exit status 1.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._cli_show import visible
from ._redact import redact_url, url_secrets

__all__ = [
    "ERROR",
    "EXIT_CODES",
    "INTERRUPTED",
    "STORE_LOST",
    "WORKER_EXIT_CODES",
    "guarded",
    "scrub",
    "scrubbed_logs",
]

_T = TypeVar("_T")

ERROR = 2  #: an operator's error: usage, the store URL, the store itself
STORE_LOST = 4  #: worker: the store was deleted or replaced under it (restart it)
INTERRUPTED = 130  #: SIGINT (Ctrl-C)
PIPE_CLOSED = 141  #: stdout was closed early, as a process killed by SIGPIPE reports

_BUG_AND_ERROR = """  1    an unexpected error (a bug: its traceback is printed)
  2    a usage error, a bad store URL, or a store that cannot be opened or
       used (missing, not a store, unreachable, refused, read-only): one
       line on stderr"""

#: The exit statuses of the store commands (``entries``, ``dead-letters``...).
EXIT_CODES = f"""exit status:
  0    done
{_BUG_AND_ERROR}
  130  interrupted (SIGINT)
  141  the reader of stdout went away (| head)"""

#: The exit statuses of ``worker``: a forced exit is 128 + the signal's number.
WORKER_EXIT_CODES = f"""exit status:
  0    stopped by SIGINT or SIGTERM (or by a signal while the store did not
       answer at startup)
{_BUG_AND_ERROR}
  {STORE_LOST}    the store was lost under the worker (its SQLite file deleted or
       replaced): one ERROR is logged; restart it to open what is there now
  130  a forced exit on SIGINT: a second one while stopping, or a shutdown
       that outlasted --grace + 60 s with no thread running (128 + 2)
  143  the same on SIGTERM (128 + 15)"""


def scrub(text: str, url: str) -> str:
    """``text`` without any credential of ``url`` and with non-printable characters escaped."""
    for secret in url_secrets(url):
        text = text.replace(secret, "***")
    return visible(text)


def _expected_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the operator's input or the store, not a bug."""
    import anyio

    types: list[type[BaseException]] = [
        ValueError,  # a bad URL, NotAStore, a bad option
        OSError,  # missing files, permissions, refused connections, timeouts
        ImportError,  # the redis extra is not installed
        sqlite3.Error,
        anyio.BrokenResourceError,  # a connection that broke
        anyio.EndOfStream,
    ]
    try:
        from ._sqlite import ReadOnlyStore  # a write to a store opened read-only
    except ImportError:  # pragma: no cover - an older SQLiteStore
        pass
    else:
        types.append(ReadOnlyStore)
    if "coredis" in sys.modules:
        from coredis.exceptions import RedisError

        types.append(RedisError)
    if "psycopg" in sys.modules:
        import psycopg

        types.append(psycopg.Error)  # the server refused us, a missing table...
    return tuple(types)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def describe(exc: BaseException, url: str) -> str | None:
    """One line for an expected error (None for a bug), before scrubbing."""
    leaves = _leaves(exc)
    expected = _expected_types()
    if not leaves or not all(isinstance(leaf, expected) for leaf in leaves):
        return None
    leaf = leaves[0]
    if isinstance(leaf, OSError) and leaf.strerror:
        text = leaf.strerror + (f": {leaf.filename!r}" if leaf.filename else "")
    else:
        text = str(leaf).strip() or "(no message)"
    if not isinstance(leaf, ValueError):
        text = f"{type(leaf).__name__}: {text}"
    return text + _hint(leaf, url)


def _hint(exc: BaseException, url: str) -> str:
    """What a bare library message leaves out, where it can be told."""
    if isinstance(exc, sqlite3.OperationalError | OSError) and url.lower().startswith("sqlite:///"):
        from urllib.parse import unquote

        path = unquote(url[len("sqlite:///") :].partition("?")[0])
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder):
            return f" (the directory {folder!r} does not exist)"
        writable = os.access(folder, os.W_OK) and (
            not os.path.exists(path) or os.access(path, os.W_OK)
        )
        if isinstance(exc, FileNotFoundError):
            return ""
        if not writable or "readonly" in str(exc).replace(" ", "").lower():
            return " (the file or its directory is read-only here)"
    return ""


@contextmanager
def scrubbed_logs(url: str) -> Iterator[None]:
    """While inside, every log record of the process (a library's included) has
    the credentials of ``url`` replaced by ``***`` in its message and traceback."""
    secrets = url_secrets(url)
    if not secrets:
        yield
        return
    make = logging.getLogRecordFactory()

    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return record
        record.msg, record.args = clean(message), None
        if record.exc_info:
            record.exc_text = clean(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(make)


def guarded(command: str, url: str, body: Callable[[], _T]) -> _T | int:
    """Run ``body()`` with :func:`scrubbed_logs`; on an error print one line (or,
    for a bug, the scrubbed traceback) to stderr and return the exit status
    instead of raising."""
    with scrubbed_logs(url):
        return _guarded(command, url, body)


def _guarded(command: str, url: str, body: Callable[[], _T]) -> _T | int:
    try:
        return body()
    except KeyboardInterrupt:
        print(f"duetime {command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``| head``): nothing to report, and the final
        # flush of stdout must not fail again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return PIPE_CLOSED
    except BaseException as exc:
        if isinstance(exc, SystemExit):
            raise
        line = describe(exc, url)
        where = redact_url(url)
        if line is not None:
            # The URL once: a message that names it already needs no prefix.
            text = line if where in line else f"{where}: {line}"
            print(scrub(f"duetime {command}: {text}", url), file=sys.stderr)
            return ERROR
        text = f"duetime {command}: {where}: unexpected error (a bug):\n"
        text += "".join(traceback.format_exception(exc))
        print("\n".join(scrub(line, url) for line in text.splitlines()), file=sys.stderr)
        return 1
