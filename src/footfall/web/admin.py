"""The dashboard's administration pages: the first sign-in (setup link), the admin password,
and sites with their keys, embed snippet and install check.

The rules are ``footfall.access`` and ``footfall.sites`` (the admin API and the CLI apply the
same ones); this module turns forms into calls and answers into pages. A key's session
manages its own tenant's sites; another tenant's site is "not found", as in the API. Every
form carries the session's CSRF token; scripts (snippet options, copy buttons, the install
check's polling) live in ``static/dashboard.js``, as the pages' Content-Security-Policy wants.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from footfall import sites
from footfall.access import (
    PasswordRefused,
    change_admin_password,
    complete_setup,
    setup_token_usable,
)
from footfall.config import Settings
from footfall.errors import ApiError
from footfall.http.ratelimit import SlidingWindowLimiter
from footfall.http.refusals import NO_ORIGIN, Refusal
from footfall.http.shared import Gate, Services
from footfall.passwords import MIN_PASSWORD_CHARS, password_fingerprint
from footfall.store.base import ApiKey, Site
from footfall.web import charts
from footfall.web.auth import (
    CSRF_FIELD,
    LoginRequired,
    Viewer,
    csrf_matches,
    new_csrf_token,
    read_form,
)
from footfall.web.sealed import NEW_KEY_COOKIE, NEW_KEY_SECONDS, open_new_key, seal_new_key

log = logging.getLogger("footfall.web")

PREFIX = "/dashboard"
ADMIN_NAV = (
    ("Administration", "/sites", "Sites & keys", False),
    ("Administration", "/password", "Admin password", True),
)
"""(group, path, label, administrator only), after the analytics pages' links."""
NAV_PREFIXES = {"/sites": "/site", "/persons": "/person"}
"""Sidebar links that stay lit on the pages below them."""
SNIPPET_OPTIONS = (
    (
        "user-analytics-cookie-enabled",
        True,
        "Anonymous id in a cookie",
        "Recognises returning visitors (first-party cookie, 399 days).",
    ),
    (
        "user-analytics-fingerprint-enabled",
        False,
        "Fingerprint id",
        "Derived from the browser; works across domains and wins over the cookie.",
    ),
    (
        "consent-required",
        False,
        "Ask for consent first",
        "Shows the built-in consent screen before anything identifies the visitor.",
    ),
    (
        "respect-gpc",
        True,
        "Honour Global Privacy Control",
        "A browser that sends GPC counts as having said no.",
    ),
    ("ab-test", False, "A/B test groups", "Puts each new visitor in group 0 or 1."),
)
"""The tracker's on/off options (data-* attribute, default, label, hint)."""
DONE = {
    "welcome": "Your admin password is set and you are signed in. Add your site to get its "
    "snippet, or open the default site.",
    "created": "The site was added. Paste its snippet into your pages, then watch the install "
    "check below.",
    "saved": "Saved. The server uses the new settings at once.",
    "revoked": "The key was revoked: calls with it are refused from now on.",
    "write-key": "A new write key replaces the old one, which is refused from now on.",
    "password": "The admin password was changed. Other sessions of the administrator ended.",
    "key-created": "The key was created. Its secret is shown once only, on the page right "
    "after creating it: if it was not copied, revoke the key and create another.",
    "origin-allowed": "The origin was added to the allowed origins: its pages' events are "
    "accepted from now on.",
}
NEW_KEY_MESSAGE = "Copy this key now: only its hash is kept, so it is not shown again."


class Core(Protocol):
    """What these pages need from the dashboard (``footfall.web.pages.Dashboard``)."""

    settings: Settings
    gate: Gate
    login_limiter: SlidingWindowLimiter
    env: Environment

    def services(self) -> Services: ...

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse: ...

    def session(self, request: Request) -> dict[str, Any] | None: ...

    def set_session(self, request: Request, response: Response, data: dict[str, Any]) -> None: ...

    def sign_in(self, request: Request, response: Response, data: dict[str, Any]) -> Response: ...

    def is_https(self, request: Request) -> bool: ...

    def client_address(self, request: Request) -> str: ...

    async def viewer(self, request: Request) -> Viewer: ...

    async def checked_form(self, request: Request) -> tuple[Viewer, dict[str, str]]: ...

    async def admin_password(self) -> str | None: ...


