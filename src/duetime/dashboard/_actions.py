"""The dashboard's actions: POSTs that need the admin role and a valid CSRF
token, each logged with who did it, each answered by a redirect (303) to a
page that shows the result."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from duetime import Status
from duetime.durable import EntryQuery

from ._context import Dashboard, logger, page_url
from ._pages import describe, parse_query, store_error
from ._security import Grant
from ._text import key_of_form

__all__ = ["BULK_MAX", "act", "act_bulk"]

#: The most dead letters one bulk action changes (the rest need another click).
BULK_MAX = 10_000
#: The largest form body accepted.
_MAX_BODY = 64 * 1024
_ACTIONS = ("retry", "delete", "cancel", "abort")
_DONE = {"retry": "retried", "delete": "deleted", "cancel": "cancelled", "abort": "aborted"}


class _BadForm(Exception):
    pass


async def _form(request: Request) -> dict[str, str]:
    """The urlencoded form of a POST (no multipart: nothing here uploads files).

    :raises _BadForm: another content type, a body too large, or text that is not UTF-8
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise _BadForm("expected a form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise _BadForm("form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadForm("form is not UTF-8 text") from exc
    return {k: v[0] for k, v in fields.items()}


def _forbidden(message: str) -> Response:
    return HTMLResponse(f"<!doctype html><title>403</title><p>{message}</p>", status_code=403)


async def _checked(dash: Dashboard, request: Request) -> tuple[dict[str, str], Grant] | Response:
    """The form and the grant of who sent it, if the sender is an admin and its
    CSRF token is valid."""
    grant = await dash.grant(request)
    if grant is None:
        return dash.refused()
    try:
        form = await _form(request)
    except _BadForm as exc:
        return HTMLResponse(f"<!doctype html><title>400</title><p>{exc}</p>", status_code=400)
    if not grant.admin:
        logger.warning("dashboard: refused an action by %s: not an admin", grant.who)
        return _forbidden("Forbidden: this dashboard is read-only for you.")
    if not dash.csrf.check(request, form.get("csrf"), grant.identity):
        logger.warning("dashboard: refused an action by %s: bad CSRF token", grant.who)
        return _forbidden("Forbidden: the form's token is missing or stale; reload the page.")
    return form, grant


async def act(dash: Dashboard, request: Request) -> Response:
    """Retry, delete, cancel or abort one entry (form fields ``action``, ``key``)."""
    checked = await _checked(dash, request)
    if isinstance(checked, Response):
        return checked
    form, grant = checked
    who = grant.who or "unknown"
    action, field = form.get("action", ""), form.get("key")
    try:
        key = None if field is None else key_of_form(field)
    except ValueError:  # not percent-encoded UTF-8: no form of the dashboard sent it
        key = None
    if action not in _ACTIONS or key is None:
        return HTMLResponse("<!doctype html><title>400</title><p>Bad action.</p>", 400)
    store = dash.store
    method = getattr(store, action)
    try:
        changed = bool(await method(key))
    except Exception as exc:
        logger.warning("dashboard: %s of %r by %s failed: %s", action, key, who, describe(exc))
        return store_error(dash, request, grant, exc)
    logger.info(
        "dashboard: %s of %r by %s: %s", action, key, who, "done" if changed else "unchanged"
    )
    done = _DONE[action] if changed else "unchanged"
    return RedirectResponse(page_url(request, "entry", key=key, done=done), status_code=303)


async def act_bulk(dash: Dashboard, request: Request) -> Response:
    """Retry or delete every dead letter the form's filters match (``action``,
    ``task``, ``prefix``, ``due_from``, ``due_before``; ``confirm=yes``, the
    form's checkbox), at most :data:`BULK_MAX`."""
    checked = await _checked(dash, request)
    if isinstance(checked, Response):
        return checked
    form, grant = checked
    who = grant.who or "unknown"
    action = form.get("action", "")
    if action not in ("retry", "delete"):
        return HTMLResponse("<!doctype html><title>400</title><p>Bad action.</p>", 400)
    if form.get("confirm") != "yes":  # the form's checkbox: one click never empties a store
        return HTMLResponse("<!doctype html><title>400</title><p>Tick the box to confirm.</p>", 400)
    fields = {k: form.get(k, "") for k in ("task", "prefix", "due_from", "due_before")}
    filters = parse_query(QueryParams(fields), status=Status.FAILED, with_status=False)
    if filters.query is None:
        return HTMLResponse("<!doctype html><title>400</title><p>Bad filter.</p>", 400)
    base = filters.query
    method = dash.store.retry if action == "retry" else dash.store.delete
    changed = 0
    after = None
    try:
        while changed < BULK_MAX:
            page = await dash.store.page(
                EntryQuery(
                    status=Status.FAILED,
                    task=base.task,
                    key_prefix=base.key_prefix,
                    due_from=base.due_from,
                    due_before=base.due_before,
                    after=after,
                    limit=min(500, BULK_MAX - changed),
                )
            )
            for e in page.entries:
                if await method(e.key):
                    changed += 1
            if page.next is None:
                break
            after = page.next
    except Exception as exc:
        logger.warning(
            "dashboard: bulk %s by %s stopped after %d changed: %s",
            action,
            who,
            changed,
            describe(exc),
        )
        return store_error(dash, request, grant, exc)
    logger.info(
        "dashboard: bulk %s of the dead letters matching %r by %s: %d changed",
        action,
        {k: v for k, v in fields.items() if v},
        who,
        changed,
    )
    params = {k: v for k, v in fields.items() if v}
    code = "bulk-retried" if action == "retry" else "bulk-deleted"
    return RedirectResponse(
        page_url(request, "dead_letters", done=code, n=changed, **params), status_code=303
    )
