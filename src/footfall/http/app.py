"""The HTTP server: the ASGI app factory, its start-up and shutdown, and the background jobs
of a running server (retention, folding the derived tables, re-reading shared state).

The routes live in one module per family (``tracking``, ``identity``, ``vendor``,
``reports``, ``operations``) and the dashboard in ``footfall.web``; what they share is in
``shared``, which imports none of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from footfall.access import issue_setup_token, needs_setup
from footfall.analytics import form_events, funnel_steps
from footfall.analytics.reports import refresh_presence
from footfall.config import Settings
from footfall.http import admin, identity, operations, reports, segment, tracking, vendor
from footfall.http.connection import protocol_class, raise_open_file_limit
from footfall.http.identity_turns import IDENTITY_LANES_SHARED, IdentityTurns
from footfall.http.middleware import ResponseCounter, UnexpectedErrors, error_handlers
from footfall.http.ratelimit import ClientAddress, SlidingWindowLimiter, TokenBucketLimiter
from footfall.http.shared import Gate, Services
from footfall.http.tracker import examples_dir, mount_demo, tracker_route
from footfall.http.watchdog import LoopWatchdog
from footfall.identity import IdentityGraph
from footfall.ingest.writer import make_committer, start_workers
from footfall.retention import apply_retention, prune_message_ids
from footfall.sites import SiteRegistry, seed_sites
from footfall.store import Store, open_store
from footfall.web.pages import Dashboard

log = logging.getLogger("footfall.api")


def _tune_gc() -> None:
    """Fewer garbage collections, none over start-up objects; measured, not guessed.

    A request waiting for its group commit keeps its objects alive past CPython's default
    700-allocation threshold, so under load they were promoted and re-walked by every
    collection: a quarter of the event loop's time (perf). Start-up objects (modules, the
    store) never become garbage, so they are frozen out of collections altogether.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def _every(
    gate: Gate,
    every: float,
    stop: asyncio.Event,
    job: Callable[[Services], Awaitable[None]],
    failure: str,
) -> None:
    """Run ``job`` now, then every ``every`` seconds until ``stop`` is set; a failure is
    logged and the job runs again next time. Shutdown sets ``stop`` and waits for a run
    under way, so the store is never closed under it."""
    while not stop.is_set():
        services = gate.services
        if services is None:
            return
        try:
            await job(services)
        except Exception as exc:
            log.warning(failure, extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def _apply_retention(services: Services, days: int) -> None:
    """Delete events older than the retention setting.

    Acknowledged events still in the ingest journal are loaded first (``settled``), so an old
    event answered before a pass is deleted by that pass.
    """
    await services.committer.settled()
    await asyncio.to_thread(apply_retention, services.store, days)


async def _fold_derived(services: Services) -> None:
    """Fold new events and identity changes into the daily rollup and person days (both
    stores), the funnel step tables and the form events (DuckDB): a report's own fold then
    has little left to do, and a store upgraded to a schema with new derived tables builds
    them at start-up instead of in the first report that needs them. On PostgreSQL every
    process folds; the folds take turns on the store's lock and a late one finds nothing."""

    def fold(store: Store) -> None:
        refresh_presence(store)
        funnel_steps.refresh(store)
        form_events.refresh(store)

    await asyncio.to_thread(fold, services.store)


def _prune(services: Services, days: int) -> None:
    """Message ids older than ``message_id_days`` go (their table stays bounded)."""
    forgotten = prune_message_ids(services.store, days)
    if forgotten:
        services.committer.forget_old_message_ids()
        log.info("old message ids forgotten", extra={"message_ids": forgotten, "days": days})


async def _refresh_shared_state(gate: Gate, every: float) -> None:
    """Re-read erase tombstones and sites every ``every`` seconds.

    Other processes on a shared (PostgreSQL) database erase persons and add sites; this bounds
    how long this process keeps accepting late events of a person erased elsewhere.
    """
    while True:
        await asyncio.sleep(every)
        services = gate.services
        if services is None:
            return
        tombstones, sites = services.tombstones, services.sites
        try:
            fresh_tombstones = await asyncio.to_thread(services.identity.tombstones)
            fresh_sites = await asyncio.to_thread(
                SiteRegistry.load,
                services.store,
                services.settings.default_site,
                services.settings.allow_missing_origin,
            )
        except Exception as exc:
            log.warning("refreshing tombstones and sites failed", extra={"error": repr(exc)})
            continue
        # An erase in this process may have replaced the set meanwhile: that one is newer.
        if services.tombstones is tombstones:
            services.tombstones = fresh_tombstones
        if services.sites is sites:
            services.sites = fresh_sites


def create_app(
    settings: Settings | None = None, announce: Callable[[str | None], None] | None = None
) -> Starlette:
    """Build the ASGI app; the store opens at start-up and is flushed and closed at shutdown.

    ``announce`` is called once the store is ready with the token of a new setup link, or
    None when an admin password exists: ``footfall serve`` prints the link (only there: the
    token never goes to the log).
    """
    if settings is None:
        settings = Settings()

    gate = Gate()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings.database, memory_limit=settings.duckdb_memory_limit)
        applied = store.migrate()
        seed_sites(store, settings)
        workers = start_workers(store, settings)
        committer = make_committer(store, settings, workers)  # DuckDB: replays its journal
        committer.start()
        graph = IdentityGraph(store, settings.identity_max_per_kind, settings.erase_tombstone_days)
        services = gate.services = Services(
            settings=settings,
            store=store,
            sites=SiteRegistry.load(store, settings.default_site, settings.allow_missing_origin),
            committer=committer,
            limiter=SlidingWindowLimiter(settings.rate_limit_per_minute),
            addresses=ClientAddress(settings.trusted_proxies),
            identity=graph,
            tombstones=graph.tombstones(),
            identity_turns=IdentityTurns(
                1 if store.backend == "duckdb" else IDENTITY_LANES_SHARED,
                settings.identity_backlog_per_tenant,
                settings.identity_backlog_total,
            ),
            writers=TokenBucketLimiter(
                settings.write_key_rate_limit_per_minute, settings.write_key_burst
            ),
            workers=workers,
        )
        setup_token = issue_setup_token(store, settings) if needs_setup(store, settings) else None
        log.info(
            "footfall started",
            extra={
                "store": store.backend,
                "migrations_applied": applied,
                "schema_version": store.schema_version(),
                "store_memory_limit": store.memory_limit(),
                "setup_link_issued": setup_token is not None,
            },
        )
        if announce is not None:
            announce(setup_token)
        refresher = asyncio.create_task(_refresh_shared_state(gate, settings.cache_refresh_seconds))
        background_stop = asyncio.Event()
        retention = (
            asyncio.create_task(
                _every(
                    gate,
                    settings.retention_interval_minutes * 60,
                    background_stop,
                    lambda services: _apply_retention(services, settings.retention_days),
                    "data retention failed; retried next time",
                )
            )
            if settings.retention_days
            else None
        )
        folding = (
            asyncio.create_task(
                _every(
                    gate,
                    settings.rollup_refresh_seconds,
                    background_stop,
                    _fold_derived,
                    "folding the derived tables failed; retried next time",
                )
            )
            if settings.rollup_refresh_seconds
            else None
        )
        pruning = asyncio.create_task(
            _every(
                gate,
                3600,
                background_stop,
                lambda services: asyncio.to_thread(_prune, services, settings.message_id_days),
                "forgetting old message ids failed; retried next time",
            )
        )
        _tune_gc()
        watchdog = LoopWatchdog()
        watchdog.start()
        try:
            yield
        finally:
            await watchdog.stop()
            refresher.cancel()
            background_stop.set()
            for task in (retention, folding, pruning):
                if task is not None:
                    await task  # a pass under way finishes before the store closes
            gate.services = None  # late requests get 503, not a closed store
            await asyncio.to_thread(committer.stop)
            if workers is not None:
                await asyncio.to_thread(workers.stop)
            services.identity_turns.close()
            store.close()
            log.info("footfall stopped; every acknowledged event is committed")

    if settings.demo and not (examples_dir() / "shop.html").is_file():
        raise ValueError(
            f"--demo needs the examples/ of a source checkout; not found at {examples_dir()}"
        )
    routes: list[BaseRoute] = [
        *tracking.routes(gate, settings),
        *segment.routes(gate),
        *operations.routes(gate),
        tracker_route(),
        *identity.routes(gate),
        *vendor.routes(gate),
        *reports.routes(gate),
        *admin.routes(gate),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=error_handlers())
    operations.mount_docs_assets(app)
    app.router.routes.extend(Dashboard(gate, settings).routes())
    if settings.demo:
        mount_demo(app)
    app.state.gate = gate  # error handlers check the origin against the sites
    app.add_middleware(UnexpectedErrors)
    app.add_middleware(ResponseCounter)
    return app


def server_config(settings: Settings, app: Starlette) -> uvicorn.Config:
    """How uvicorn runs the app: uvloop, and httptools through ``http.connection``, which adds
    the header and body deadlines, the bound on open connections and JSON parser errors."""
    raise_open_file_limit(settings.max_connections)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=protocol_class(settings),
        ws="none",  # no WebSocket routes: an Upgrade is answered as plain HTTP
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-For is honoured only from trusted_proxies
        server_header=False,
        timeout_graceful_shutdown=30,
    )
