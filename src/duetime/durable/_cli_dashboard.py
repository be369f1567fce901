"""``python -m duetime dashboard --store URL``: serve a store's web dashboard.

The command's arguments, its checks and the store it opens live here; the
server itself (:mod:`duetime.dashboard`, the ``dashboard`` extra) is handed
in by ``duetime.__main__``, so the durable wing never imports the dashboard.
It binds loopback unless told otherwise, and allows actions only to a browser
that signs in with the admin token from :data:`TOKEN_ENV`; without it the
store is opened read-only.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ._cli_run import EXIT_CODES, guarded
from ._redact import redact_url

__all__ = ["TOKEN_ENV", "ServeDashboard", "add_dashboard_command", "run_dashboard"]

#: The environment variable that holds the dashboard's admin token.
TOKEN_ENV = "DUETIME_DASHBOARD_TOKEN"

#: ``serve(store, label=, token=, host=, port=, backend=, title=, secure_cookies=)``:
#: runs the server until
#: SIGINT/SIGTERM (given by ``duetime.__main__``, from ``duetime.dashboard``).
ServeDashboard = Callable[..., Awaitable[None]]

logger = logging.getLogger("duetime.dashboard")

_DESCRIPTION = (
    "Serve the web dashboard of a durable store: counts, charts of the last hour,"
    " entries, series and dead letters; with the admin token, retry, delete, cancel"
    " and abort. Needs the dashboard extra: pip install 'duetime[dashboard]'."
)
_EPILOG = f"""admin token:
  Actions are enabled only when the environment variable {TOKEN_ENV} holds
  a token (at least 16 characters): sign in from the page's "Sign in" link
  with any user name and the token as the password (HTTP Basic). Without it
  the dashboard is read-only and the store is opened read-only. Over a
  network, serve it behind TLS: the token crosses in every request.

{EXIT_CODES}"""


def add_dashboard_command(sub: Any) -> None:
    """Add the ``dashboard`` subcommand to argparse subparsers."""
    p = sub.add_parser(
        "dashboard",
        help="serve the web dashboard of a durable store",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", required=True, metavar="URL", help="e.g. sqlite:///jobs.db")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    p.add_argument(
        "--backend",
        choices=["asyncio", "trio"],
        default="asyncio",
        help="asyncio (served by uvicorn) or trio (served by hypercorn)",
    )
    p.add_argument("--title", default="duetime", help="the name in the page titles")
    p.add_argument(
        "--secure-cookies",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=(
            "mark the dashboard's cookie Secure (send it over HTTPS only): use it"
            " behind a proxy that terminates TLS; by default it is Secure when the"
            " request came over HTTPS"
        ),
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_dashboard(args: argparse.Namespace, serve: ServeDashboard) -> int:
    """Run a parsed ``dashboard`` command with ``serve``; return the exit status."""
    if not 0 < args.port < 65536:
        print("duetime dashboard: --port must be 1 to 65535", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 16:
        print(f"duetime dashboard: {TOKEN_ENV} must hold at least 16 characters", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    label = redact_url(args.store)
    if not _loopback(args.host):
        logger.warning(
            "the dashboard listens on %s: other machines can reach it%s",
            args.host,
            "; serve it behind TLS, the admin token crosses in every request" if token else "",
        )
    logger.info(
        "duetime dashboard of %s on http://%s:%d/ (%s)",
        label,
        args.host,
        args.port,
        "actions with the admin token" if token else f"read-only: no {TOKEN_ENV}",
    )

    def body() -> int:
        import anyio

        from ._url import open_store

        store = open_store(args.store, read_only=token is None)

        async def main() -> None:
            async with store:
                await serve(
                    store,
                    label=label,
                    token=token,
                    host=args.host,
                    port=args.port,
                    backend=args.backend,
                    title=args.title,
                    secure_cookies=args.secure_cookies,
                )

        anyio.run(main, backend=args.backend)
        return 0

    return guarded("dashboard", args.store, body)
