"""The storage contract every backend fulfils (embedded DuckDB, PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pyarrow as pa


EVENT_COLUMNS: tuple[str, ...] = (
    "site_id",
    "ts",
    "received_at",
    "event",
    "token",
    "ephemeral",
    "ab_group",
    "chatbot_id",
    "popup_version",
    "open_way",
    "order_num",
    "duplicate",
    "total_value_base",
    "items",
    "url",
    "user_agent",
    "data",
    "id_kind",
    "custom_event",
)
"""The events table's written columns (event_id comes from its sequence), in the order every
bulk path (Arrow batches, COPY, demo data) lays them out."""


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
    id_kind: str = "token"
    """Which kind of identifier ``token`` holds: events from the vendor-compatible API
    may name a person by email, client id or alias instead of an anonymous token."""
    custom_event: str | None = None
    """The name of a custom event (``event`` is then ``custom``): one outside the 13 types,
    from the Segment-spec API or the vendor's ``/e``."""
    message_id: str | None = None
    """The sender's id of the message (Segment's ``messageId``): a row whose id its site
    has already stored is dropped, so a re-sent message is stored once. Not an events
    column: the ids live in ``message_ids``."""


@dataclass(frozen=True, slots=True)
class Site:
    id: str
    name: str
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    tenant: str = ""
    """Sites of one tenant share one identity graph (e.g. docs site and help forum)."""

    @property
    def scope(self) -> str:
        return self.tenant or self.id


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    site_id: str
    key_hash: str
    label: str
    revoked: bool
    created_at: datetime | None = None
    revoked_at: datetime | None = None


API_KEY_COLUMNS = "key_id, site_id, key_hash, label, revoked_at IS NOT NULL, created_at, revoked_at"
"""The api_keys columns an ``ApiKey`` is built from, in its fields' order."""


class Transaction(Protocol):
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


