"""Configuration: defaults < TOML file < FOOTFALL_* environment < explicit overrides.

The TOML file is found via ``--config``, ``FOOTFALL_CONFIG`` or ``./footfall.toml``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "footfall.toml"


def _split_csv(value: Any) -> Any:
    """Let list settings be given as ``a,b,c`` in the environment, not only as JSON."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class SiteSeed(BaseModel):
    """A site declared in the config file; created or updated at start-up."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = ""
    allowed_origins: list[str] = Field(default_factory=list)
    tenant: str | None = None
    """Sites with the same tenant share one identity graph."""


class Settings(BaseSettings):
    """Everything an operator can set."""

    model_config = SettingsConfigDict(env_prefix="FOOTFALL_", extra="forbid", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    database: str = "footfall.duckdb"
    """A DuckDB file path (embedded default) or a ``postgresql://`` URL."""

    default_site: str = Field(default="default", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    """Origins the default site accepts; ``*`` accepts any (development only)."""
    allow_missing_origin: bool = True
    """Accept tracking calls that carry neither Origin nor Referer (server-side senders)."""
    sites: list[SiteSeed] = Field(default_factory=list)

    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Peers (IPs or CIDRs) whose X-Forwarded-For header is believed."""
    rate_limit_per_minute: int = Field(default=120, ge=0)
    """Requests per client IP per sliding minute on public endpoints; 0 turns it off."""
    write_key_rate_limit_per_minute: int = Field(default=6000, ge=0)
    """Server-side senders (a write key in the ``Authorization: Basic`` header, no Origin or
    Referer: Segment's and RudderStack's server libraries) are held to this many requests a
    minute per write key and client IP instead of the per-IP limit, in bursts of up to
    ``write_key_burst``; 0 turns it off. Per IP too because a write key is public: whoever
    copies it from a page cannot use up a backend's allowance."""
    write_key_burst: int = Field(default=1000, ge=1)
    """Requests a write-key sender may send at once before ``write_key_rate_limit_per_minute``
    paces it."""

    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """A request's headers must arrive within this time of its first byte (408 otherwise),
    and a new connection that sends nothing is closed after it."""
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """A request's body must arrive within this time of its headers (408 otherwise)."""
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    """Open connections at most; at the limit a new one closes the connection that has
    waited longest for its client (idle ones first), else it is answered 503."""
    max_url_bytes: int = Field(default=65_535, ge=256, le=65_535)
    """Longest request target (path and query string); longer: 414. 65,535 is the HTTP
    parser's own ceiling."""
    max_header_bytes: int = Field(default=65_536, ge=1024, le=16_777_216)
    """Most bytes of request headers (besides the request line); more: 431."""

    max_batch_events: int = Field(default=500, ge=1, le=10_000)
    max_batch_bytes: int = Field(default=5_000_000, ge=50_000)
    segment_max_batch_bytes: int = Field(default=9_000_000, ge=64 * 1024, le=64_000_000)
    """Largest Segment-spec batch (``/v1/batch``, ``/v1/import``, ``/v1/b``) as JSON, after
    gzip is inflated (the body as sent is held to it too): larger answers 400 ANALYTICS_002.
    rudder-sdk-python closes a batch once it reaches 4 MiB, so its last message (up to 4 MiB
    in that library) can take it to 8 MiB; a message over 32 KB is refused alone."""
    commit_max_events: int = Field(default=5_000, ge=1)
    """Most events written in one group-commit transaction."""
    commit_linger_ms: float = Field(default=0.0, ge=0, le=100)
    """How long the writer waits for more requests to join a transaction."""
    commit_queue_events: int = Field(default=100_000, ge=1)
    """Pending events before ingest answers 503 (back-pressure instead of unbounded memory)."""
    ingest_journal: bool = True
    """DuckDB: a 200 means synced to the ingest journal, loaded into DuckDB in large batches
    (DuckDB's cost per transaction is too high for one per group); false commits each group
    to DuckDB directly. PostgreSQL always commits directly."""
    ingest_workers: int = Field(default_factory=lambda: _default_workers(), ge=0, le=64)
    """DuckDB journal mode: worker processes that decode and check large batches (32 KB
    and up) and build the journal loader's Arrow batches, so that per-event work runs
    beside the server process instead of in its one Python thread at a time; 0: none."""
    journal_dir: str | None = None
    """Where the journal's segment files live; default ``<database>.journal`` beside it."""
    journal_segment_mb: int = Field(default=64, ge=1, le=4096)
    """A journal segment file is closed at this size and deleted once loaded."""
    journal_load_interval_ms: float = Field(default=1000.0, ge=0, le=10_000)
    """Under load, at most one DuckDB load per interval (a waiting reader loads at once).
    A DuckDB commit costs about 1.7 ms whatever its size, so fewer, larger loads leave the
    CPU to the requests: 250 ms gave ~2,300 events per load at 11k events/s, 1 s ~10,000."""
    journal_load_max_events: int = Field(default=50_000, ge=1)
    """Most events in one DuckDB load transaction."""
    duckdb_memory_limit: (
        Annotated[str, Field(pattern=r"(?i)^\s*\d+(\.\d+)?\s*(([KMGT]i?B)|%)\s*$")] | None
    ) = None
    """Cap on DuckDB's buffer memory, e.g. ``1GB``, ``512MiB`` or ``25%`` of RAM; beyond it
    DuckDB spills large queries to disk. Unset: DuckDB's default (80 % of RAM)."""
    malloc_arena_max: int = Field(default=2, ge=0, le=1024)
    """glibc malloc arenas of ``footfall serve`` (set from the process at start-up); glibc's
    own default, 8 per core, scatters freed memory over many heaps. 0: glibc's default;
    ``MALLOC_ARENA_MAX`` in the environment takes precedence."""

    message_id_days: int = Field(default=30, ge=1, le=36_500)
    """How long a message id (Segment's ``messageId``) is remembered: a message re-sent
    within this time is stored once; older ids are deleted hourly, bounding their table."""
    identity_max_per_kind: int = Field(default=100, ge=1)
    """A person with more identifiers of one kind refuses further automatic merges."""
    identity_calls_per_request: int = Field(default=100, ge=1)
    """Identity calls (identify, alias, group) one write-key or public request may carry; the
    rest of a larger Segment batch is refused message by message (a secret API key, e.g.
    ``footfall import --server``, is not held to it). Segment's and RudderStack's libraries
    send at most 100 messages a batch."""
    identity_backlog_per_tenant: int = Field(default=1000, ge=1)
    """Identity calls queued for one tenant in this process before its requests get 429."""
    identity_backlog_total: int = Field(default=5000, ge=1)
    """Identity calls queued in this process before identity requests get 503."""
    erase_tombstone_days: int = Field(default=30, ge=0)
    """After an erase, events of the erased identifiers are dropped for this long."""
    retention_days: int = Field(default=0, ge=0, le=36_500)
    """Events from before midnight (UTC) this many days ago are deleted, with what was derived
    from them (the orders they counted, daily rollups); 0 keeps every event."""
    retention_interval_minutes: float = Field(default=60.0, gt=0, le=10_080)
    """How often a server applies ``retention_days`` (first at start-up)."""
    rollup_refresh_seconds: float = Field(default=60.0, ge=0, le=86_400)
    """How often a server folds new events and identity changes into the derived tables in
    the background (first at start-up), so a report's own fold has little left to do; 0:
    only when a report runs."""
    cache_refresh_seconds: float = Field(default=5.0, gt=0, le=3600)
    """How often a server re-reads tombstones and sites that other processes sharing its
    (PostgreSQL) database wrote: an erase elsewhere stops late events here within this time."""

    deflection_session_minutes: int = Field(default=30, ge=1, le=1440)
    """The support form's deflection report: a form session ends with a ticket or after this
    many minutes without events (a report may ask for another: ``session_minutes``)."""
    deflection_window_days: int = Field(default=7, ge=1, le=90)
    """...and an answered session followed by a ticket from the same person within this
    many days of its last event is deferred, not deflected (``window_days``)."""

    log_level: str = "info"
    metrics_token: str | None = None
    """If set, /metrics requires ``Authorization: Bearer <token>``."""
    admin_password_hash: str | None = None
    """scrypt hash of the dashboard's admin password (``footfall hash-password`` prints one;
    the password itself is never stored). Set, it wins over a password set through the
    setup page. Unset and none set there: ``footfall serve`` prints a one-time setup link."""
    admin_token: str | None = Field(default=None, repr=False)
    """Bearer token of the admin HTTP API (/api/admin/...): at least 32 characters, or
    ``sha256:<hex>`` of such a token so the config does not hold it. Unset: only site API keys
    (for their own tenant's sites) use that API."""
    setup_link_minutes: float = Field(default=60.0, gt=0, le=60)
    """How long a setup link printed at start-up stays valid (at most the spec's hour)."""
    session_secret: str | None = None
    """Signs dashboard session cookies. Unset: generated once and kept beside the DuckDB
    file (``<database>.secret``, or ``./footfall.secret`` with PostgreSQL); set it when
    several hosts serve the dashboard."""
    bench_noop: bool = False
    """Expose POST /bench/noop, a no-op endpoint on the same stack, for benchmarks."""
    demo: bool = False
    """Serve the demo shop and support form (``examples/``) under /demo/, tracked here."""

    @field_validator("allowed_origins", "trusted_proxies", mode="before")
    @classmethod
    def _lists_from_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("admin_password_hash")
    @classmethod
    def _password_hash(cls, value: str | None) -> str | None:
        """A plain password or a mistyped hash fails at start-up, not at the first login."""
        if value:
            from footfall.passwords import parse_password_hash

            parse_password_hash(value)
        return value or None

    @field_validator("admin_token")
    @classmethod
    def _admin_token(cls, value: str | None) -> str | None:
        """A short or mistyped token fails at start-up, not at the first API call."""
        if not value:
            return None
        text = value.strip()
        if text.startswith("sha256:"):
            digest = text[7:]
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest.lower()):
                raise ValueError("admin_token: sha256: must be followed by 64 hex digits")
            return "sha256:" + digest.lower()
        if len(text) < 32:
            raise ValueError("admin_token must be at least 32 characters (or sha256:<hex>)")
        return text

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get("FOOTFALL_CONFIG") or DEFAULT_CONFIG_FILE
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if Path(path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        elif os.environ.get("FOOTFALL_CONFIG"):
            raise FileNotFoundError(f"config file not found: {path}")
        return tuple(sources)


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Build settings; ``config_file`` wins over ``FOOTFALL_CONFIG``."""
    if config_file is not None:
        os.environ["FOOTFALL_CONFIG"] = config_file
    clean = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**clean)


def _default_workers() -> int:
    """One ingest worker per core, up to 4; none on one core, where a worker could only take
    turns with the server."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)
