"""The storage contract every backend fulfils (embedded DuckDB, PostgreSQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class EventRow:
    """One validated, normalised event, ready to be written; times are UTC microseconds."""

    site_id: str
    ts_us: int
    received_us: int
    event: str
    token: str
    ephemeral: bool = False
    ab_group: str | None = None
    chatbot_id: str | None = None
    popup_version: str | None = None
    open_way: str | None = None
    order_num: str | None = None
    total_value_base: float | None = None
    items: str | None = None
    """JSON array of normalised items, or None."""
    url: str | None = None
    user_agent: str | None = None
    data: str = "{}"
    """JSON object with every other property the client sent."""


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    site_id: str
    key_hash: str
    label: str
    revoked: bool


@runtime_checkable
class Store(Protocol):
    """What the server and CLI need from a database. Analytics run as SQL inside it."""

    backend: str

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        ...

    def schema_version(self) -> int: ...

    def insert_events(self, rows: list[EventRow]) -> list[bool]:
        """Write ``rows`` in one committed transaction.

        Returns, per row, whether it is a repeated purchase (same orderNum on the same site),
        which is stored but not counted as an order.
        """
        ...

    def count_events(self, site_id: str | None = None) -> int: ...

    def upsert_site(self, site_id: str, name: str, allowed_origins: list[str]) -> Site: ...

    def get_site(self, site_id: str) -> Site | None: ...

    def list_sites(self) -> list[Site]: ...

    def add_api_key(self, key_id: str, site_id: str, key_hash: str, label: str) -> None: ...

    def get_api_key(self, key_id: str) -> ApiKey | None: ...

    def list_api_keys(self, site_id: str) -> list[ApiKey]: ...

    def revoke_api_key(self, key_id: str) -> bool: ...

    def ping(self) -> None:
        """Raise if the database cannot answer."""
        ...

    def close(self) -> None: ...


class StoreBusyError(RuntimeError):
    """The database is held by another process (DuckDB allows one writer process)."""