@runtime_checkable
class Store(Protocol):
    """What the server and CLI need from a database. Analytics run as SQL inside it."""

    backend: str

    def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied now."""
        ...

    def schema_version(self) -> int: ...

    def insert_events(self, rows: list[EventRow]) -> list[int]:
        """Write ``rows`` in one committed transaction.

        Returns, per row, ``STORED``, ``REPEATED_ORDER`` (a purchase repeating an orderNum
        of its site: stored, not counted as an order) or ``REPEATED_MESSAGE`` (a message
        id the site already has, or an earlier row of ``rows`` has: not stored again).
        """
        ...

    def import_events(self, batch: pa.Table) -> int:
        """Rows read by ``footfall import`` (``rows_table``: events columns, message ids), as
        ``insert_events`` writes rows (repeated message ids dropped, repeated orders flagged)
        but in as few statements as the backend allows; returns the rows stored."""
        ...

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """Append ``data`` to ``table`` in one transaction: bulk loads (demo data, imports)
        that bypass the per-event ingest path. Column names match the table's."""
        ...

    def count_events(self, site_id: str | None = None) -> int: ...

    def memory_bytes(self) -> int | None:
        """Memory the database holds inside this process (DuckDB's buffers); None when the
        database runs in its own process."""
        ...

    def memory_limit(self) -> str | None:
        """DuckDB's cap on its buffers as DuckDB states it (``1.8 GiB``); None when the
        database runs in its own process."""
        ...

    def upsert_site(
        self, site_id: str, name: str, allowed_origins: list[str], tenant: str | None = None
    ) -> Site: ...

    def get_site(self, site_id: str) -> Site | None: ...

    def list_sites(self) -> list[Site]: ...

    def add_api_key(self, key_id: str, site_id: str, key_hash: str, label: str) -> None: ...

    def get_api_key(self, key_id: str) -> ApiKey | None: ...

    def list_api_keys(self, site_id: str) -> list[ApiKey]: ...

    def revoke_api_key(self, key_id: str) -> bool: ...

    def admin_password_hash(self) -> str | None:
        """The admin password's scrypt hash set through the setup page, if any."""
        ...

    def set_admin_password(self, password_hash: str) -> None: ...

    def add_setup_token(self, token_hash: str, created_at: datetime, expires_at: datetime) -> None:
        """Remember a setup link by the SHA-256 of its token (the token itself never)."""
        ...

    def setup_token_usable(self, token_hash: str, now: datetime) -> bool:
        """Known, unused, unexpired, and no admin password stored yet."""
        ...

    def claim_setup_token(self, token_hash: str, password_hash: str, now: datetime) -> bool:
        """In one transaction: use the token and store the first admin password; False (and
        nothing changed) when the token is not usable or a password exists already."""
        ...

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders; analytics and person views use it."""
        ...

    def transaction(self, scope: str | None = None) -> AbstractContextManager[Transaction]:
        """A read-write transaction; identity changes run in one, serialised.

        ``scope`` (a tenant) lets a store shared by several processes serialise only the
        transactions of one identity graph; ``None`` serialises with every scope.
        """
        ...

    def ping(self) -> None:
        """Raise if the database cannot answer."""
        ...

    def close(self) -> None: ...


def split_repeated_messages(
    rows: Sequence[EventRow], known: set[tuple[str, str]]
) -> tuple[list[bool], list[EventRow], list[tuple[str, str, int]]]:
    """Rows against the message ids a store already has: per row whether it repeats one
    (stored already, or earlier in ``rows``), the rows to keep, and the new ids as
    (site_id, message_id, received time in microseconds)."""
    seen = set(known)
    repeated: list[bool] = []
    kept: list[EventRow] = []
    fresh: list[tuple[str, str, int]] = []
    for row in rows:
        if row.message_id is not None:
            key = (row.site_id, row.message_id)
            if key in seen:
                repeated.append(True)
                continue
            seen.add(key)
            fresh.append((row.site_id, row.message_id, row.received_us))
        repeated.append(False)
        kept.append(row)
    return repeated, kept, fresh


STORED, REPEATED_ORDER, REPEATED_MESSAGE = 0, 1, 2
"""What became of a row written: true values are repeats (a tracking answer says
``"duplicate": true`` for either)."""


def merge_flags(repeated: Sequence[bool], duplicates: Sequence[bool]) -> list[int]:
    """Per row of a group: ``REPEATED_MESSAGE`` for the rows dropped, the kept rows'
    repeated-order flags in order."""
    kept = iter(duplicates)
    return [
        REPEATED_MESSAGE if skip else REPEATED_ORDER if next(kept) else STORED for skip in repeated
    ]


def redact(database: str) -> str:
    """The database path or URL without its password, for messages and logs."""
    return re.sub(r"(://[^/:@]*:)[^@/]*@", r"\1***@", database)


def affected_rows(rows: Sequence[tuple[Any, ...]]) -> int:
    """The row count an INSERT or DELETE reports (DuckDB returns it as a row, the
    PostgreSQL store too)."""
    return int(rows[0][0]) if rows and rows[0] and rows[0][0] is not None else 0


HASH_JOINS = "/* footfall:hash-joins */ "
"""Prefix for a report whose plan must not use nested loops.

PostgreSQL cannot see how many rows come out of a CTE read several times (a funnel's step
chain); it guesses few, loops over them, and a funnel over 60,000 events takes 10 s instead
of 0.1 s. Its store runs a statement with this prefix with nested loops turned off. For
DuckDB it is a comment.
"""


PERSON_ORDER = "/* footfall:person-order */ "
"""Prefix for a report that reads tables indexed by (person key, time), the funnel step
tables: PostgreSQL then merges them in person order, neither hashing nor looping, instead
of building a hash table of about a million persons per step (a 5-step funnel at 10M
events: 3.9 s hashed, 2.0 s merged). For DuckDB it is a comment.
"""


class StoreBusyError(RuntimeError):
    """The database is held by another process (DuckDB allows one writer process)."""


class StoreUnavailableError(RuntimeError):
    """The database server cannot be reached (PostgreSQL down, wrong URL or credentials)."""
