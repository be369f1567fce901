"""duetime.dashboard: see and steer durable work in a browser (the ``dashboard`` extra).

:func:`create_app` makes an ASGI app (Starlette) over any
:class:`~duetime.durable.Store`, to serve alone or mount in a Starlette or
FastAPI app; ``python -m duetime dashboard --store URL`` serves one.  The
pages read only; the actions (retry, delete, cancel, abort one entry; retry
or delete the dead letters matching a filter) are POSTs with a CSRF token,
for the admin role only, each logged on the ``duetime.dashboard`` logger with
who did it.

The package, by file: ``_app.py`` (create_app, security headers),
``_context.py`` (what pages and actions share), ``_pages.py`` (the pages),
``_actions.py`` (the actions), ``_security.py`` (roles, CSRF), ``_charts.py``
(the SVG charts' shapes), ``_text.py`` (stored values shown as text),
``_serve.py`` (the command line's server), ``templates/`` and ``static/``.
"""

from __future__ import annotations

from ._app import create_app
from ._security import ADMIN, VIEWER, Grant

__all__ = ["ADMIN", "VIEWER", "Grant", "create_app"]