Endpoint = Callable[[Request], Awaitable[Response]]


def snippet(src: str, site_id: str, options: Mapping[str, bool] | None = None) -> str:
    """The ``<script>`` tag to paste: only options that differ from the tracker's defaults
    are written (``static/dashboard.js`` rebuilds it the same way when boxes change)."""
    chosen = options or {}
    lines = [f'<script async src="{src}"', f'        data-site-id="{site_id}"']
    for name, default, _, _ in SNIPPET_OPTIONS:
        value = chosen.get(name, default)
        if value != default:
            lines.append(f'        data-{name}="{"true" if value else "false"}"')
    return "\n".join(lines) + "></script>"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``, else the date."""
    if moment is None:
        return "never"
    seconds = ((now or datetime.now(UTC).replace(tzinfo=None)) - moment).total_seconds()
    if seconds < 10:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    if seconds < 7 * 86400:
        days = int(seconds // 86400)
        return f"{days} day{'s' if days > 1 else ''} ago"
    return moment.strftime("%Y-%m-%d")


def utc(moment: datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class AdminPages:
    def __init__(self, core: Core) -> None:
        self.core = core
        core.env.filters.update(ago=ago, utc=utc)

    def routes(self, page: Callable[[Endpoint], Endpoint]) -> list[tuple[str, Endpoint, list[str]]]:
        return [
            ("/setup", page(self.setup_form), ["GET"]),
            ("/setup", page(self.setup), ["POST"]),
            ("/password", page(self.password_form), ["GET"]),
            ("/password", page(self.password), ["POST"]),
            ("/sites", page(self.sites), ["GET"]),
            ("/sites/new", page(self.new_site_form), ["GET"]),
            ("/sites/new", page(self.new_site), ["POST"]),
            ("/site/{site_id}", page(self.site), ["GET"]),
            ("/site/{site_id}", page(self.save_site), ["POST"]),
            ("/site/{site_id}/events", self.events, ["GET"]),
            ("/site/{site_id}/keys", page(self.new_key), ["POST"]),
            ("/site/{site_id}/keys/{key_id}/revoke", page(self.revoke_key), ["POST"]),
            ("/site/{site_id}/write-key", page(self.rotate_write_key), ["POST"]),
            ("/site/{site_id}/allow-origin", page(self.allow_origin), ["POST"]),
            ("/site/{site_id}/ticket-cost", page(self.save_ticket_cost), ["POST"]),
        ]

    def store_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """``fn(store, ...)``: a blocking store call, off the event loop."""
        return asyncio.to_thread(fn, self.core.services().store, *args, **kwargs)

    # ------------------------------------------------------------------ first sign-in

    async def setup_form(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        refused = await self._setup_refused(request, token)
        if refused is not None:
            return refused
        session = self.core.session(request)
        csrf = (session or {}).get(CSRF_FIELD) or new_csrf_token()
        response = self._setup_page(request, token, csrf)
        self.core.set_session(request, response, {CSRF_FIELD: csrf})
        return response

    async def setup(self, request: Request) -> Response:
        form = await read_form(request)
        token = form.get("token", "")
        if not csrf_matches(self.core.session(request), form.get(CSRF_FIELD)):
            return self._setup_closed(request, "The form had expired: open the link again.", 403)
        refused = await self._setup_refused(request, token)
        if refused is not None:
            return refused
        csrf = form[CSRF_FIELD]
        password, repeated = form.get("password", ""), form.get("repeat", "")
        if password != repeated:
            return self._setup_page(request, token, csrf, "The two passwords differ.", 422)
        try:
            encoded = await asyncio.to_thread(
                complete_setup, self.core.services().store, self.core.settings, token, password
            )
        except PasswordRefused as exc:
            return self._setup_page(request, token, csrf, f"Please {exc}.", 422)
        if encoded is None:  # used by someone else meanwhile
            return self._setup_closed(request, _LINK_REFUSED, 403)
        log.info("admin password set through the setup page")
        response = RedirectResponse(f"{PREFIX}/sites?done=welcome", status_code=303)
        return self.core.sign_in(
            request, response, {"who": "admin", "ph": password_fingerprint(encoded)}
        )

    async def _setup_refused(self, request: Request, token: str) -> Response | None:
        """The refusal page, or None when the token may set the first password. Unknown,
        used and expired links get the same answer; attempts are rate-limited per client."""
        if await self.core.admin_password():
            return self._setup_closed(
                request, "An admin password is set already: sign in with it.", 403
            )
        if self.core.login_limiter.check(self.core.client_address(request)):
            return self._setup_closed(request, "Too many attempts. Wait a minute.", 429)
        usable = await asyncio.to_thread(
            setup_token_usable, self.core.services().store, self.core.settings, token
        )
        if not usable:
            log.warning("setup link refused")
            return self._setup_closed(request, _LINK_REFUSED, 403)
        return None

    def _setup_page(
        self,
        request: Request,
        token: str,
        csrf: str,
        error: str | None = None,
        status: int = 200,
        closed: str | None = None,
    ) -> HTMLResponse:
        """The password form, or (``closed``) the page saying why the link cannot be used."""
        return self.core.render(
            request,
            "setup.html",
            status=status,
            title="Setup link" if closed else "Welcome",
            viewer=None,
            csrf=csrf,
            token=token,
            error=error,
            min_chars=MIN_PASSWORD_CHARS,
            closed=closed,
        )

    def _setup_closed(self, request: Request, message: str, status: int) -> HTMLResponse:
        return self._setup_page(request, "", "", status=status, closed=message)

    # ------------------------------------------------------------------ admin password

    async def _admin(self, request: Request) -> Viewer:
        viewer = await self.core.viewer(request)
        if not viewer.admin:
            raise ApiError(403, "FORBIDDEN", "only the administrator manages the admin password")
        return viewer

    async def password_form(self, request: Request) -> Response:
        viewer = await self._admin(request)
        done = DONE["password"] if request.query_params.get("done") == "password" else None
        return self._password_page(request, viewer, message=done)

    async def password(self, request: Request) -> Response:
        viewer, form = await self.core.checked_form(request)
        if not viewer.admin:
            raise ApiError(403, "FORBIDDEN", "only the administrator manages the admin password")
        new, repeated = form.get("new", ""), form.get("repeat", "")
        if new != repeated:
            return self._password_page(request, viewer, error="The two new passwords differ.")
        if self.core.login_limiter.check(self.core.client_address(request)):
            return self._password_page(request, viewer, error="Too many attempts. Wait a minute.")
        try:
            encoded = await asyncio.to_thread(
                change_admin_password,
                self.core.services().store,
                self.core.settings,
                form.get("current", ""),
                new,
            )
        except PasswordRefused as exc:
            return self._password_page(request, viewer, error=f"Not changed: {exc}.")
        log.info("admin password changed", extra={"actor": viewer.actor})
        response = RedirectResponse(f"{PREFIX}/password?done=password", status_code=303)
        return self.core.sign_in(
            request, response, {"who": "admin", "ph": password_fingerprint(encoded)}
        )

    def _password_page(
        self, request: Request, viewer: Viewer, error: str | None = None, message: str | None = None
    ) -> HTMLResponse:
        return self.core.render(
            request,
            "password.html",
            status=422 if error else 200,
            title="Admin password",
            viewer=viewer,
            csrf=viewer.csrf,
            error=error,
            message=message,
            in_config=bool(self.core.settings.admin_password_hash),
            min_chars=MIN_PASSWORD_CHARS,
        )

    # ------------------------------------------------------------------ sites

    async def sites(self, request: Request) -> Response:
        viewer = await self.core.viewer(request)
        services = self.core.services()
        await services.committer.settled()
        listed, activity, keys = await asyncio.gather(
            self.store_call(lambda store: store.list_sites()),
            self.store_call(sites.site_activity),
            self.store_call(sites.active_key_counts),
        )
        visible = viewer.authority.visible(listed)
        done = request.query_params.get("done")
        return self.core.render(
            request,
            "sites.html",
            title="Sites",
            viewer=viewer,
            csrf=viewer.csrf,
            sites=visible,
            activity=activity,
            keys=keys,
            many_tenants=len({s.scope for s in visible}) > 1,
            message=DONE.get(done or ""),
        )

    async def new_site_form(self, request: Request) -> Response:
        viewer = await self.core.viewer(request)
        return await self._new_site_page(request, viewer, {})

    async def new_site(self, request: Request) -> Response:
        viewer, form = await self.core.checked_form(request)
        try:
            site = await self.store_call(
                sites.create_site,
                viewer.authority,
                form.get("id", "").strip(),
                form.get("name"),
                sites.split_origins(form.get("origins", "")),
                form.get("tenant", "").strip() if viewer.admin else None,
            )
        except ApiError as error:
            return await self._new_site_page(request, viewer, form, error)
        await asyncio.to_thread(self.core.services().reload_sites)
        log.info("site created", extra={"site": site.id, "actor": viewer.actor})
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=created", status_code=303)

    async def _new_site_page(
        self,
        request: Request,
        viewer: Viewer,
        form: Mapping[str, str],
        error: ApiError | None = None,
    ) -> HTMLResponse:
        listed = await self.store_call(lambda store: store.list_sites())
        return self.core.render(
            request,
            "site_new.html",
            status=error.status if error else 200,
            title="Add a site",
            viewer=viewer,
            csrf=viewer.csrf,
            form=form,
            error=_form_error(error),
            tenants=sorted({s.scope for s in viewer.authority.visible(listed)}),
            own_tenant=viewer.authority.tenant,
        )

    async def site(self, request: Request) -> Response:
        viewer = await self.core.viewer(request)
        site = await self._site(request, viewer)
        done = request.query_params.get("done")
        sealed = request.cookies.get(NEW_KEY_COOKIE)
        held = open_new_key(viewer.csrf, site.id, sealed) if done == "key-created" else None
        page: Response | None = None
        if held is not None:
            key_id, secret = held
            record = await self.store_call(lambda store: store.get_api_key(key_id))
            if record is not None:
                page = await self._site_page(request, viewer, site, new_key=(record, secret))
        if page is None:
            page = await self._site_page(request, viewer, site, message=DONE.get(done or ""))
        if sealed is not None:  # shown once: a reload finds no secret
            page.delete_cookie(NEW_KEY_COOKIE, path=self._site_path(site))
        return page

    @staticmethod
    def _site_path(site: Site) -> str:
        return f"{PREFIX}/site/{site.id}"

    async def _site(self, request: Request, viewer: Viewer) -> Site:
        site: Site = await self.store_call(
            sites.managed_site, viewer.authority, request.path_params["site_id"]
        )
        return site

    async def save_site(self, request: Request) -> Response:
        viewer, form = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        changes: dict[str, Any] = {
            "name": form.get("name"),
            "origins": sites.split_origins(form.get("origins", "")),
        }
        if viewer.admin and "tenant" in form:
            changes["tenant"] = form["tenant"].strip()
        try:
            await self.store_call(sites.update_site, viewer.authority, site.id, **changes)
        except ApiError as error:
            return await self._site_page(request, viewer, site, form=form, error=error)
        await asyncio.to_thread(self.core.services().reload_sites)
        log.info("site changed", extra={"site": site.id, "actor": viewer.actor})
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=saved", status_code=303)

    async def save_ticket_cost(self, request: Request) -> Response:
        """The site's cost per support ticket, for the Support form page's savings."""
        viewer, form = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        try:
            await self.store_call(
                sites.set_ticket_cost,
                site.id,
                form.get("cost_per_ticket", "").strip() or None,
                form.get("ticket_currency", ""),
            )
        except ApiError as error:
            return await self._site_page(request, viewer, site, error=error)
        log.info("ticket cost changed", extra={"site": site.id, "actor": viewer.actor})
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=saved#ticket-cost", status_code=303)

    async def allow_origin(self, request: Request) -> Response:
        """The install check's one-click allow of a refused origin: the same rules as the
        settings form (the origin is checked and normalised as any other)."""
        viewer, form = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        origin = form.get("origin", "").strip()
        origins = [*site.allowed_origins, origin]
        try:
            await self.store_call(sites.update_site, viewer.authority, site.id, origins=origins)
        except ApiError as error:
            return await self._site_page(request, viewer, site, error=error)
        services = self.core.services()
        await asyncio.to_thread(services.reload_sites)
        services.refusals.forget(site.id, origin)
        log.info("origin allowed", extra={"site": site.id, "actor": viewer.actor})
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=origin-allowed", status_code=303)

    async def new_key(self, request: Request) -> Response:
        viewer, form = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        try:
            record, secret = await self.store_call(
                sites.create_key, viewer.authority, site.id, form.get("label")
            )
        except ApiError as error:
            return await self._site_page(request, viewer, site, error=error)
        log.info(
            "api key created",
            extra={"site": site.id, "key_id": record.key_id, "actor": viewer.actor},
        )
        # Redirected (a reload must not make another key); the secret goes to the next view
        # sealed for this session, whichever server process serves it (``web.sealed``).
        answer = RedirectResponse(f"{self._site_path(site)}?done=key-created#keys", 303)
        answer.set_cookie(
            NEW_KEY_COOKIE,
            seal_new_key(viewer.csrf, site.id, record.key_id, secret),
            max_age=NEW_KEY_SECONDS,
            path=self._site_path(site),
            httponly=True,
            samesite="strict",
            secure=self.core.is_https(request),
        )
        return answer

    async def revoke_key(self, request: Request) -> Response:
        viewer, _ = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        record: ApiKey = await self.store_call(
            sites.revoke_key, viewer.authority, request.path_params["key_id"], site.id
        )
        self.core.gate.keys.forget(record.key_id)
        log.info(
            "api key revoked",
            extra={"site": site.id, "key_id": record.key_id, "actor": viewer.actor},
        )
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=revoked#keys", status_code=303)

    async def rotate_write_key(self, request: Request) -> Response:
        viewer, _ = await self.core.checked_form(request)
        site = await self._site(request, viewer)
        await self.store_call(sites.site_write_key, viewer.authority, site.id, rotate=True)
        self.core.gate.keys.forget_write_keys(site.id)
        log.info("write key rotated", extra={"site": site.id, "actor": viewer.actor})
        return RedirectResponse(f"{PREFIX}/site/{site.id}?done=write-key#write-key", 303)

    async def _site_page(
        self,
        request: Request,
        viewer: Viewer,
        site: Site,
        *,
        message: str | None = None,
        form: Mapping[str, str] | None = None,
        error: ApiError | None = None,
        new_key: tuple[ApiKey, str] | None = None,
    ) -> HTMLResponse:
        services = self.core.services()
        await services.committer.settled()
        activity, keys, recent, listed, writers, cost = await asyncio.gather(
            self.store_call(sites.site_activity),
            self.store_call(lambda store: store.list_api_keys(site.id)),
            self.store_call(lambda store: _labelled(sites.recent_events(store, site.id))),
            self.store_call(lambda store: store.list_sites()),
            self.store_call(sites.active_write_keys),
            self.store_call(sites.ticket_cost, site.id),
        )
        seen = activity.get(site.id)
        src = f"{self._public_base(request)}/footfall.js"
        return self.core.render(
            request,
            "site.html",
            status=error.status if error else 200,
            title=site.name or site.id,
            viewer=viewer,
            csrf=viewer.csrf,
            site=site,
            activity=seen,
            keys=list(reversed(keys)),
            recent=recent,
            state=_install_state(recent, seen),
            snippet=snippet(src, site.id),
            src=src,
            options=SNIPPET_OPTIONS,
            warnings=sites.origin_warnings(site.allowed_origins),
            in_config=sites.configured_in_file(self.core.settings, site.id),
            form=form
            or {
                "name": site.name,
                "origins": "\n".join(site.allowed_origins),
                "tenant": "" if site.scope == site.id else site.scope,
            },
            error=_form_error(error),
            message=message,
            new_key=new_key,
            new_key_message=NEW_KEY_MESSAGE,
            write_key=writers.get(site.id),
            ticket_cost=cost,
            tenants=sorted({s.scope for s in viewer.authority.visible(listed)}),
            own_tenant=viewer.authority.tenant,
            analytics=f"{PREFIX}/?{urlencode({'site': site.id})}",
            events_url=f"{PREFIX}/site/{site.id}/events",
            refused=_refusals(services.refusals.recent(site.id)),
            allow_url=f"{PREFIX}/site/{site.id}/allow-origin",
        )

    def _public_base(self, request: Request) -> str:
        """The address the browser reached the dashboard at: footfall.js is served there."""
        scheme = "https" if self.core.is_https(request) else request.url.scheme
        host = request.headers.get("host", "")
        if not _HOST.fullmatch(host):  # it goes into an attribute of the snippet
            host = request.url.netloc if _HOST.fullmatch(request.url.netloc) else "localhost"
        return f"{scheme}://{host}"

    # ------------------------------------------------------------------ install check

    async def events(self, request: Request) -> Response:
        """The install check's poll: the site's newest events (JSON; 401 without a session,
        404 for a site the session may not see)."""
        try:
            viewer = await self.core.viewer(request)
            site = await self._site(request, viewer)
        except LoginRequired:
            return _json({"error": "sign in again"}, 401)
        except ApiError as error:
            return _json({"error": error.message}, error.status)
        services = self.core.services()
        await services.committer.settled()
        recent, today = await asyncio.gather(
            self.store_call(sites.recent_events, site.id),
            self.store_call(sites.events_today, site.id),
        )
        payload = {
            "site": site.id,
            "receiving": bool(recent),
            "events": _labelled(recent),
            "events_today": today,
            "refused": _refusals(services.refusals.recent(site.id)),
        }
        return _json(payload, 200)


_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_LINK_REFUSED = (
    "This setup link cannot be used: it was used already, has expired, or is mistyped. "
    "Each start of footfall serve prints a new one until an admin password is set."
)


def _install_state(recent: Sequence[Mapping[str, Any]], seen: sites.Activity | None) -> str:
    if recent:
        return "receiving"
    return "quiet" if seen is not None else "waiting"


_FIELD_LABELS = {"id": "Site id", "name": "Name", "tenant": "Tenant", "label": "Label"}


def _form_error(error: ApiError | None) -> str | None:
    """An API error in the form's words: ``allowed_origins[1]: ...`` becomes
    ``Allowed origin 2: ...``."""
    if error is None:
        return None
    field = error.field or ""
    detail = error.message.removeprefix(f"{field}: ") if field else error.message
    found = re.fullmatch(r"allowed_origins\[(\d+)\]", field)
    if found:
        return f"Allowed origin {int(found.group(1)) + 1}: {detail}"
    if field == "allowed_origins":
        return f"Allowed origins: {detail}"
    label = _FIELD_LABELS.get(field)
    return f"{label}: {detail}" if label else error.message


def _refusals(recent: Sequence[Refusal]) -> list[dict[str, Any]]:
    """Refused origins as the install check shows them; ``allowable``: one that the allowed
    origins can list (not a missing Origin header)."""
    return [
        {
            "origin": r.origin,
            "count": r.count,
            "last_at": r.last_at.isoformat() + "Z",
            "allowable": r.origin != NO_ORIGIN,
        }
        for r in recent
    ]


def _labelled(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event with the name the dashboard shows for its type."""
    return [{**event, "label": charts.event_label(event["event"])} for event in events]


def _json(payload: Any, status: int) -> Response:
    return JSONResponse(payload, status_code=status, headers={"cache-control": "no-store"})
