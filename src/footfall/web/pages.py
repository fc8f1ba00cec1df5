"""The dashboard's pages: login, analytics panels, person search and a person's profile.

Every analytics page reads the same query parameters as ``GET /api/reports/{name}``
(``site``, ``from``, ``to``, ``days`` and the report's own options), parses them with the
same functions and runs the same report function, once per panel, in a worker thread, so
the dashboard and the API show the same numbers. Pages are rendered on the server with
Jinja2 (autoescaped: questions, identifiers and error texts are user input); charts are
Plotly figures drawn in the browser from the installed plotly package's bundle.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

import msgspec
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from footfall.access import admin_password_hash, revoke_session, session_revoked
from footfall.analytics.params import (
    deflection_defaults,
    report_filters,
    report_options,
    site_scope,
)
from footfall.analytics.reports import (
    BREAKDOWNS,
    CUSTOM_PREFIX,
    INTERVALS,
    MAX_FUNNEL_STEPS,
    REPORTS,
    Filters,
)
from footfall.config import Settings
from footfall.errors import ApiError, invalid
from footfall.http.ratelimit import SlidingWindowLimiter
from footfall.http.shared import Gate, Services
from footfall.identity import MAX_NAME_CHARS
from footfall.ingest.validate import CUSTOM_EVENT, EVENT_TYPES
from footfall.passwords import password_fingerprint, verify_password
from footfall.web import charts
from footfall.web.admin import ADMIN_NAV, NAV_PREFIXES, AdminPages
from footfall.web.assets import Assets
from footfall.web.auth import (
    CSRF_FIELD,
    SESSION_SECONDS,
    LoginRequired,
    SessionCodec,
    Viewer,
    csrf_matches,
    load_session_secret,
    new_csrf_token,
    read_form,
)
from footfall.web.people import display_name, search_identifiers
from footfall.words import counted, noun

log = logging.getLogger("footfall.web")
_T = TypeVar("_T")

PREFIX = "/dashboard"
COOKIE = "footfall_dashboard"
JOURNEY_LIMIT = 1000
LOGIN_ATTEMPTS_PER_MINUTE = 20
QUICK_RANGES = (7, 30, 90)
WINDOWS = (("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"))
COMMON_PARAMS = ("site", "from", "to", "days")
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
DONE_MESSAGES = {
    "erased": "The person was erased: {identifiers} and {events} deleted. "
    "Late events of those identifiers are dropped.",
    "split": "The link was removed and the persons recomputed.",
}


@dataclass(slots=True)
class View:
    """One analytics page request: the viewer, the sites and range chosen, the parameters."""

    viewer: Viewer
    params: dict[str, str]
    filters: Filters
    site_value: str
    site_options: list[tuple[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)

    def query(self, keep: Sequence[str] = COMMON_PARAMS, **changes: str | None) -> str:
        """The query string of this view with ``changes`` (None removes a parameter)."""
        values = {k: v for k, v in self.params.items() if k in keep and v != ""}
        for key, value in changes.items():
            name = key.rstrip("_")  # from_ is from
            if value is None:
                values.pop(name, None)
            else:
                values[name] = value
        return ("?" + urlencode(values)) if values else ""

    def hidden(self, *exclude: str) -> list[tuple[str, str]]:
        """Current parameters as hidden form fields, except those the form itself sets."""
        return [(k, v) for k, v in self.params.items() if k not in exclude and v != ""]

    @property
    def range_label(self) -> str:
        """ISO dates (``2026-11-06``), as the date fields show them: one format on a page."""
        start, last = self.date_inputs
        return f"{start} \u2013 {last}"

    @property
    def date_inputs(self) -> tuple[str, str]:
        start, end = self.filters.start, self.filters.end
        last = end - timedelta(days=1) if end.time() == end.min.time() else end
        return start.date().isoformat(), last.date().isoformat()

    @property
    def quick_days(self) -> int | None:
        """The quick range in use (no explicit from/to), for highlighting it."""
        if self.params.get("from") or self.params.get("to"):
            return None
        raw = self.params.get("days") or "30"
        return int(raw) if raw.isdigit() else None


class Dashboard:
    """The dashboard's routes; it shares the running services with the JSON API."""

    def __init__(self, gate: Gate, settings: Settings) -> None:
        self.gate = gate
        self.settings = settings
        self.assets = Assets()
        self.login_limiter = SlidingWindowLimiter(LOGIN_ATTEMPTS_PER_MINUTE)
        self._codec: SessionCodec | None = None
        self._trusted = [ipaddress.ip_network(p, strict=False) for p in settings.trusted_proxies]
        env = Environment(
            loader=PackageLoader("footfall.web", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters.update(
            num=charts.fmt_int,
            eur=charts.fmt_eur,
            pct=charts.fmt_pct,
            pp=charts.fmt_pp,
            pvalue=charts.fmt_p,
            time=charts.fmt_time,
            event=charts.event_label,
            counted=counted,
            noun=noun,
        )
        env.globals.update(asset=self.assets.url, prefix=PREFIX, CSRF_FIELD=CSRF_FIELD)
        self.env = env

    # ------------------------------------------------------------------ plumbing

    def services(self) -> Services:
        return self.gate.running()

    @property
    def codec(self) -> SessionCodec:
        if self._codec is None:
            secret = load_session_secret(self.settings.session_secret, self.settings.database)
            self._codec = SessionCodec(secret)
        return self._codec

    def session(self, request: Request) -> dict[str, Any] | None:
        return self.codec.decode(request.cookies.get(COOKIE))

    def is_https(self, request: Request) -> bool:
        """Secure cookies over HTTPS, also behind a trusted proxy that terminates TLS."""
        if request.url.scheme == "https":
            return True
        client = request.client.host if request.client else ""
        try:
            peer = ipaddress.ip_address(client)
        except ValueError:
            return False
        trusted = any(peer in net for net in self._trusted)
        return trusted and request.headers.get("x-forwarded-proto", "").lower() == "https"

    def set_session(self, request: Request, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.codec.encode(data),
            max_age=SESSION_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="lax",
            secure=self.is_https(request),
        )

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        viewer = context.get("viewer")
        nav = [
            item
            for item in (*_NAV, *ADMIN_NAV)
            if viewer is not None and (viewer.admin or not item[3])
        ]
        page = self.env.get_template(template).render(
            path=request.url.path, nav=nav, nav_prefixes=NAV_PREFIXES, **context
        )
        return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)

    async def admin_password(self) -> str | None:
        """The admin password's hash in force (the config's, else the one set on the setup
        page; read each time, so a password set by another process counts at once)."""
        if self.settings.admin_password_hash:
            return self.settings.admin_password_hash
        return await asyncio.to_thread(admin_password_hash, self.services().store, self.settings)

    def client_address(self, request: Request) -> str:
        return self.services().addresses.resolve(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
        )

    def sign_in(self, request: Request, response: Response, data: dict[str, Any]) -> Response:
        """Start a session; a fresh CSRF token, so a token planted before is worthless."""
        self.set_session(request, response, {**data, CSRF_FIELD: new_csrf_token()})
        log.info("dashboard login", extra={"who": data["who"], "site": data.get("site")})
        return response

    def page(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Login redirects and errors as HTML pages instead of the API's JSON."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    f"{PREFIX}/login?{urlencode({'next': target})}", status_code=303
                )
            except ApiError as error:
                return self.error_page(request, error.status, error.message)

        return endpoint

    def error_page(self, request: Request, status: int, message: str) -> HTMLResponse:
        session = self.session(request)
        return self.render(
            request,
            "error.html",
            status=status,
            title={403: "Not allowed", 404: "Not found"}.get(status, "Something is wrong"),
            status_code=status,
            message=message,
            viewer=None,
            logged_in=bool(session and session.get("who")),
            csrf=(session or {}).get(CSRF_FIELD, ""),
        )

    async def viewer(self, request: Request) -> Viewer:
        session = self.session(request)
        if not session or not isinstance(session.get(CSRF_FIELD), str):
            raise LoginRequired
        services = self.services()
        if await asyncio.to_thread(session_revoked, services.store, session[CSRF_FIELD]):
            raise LoginRequired  # logged out: a copy of the cookie is worth nothing
        if session.get("who") == "admin":
            configured = await self.admin_password()
            if not configured or session.get("ph") != password_fingerprint(configured):
                raise LoginRequired
            return Viewer(admin=True, csrf=session[CSRF_FIELD])
        if session.get("who") == "key":
            key_id, site_id = session.get("kid"), session.get("site")
            if not isinstance(key_id, str) or not isinstance(site_id, str):
                raise LoginRequired
            key = await asyncio.to_thread(services.store.get_api_key, key_id)
            site = services.sites.sites.get(site_id)
            if key is None or key.revoked or key.site_id != site_id or site is None:
                raise LoginRequired  # revoked key or deleted site: the session ends
            return Viewer(admin=False, csrf=session[CSRF_FIELD], site=site)
        raise LoginRequired

    async def view(self, request: Request) -> View:
        """The viewer, the sites they asked for (within what they may see) and the range."""
        viewer = await self.viewer(request)
        known = self.services().sites.sites
        params = {k: v for k, v in request.query_params.items()}
        if len(request.query_params.getlist("steps")) > 1:  # the funnel page's step fields
            chosen = (s.strip() for s in request.query_params.getlist("steps"))
            params["steps"] = ",".join(s for s in chosen if s)
        requested = (params.get("site") or "").strip()
        visible = viewer.sites(known)
        options: list[tuple[str, str]]
        sites: list[str] | None
        if viewer.site is None:
            options = [("all", "All sites")] + [(s.id, s.name or s.id) for s in visible]
            if requested in ("", "all"):
                sites, value = None, "all"
            else:
                sites = [s.strip() for s in requested.split(",") if s.strip()]
                for name in sites:
                    if name not in known:
                        raise invalid("site", f"unknown site '{name[:64]}'")
                value = requested
        else:
            options = [(s.id, s.name or s.id) for s in visible]
            if len(visible) > 1:
                options.append((",".join(s.id for s in visible), "All sites of this key"))
            sites = site_scope(viewer.site, requested or None, known)
            value = requested or viewer.site.id
        if value not in {o[0] for o in options}:
            options.append((value, value))
        filters = report_filters(params, sites)
        return View(viewer, params, filters, value, options)

    async def report(self, view: View, name: str) -> dict[str, Any]:
        """One report, with the options parsed exactly as the JSON API parses them."""
        report = REPORTS[name]
        defaults = deflection_defaults(
            self.settings.deflection_session_minutes, self.settings.deflection_window_days
        )
        options = report_options(report, view.params, defaults)
        services = self.services()
        await services.committer.settled()
        try:
            return await asyncio.to_thread(report.run, services.store, view.filters, **options)
        except ValueError as exc:
            raise invalid("options", str(exc)) from None

    def analytics(
        self, request: Request, view: View, template: str, title: str, **context: Any
    ) -> HTMLResponse:
        return self.render(
            request,
            template,
            title=title,
            view=view,
            viewer=view.viewer,
            csrf=view.viewer.csrf,
            quick_ranges=QUICK_RANGES,
            **context,
        )

    # ------------------------------------------------------------------ login

    async def login_form(self, request: Request) -> Response:
        session = self.session(request)
        target = _safe_next(request.query_params.get("next"))
        if session and session.get("who"):
            try:
                await self.viewer(request)
                return RedirectResponse(target, status_code=303)
            except LoginRequired:
                session = None
        return await self._login_page(request, session, target)

    async def _login_page(
        self,
        request: Request,
        session: dict[str, Any] | None,
        target: str,
        error: str | None = None,
        status: int = 200,
        method: str = "key",
    ) -> Response:
        csrf = (session or {}).get(CSRF_FIELD) or new_csrf_token()
        response = self.render(
            request,
            "login.html",
            status=status,
            title="Sign in",
            viewer=None,
            csrf=csrf,
            next=target,
            error=error,
            method=method,
            admin_enabled=bool(await self.admin_password()),
        )
        self.set_session(request, response, {CSRF_FIELD: csrf})
        return response

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        session = self.session(request)
        target = _safe_next(form.get("next"))
        method = form.get("method", "key")
        if not csrf_matches(session, form.get(CSRF_FIELD)):
            return await self._login_page(
                request, None, target, "The sign-in form had expired. Please try again.", 403
            )
        if self.login_limiter.check(self.client_address(request)):
            return await self._login_page(
                request, session, target, "Too many attempts. Wait a minute.", 429, method
            )
        data: dict[str, Any]
        if method == "password":
            configured = await self.admin_password()
            password = form.get("password", "")
            if not configured:
                return await self._login_page(
                    request, session, target, "No admin password is set yet.", 401, method
                )
            if not password or not await asyncio.to_thread(verify_password, password, configured):
                log.warning("dashboard admin login refused")
                return await self._login_page(
                    request, session, target, "That password is not right.", 401, method
                )
            data = {"who": "admin", "ph": password_fingerprint(configured)}
        else:
            key = form.get("key", "").strip()
            try:
                site = await asyncio.to_thread(self.gate.site_for_key, key)
            except ApiError:
                log.warning("dashboard key login refused")
                return await self._login_page(
                    request, session, target, "That API key is unknown or revoked.", 401, method
                )
            data = {"who": "key", "kid": key.split("_", 2)[1], "site": site.id}
        return self.sign_in(request, RedirectResponse(target, status_code=303), data)

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        session = self.session(request)
        if session is None or not csrf_matches(session, form.get(CSRF_FIELD)):
            raise ApiError(403, "FORBIDDEN", "the form had expired; reload the page and try again")
        # Deleting the cookie is not enough: a copy of it would stay good until it expires.
        until = datetime.fromtimestamp(int(session["exp"]), UTC).replace(tzinfo=None)
        await asyncio.to_thread(revoke_session, self.services().store, session[CSRF_FIELD], until)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="lax")
        return response

    # ------------------------------------------------------------------ analytics pages

    async def overview(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "overview")
        return self.analytics(
            request,
            view,
            "overview.html",
            "Overview",
            data=data,
            trend=charts.overview_trend(data["daily"]),
            revenue=charts.overview_revenue(data["daily"]),
        )

    async def people(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "people")
        return self.analytics(
            request,
            view,
            "people.html",
            "Unique people",
            data=data,
            intervals=INTERVALS,
            figure=charts.people_series(data["series"], data["interval"]),
        )

    async def retention(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "retention")
        return self.analytics(
            request,
            view,
            "retention.html",
            "Retention",
            data=data,
            intervals=INTERVALS,
            period_choices=(4, 6, 8, 12),
            figure=charts.retention_heatmap(data),
        )

    async def funnel(self, request: Request) -> Response:
        view = await self.view(request)
        data, custom = await asyncio.gather(
            self.report(view, "funnel"), self.report(view, "custom-events")
        )
        window = view.params.get("window") or "7d"
        return self.analytics(
            request,
            view,
            "funnel.html",
            "Funnel",
            data=data,
            steps=data["steps"],
            step_choices=_step_choices(data["steps"], [e["name"] for e in custom["events"]]),
            max_steps=MAX_FUNNEL_STEPS,
            windows=WINDOWS if window in dict(WINDOWS) else (*WINDOWS, (window, window)),
            window=window,
            breakdowns=[(b, charts.BREAKDOWN_LABELS[b]) for b in BREAKDOWNS],
            figure=charts.funnel_chart(data),
        )

    async def ab(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "ab")
        groups = {g["group"]: g for g in data["groups"]}
        return self.analytics(
            request,
            view,
            "ab.html",
            "A/B test",
            data=data,
            groups=groups,
            goals=sorted(EVENT_TYPES),
            verdict=charts.ab_verdict(data["comparison"], data["goal"]),
            figure=charts.ab_chart(data["groups"]),
        )

    async def revenue(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "revenue")
        return self.analytics(
            request,
            view,
            "revenue.html",
            "Revenue",
            data=data,
            intervals=INTERVALS,
            figure=charts.revenue_chart(data["series"], data["interval"]),
        )

    async def widget(self, request: Request) -> Response:
        view = await self.view(request)
        popups, feedback = await asyncio.gather(
            self.report(view, "popups"), self.report(view, "feedback")
        )
        return self.analytics(
            request,
            view,
            "widget.html",
            "Popups and feedback",
            popups=popups,
            feedback=feedback,
            popups_chart=charts.popups_chart(popups["versions"]),
            feedback_chart=charts.feedback_chart(feedback["chatbots"]),
        )

    async def questions(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "power-users")
        tenants = view.viewer.tenants(self.services().sites.sites)
        chosen = {
            self.services().sites.sites[s].scope
            for s in (view.filters.sites or [])
            if s in self.services().sites.sites
        }
        tenant = next(iter(chosen)) if len(chosen) == 1 else None
        if tenant is None and len(tenants) == 1:
            tenant = next(iter(tenants))
        for user in data["users"]:
            user["name"] = _person_name(user)
        return self.analytics(
            request,
            view,
            "questions.html",
            "Questions and power users",
            data=data,
            tenant=tenant,
            figure=charts.questions_chart(data["common_questions"]),
        )

    async def errors(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "errors")
        return self.analytics(
            request,
            view,
            "errors.html",
            "Client errors",
            data=data,
            figure=charts.errors_chart(data["daily"]),
        )

    async def custom_events(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "custom-events")
        return self.analytics(
            request,
            view,
            "custom_events.html",
            "Custom events",
            data=data,
            figure=charts.custom_events_chart(data["daily"]),
        )

    async def deflection(self, request: Request) -> Response:
        view = await self.view(request)
        data = await self.report(view, "deflection")
        return self.analytics(
            request,
            view,
            "deflection.html",
            "Support form",
            data=data,
            figure=charts.deflection_chart(data["series"]),
            funnel_figure=charts.deflection_funnel(data["funnel"]),
            step_labels=charts.DEFLECTION_STEPS,
        )

    # ------------------------------------------------------------------ persons

    def _person_scope(self, viewer: Viewer, tenant: str | None) -> dict[str, list[str]]:
        """The tenants (with their sites) a person lookup may search, or 403."""
        tenants = viewer.tenants(self.services().sites.sites)
        if not tenant:
            return tenants
        if tenant not in tenants:
            raise ApiError(403, "FORBIDDEN", "this login cannot see that site's persons")
        return {tenant: tenants[tenant]}

    async def persons(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        params = request.query_params
        text = (params.get("q") or "").strip()[:MAX_NAME_CHARS]
        known = self.services().sites.sites
        tenants = self._person_scope(viewer, params.get("tenant"))
        hits = []
        if text:
            services = self.services()
            await services.committer.settled()
            hits = await asyncio.to_thread(search_identifiers, services.store, tenants, text)
        done = params.get("done")
        message = None
        if done in DONE_MESSAGES:
            counts = {k: counted(_count(params.get(k)), k[:-1]) for k in ("identifiers", "events")}
            message = DONE_MESSAGES[done].format(**counts)
        return self.render(
            request,
            "persons.html",
            title="Person search",
            viewer=viewer,
            csrf=viewer.csrf,
            text=text,
            hits=hits,
            message=message,
            tenant_names={t: ", ".join(s) for t, s in viewer.tenants(known).items()},
            many_tenants=len(viewer.tenants(known)) > 1,
        )

    def _locate(self, tenants: Mapping[str, Sequence[str]], name: str) -> tuple[str, int] | None:
        """The tenant and person of a name, in the first of the viewer's tenants that has
        one (a token seen only on events included: ``IdentityGraph.locate``)."""
        identity = self.services().identity
        for tenant in tenants:
            node = identity.locate(tenant, name)
            if node is not None:
                return tenant, node.person_id
        return None

    async def _on_person(
        self, tenants: Mapping[str, Sequence[str]], name: str, work: Callable[[str, int], _T]
    ) -> _T:
        """``work(tenant, person_id)`` off the event loop, once every acknowledged event is
        readable; 404 when no person has the name."""
        services = self.services()
        await services.committer.settled()

        def run() -> tuple[_T] | None:
            found = self._locate(tenants, name)
            return None if found is None else (work(*found),)

        result = await asyncio.to_thread(run)
        if result is None:
            raise ApiError(404, "NOT_FOUND", "No person has that identifier (it may be erased).")
        return result[0]

    async def person(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        params = request.query_params
        name = _name(params.get("name"), "name")
        tenants = self._person_scope(viewer, params.get("tenant"))
        a = (params.get("a") or "").strip()
        b = (params.get("b") or "").strip()
        services = self.services()

        def load(tenant: str, person_id: int) -> dict[str, Any]:
            profile = services.identity.profile(tenant, person_id)
            events = services.identity.person_events(tenant, person_id, JOURNEY_LIMIT)
            chain = None
            if a and b:
                steps = services.identity.explain(tenant, _name(a, "a"), _name(b, "b"))
                chain = [s.to_dict() for s in steps] if steps is not None else []
            return {"tenant": tenant, "profile": profile, "events": events, "chain": chain}

        found = await self._on_person(tenants, name, load)
        profile = found["profile"]
        names = [f"{i['kind']}:{i['value']}" for i in profile["identifiers"]]
        message = DONE_MESSAGES["split"] if params.get("done") == "split" else None
        for event in found["events"]:
            event["details"] = _describe(event)
            if event["event"] == CUSTOM_EVENT:  # shown by its own name
                event["event"] = CUSTOM_PREFIX + str(event["custom_event"])
        return self.render(
            request,
            "person.html",
            title="Person",
            viewer=viewer,
            csrf=viewer.csrf,
            name=name,
            tenant=found["tenant"],
            profile=profile,
            shown_name=display_name(profile["identifiers"]),
            identifier_names=names,
            events=found["events"],
            journey_limit=JOURNEY_LIMIT,
            journey=charts.journey_chart(found["events"]),
            explain_a=a or (names[0] if names else name),
            explain_b=b or (names[-1] if len(names) > 1 else ""),
            chain=found["chain"],
            message=message,
            metadata=sorted(profile["metadata"].items()),
        )

    async def export(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        params = request.query_params
        name = _name(params.get("name"), "name")
        tenants = self._person_scope(viewer, params.get("tenant"))
        identity = self.services().identity
        person_id, document = await self._on_person(
            tenants, name, lambda tenant, person: (person, identity.export(tenant, person))
        )
        return Response(
            msgspec.json.encode(document),
            media_type="application/json",
            headers={
                **SECURITY_HEADERS,
                "content-disposition": f'attachment; filename="person-{person_id}.json"',
            },
        )

    async def erase_form(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        params = request.query_params
        name = _name(params.get("name"), "name")
        tenants = self._person_scope(viewer, params.get("tenant"))
        identity = self.services().identity
        tenant, profile = await self._on_person(
            tenants, name, lambda tenant, person: (tenant, identity.profile(tenant, person))
        )
        return self.render(
            request,
            "erase.html",
            title="Erase person",
            viewer=viewer,
            csrf=viewer.csrf,
            name=name,
            tenant=tenant,
            profile=profile,
            shown_name=display_name(profile["identifiers"]),
        )

    async def checked_form(self, request: Request) -> tuple[Viewer, dict[str, str]]:
        """The viewer and the form they sent, or 403 when its CSRF token is not theirs."""
        viewer = await self.viewer(request)
        form = await read_form(request)
        if not csrf_matches({CSRF_FIELD: viewer.csrf}, form.get(CSRF_FIELD)):
            raise ApiError(403, "FORBIDDEN", "the form had expired; reload the page and try again")
        return viewer, form

    async def erase(self, request: Request) -> Response:
        viewer, form = await self.checked_form(request)
        name = _name(form.get("name"), "name")
        tenants = self._person_scope(viewer, form.get("tenant"))
        services = self.services()
        counts = await self._on_person(
            tenants,
            name,
            lambda tenant, person: services.identity.erase(tenant, person, viewer.actor),
        )
        services.tombstones = await asyncio.to_thread(services.identity.tombstones)
        log.info("dashboard erase", extra={"actor": viewer.actor, **counts})
        query = urlencode({"done": "erased", **{k: str(v) for k, v in counts.items()}})
        return RedirectResponse(f"{PREFIX}/persons?{query}", status_code=303)

    async def split(self, request: Request) -> Response:
        viewer, form = await self.checked_form(request)
        tenant = form.get("tenant") or ""
        tenants = self._person_scope(viewer, tenant)
        if len(tenants) != 1:
            raise invalid("tenant", "required")
        a, b = _name(form.get("a"), "a"), _name(form.get("b"), "b")
        back = _name(form.get("name"), "name")
        services = self.services()
        await asyncio.to_thread(services.identity.split, tenant, a, b, viewer.actor)
        query = urlencode({"name": back, "tenant": tenant, "a": a, "b": b, "done": "split"})
        return RedirectResponse(f"{PREFIX}/person?{query}", status_code=303)

    # ------------------------------------------------------------------ misc

    async def asset(self, request: Request) -> Response:
        return await self.assets.response(request, request.path_params["name"])

    async def not_found(self, request: Request) -> Response:
        return self.error_page(request, 404, "There is no such page.")

    def routes(self) -> list[BaseRoute]:
        page = self.page
        table: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
            ("/login", page(self.login_form), ["GET"]),
            ("/login", page(self.login), ["POST"]),
            ("/logout", page(self.logout), ["POST"]),
            ("/", page(self.overview), ["GET"]),
            ("/people", page(self.people), ["GET"]),
            ("/retention", page(self.retention), ["GET"]),
            ("/funnel", page(self.funnel), ["GET"]),
            ("/ab", page(self.ab), ["GET"]),
            ("/revenue", page(self.revenue), ["GET"]),
            ("/widget", page(self.widget), ["GET"]),
            ("/questions", page(self.questions), ["GET"]),
            ("/errors", page(self.errors), ["GET"]),
            ("/custom-events", page(self.custom_events), ["GET"]),
            ("/support-form", page(self.deflection), ["GET"]),
            ("/persons", page(self.persons), ["GET"]),
            ("/person", page(self.person), ["GET"]),
            ("/person/export", page(self.export), ["GET"]),
            ("/person/erase", page(self.erase_form), ["GET"]),
            ("/person/erase", page(self.erase), ["POST"]),
            ("/person/split", page(self.split), ["POST"]),
            *AdminPages(self).routes(page),
            ("/assets/{name}", self.asset, ["GET", "HEAD"]),
            ("/{rest:path}", page(self.not_found), ["GET"]),
        ]
        inner = [Route(path, fn, methods=methods) for path, fn, methods in table]
        return [
            Route("/", _to_dashboard, methods=["GET"]),
            Route(PREFIX, _to_dashboard, methods=["GET"]),
            Mount(PREFIX, routes=inner),
        ]


_NAV = (
    ("Analytics", "/", "Overview", False),
    ("Analytics", "/people", "Unique people", False),
    ("Analytics", "/retention", "Retention", False),
    ("Analytics", "/funnel", "Funnel", False),
    ("Analytics", "/ab", "A/B test", False),
    ("Analytics", "/revenue", "Revenue", False),
    ("Analytics", "/widget", "Popups & feedback", False),
    ("Analytics", "/questions", "Questions", False),
    ("Analytics", "/errors", "Client errors", False),
    ("Analytics", "/custom-events", "Custom events", False),
    ("Analytics", "/support-form", "Support form", False),
    ("People", "/persons", "Person search", False),
)
"""(group, path, label, administrator only) of each sidebar link."""


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=303)


def _safe_next(value: str | None) -> str:
    """Only a path of the dashboard itself: never an open redirect to another host."""
    if value and value.startswith(f"{PREFIX}/") and "//" not in value and "\\" not in value:
        return value
    return f"{PREFIX}/"


def _name(value: str | None, field_name: str) -> str:
    text = (value or "").strip()
    if not text:
        raise invalid(field_name, "required")
    if len(text) > MAX_NAME_CHARS + 16:
        raise invalid(field_name, f"at most {MAX_NAME_CHARS} characters")
    return text


def _step_choices(steps: Sequence[str], custom: Sequence[str]) -> list[tuple[str, str]]:
    """(value, label) of every step a funnel may take: the 13 types by their labels, then
    the custom events of the range (``custom:NAME``) and any chosen step not among them."""
    choices = [(e, charts.event_label(e)) for e in charts.EVENT_LABELS if e in EVENT_TYPES]
    choices += [(CUSTOM_PREFIX + name, charts.event_label(CUSTOM_PREFIX + name)) for name in custom]
    known = {value for value, _ in choices}
    choices += [(s, charts.event_label(s)) for s in dict.fromkeys(steps) if s not in known]
    return choices


def _count(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def _person_name(user: Mapping[str, Any]) -> str:
    """The explicit name (``email:...``) a power user's row links to."""
    identifiers: list[str] = list(user.get("identifiers") or [])
    for kind in ("email", "client_id", "alias", "token"):
        for identifier in identifiers:
            if identifier.startswith(f"{kind}:"):
                return identifier
    return f"token:{user['token']}"


def _describe(event: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The few facts of an event worth a line in the journey."""
    data = event.get("data") or {}
    facts: list[tuple[str, str]] = []
    for label, value in (
        ("chatbot", event.get("chatbot_id")),
        ("text", data.get("text")),
        ("opened by", data.get("open_way")),
        ("popup", data.get("popup_version")),
        ("order", event.get("order_num")),
        ("error", data.get("message") or data.get("error")),
    ):
        if value not in (None, ""):
            facts.append((label, str(value)[:300]))
    if event.get("total_value_base") is not None:
        facts.append(("value", charts.fmt_eur(event["total_value_base"])))
    if event.get("duplicate"):
        facts.append(("", "repeated order, counted once"))
    items = event.get("items") or []
    if items:
        facts.append(("items", ", ".join(str(i.get("item_id", "?")) for i in items[:5])))
    if event.get("ab_group"):
        facts.append(("A/B", str(event["ab_group"])))
    return facts
