"""The PostgreSQL store: several server processes (or hosts) on one database.

Design, in short:

- A connection pool per process; ``query`` runs in autocommit, ``insert_events`` and
  ``transaction`` run in explicit transactions. Durability is PostgreSQL's: a returned
  ``insert_events`` call has committed (with ``synchronous_commit`` on, the WAL is flushed).
- Ingest: one transaction per group of waiting requests; the group's first purchases of each
  orderNum go in with ``INSERT INTO orders ... ON CONFLICT DO NOTHING RETURNING``, so two
  processes racing on one orderNum agree (the second waits for the first's commit on the
  primary key, then sees a conflict). Events go in with COPY.
- Identity: every identity transaction first takes a transaction-scoped advisory lock on its
  tenant (and a shared lock on "all tenants"; an unscoped transaction takes that one
  exclusively). Merges of one tenant are thus serialised across every process, exactly as the
  DuckDB store serialises them inside its one process, and the check-then-create of identifier
  nodes cannot race. Tenants do not wait for each other. Under READ COMMITTED each statement
  after the lock sees everything the previous holder committed.
- Migrations run under a session advisory lock, so processes starting together apply each
  migration once; PostgreSQL's DDL is transactional, so a migration applies whole or not at all.
- The code base writes ``?`` placeholders (DuckDB's); they become psycopg's ``%s`` outside
  string literals, quoted names and comments. Results look like DuckDB's: naive UTC
  datetimes, JSON as text, numerics as int or float.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql
from psycopg.adapt import Buffer, Loader
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool

from footfall.store.base import (
    API_KEY_COLUMNS,
    EVENT_COLUMNS,
    HASH_JOINS,
    PERSON_ORDER,
    REPEATED_MESSAGE,
    ApiKey,
    EventRow,
    Site,
    StoreUnavailableError,
    Transaction,
    merge_flags,
    redact,
    split_repeated_messages,
)
from footfall.store.migrations import MIGRATIONS, render

if TYPE_CHECKING:
    import pyarrow as pa

# Advisory lock keys. The one-key (bigint) and two-key (int4, int4) forms are separate lock
# spaces in PostgreSQL, so the tenant locks below cannot collide with these two.
_MIGRATION_LOCK = 0x466F6F7446616C6C  # "FootFall"
_IDENTITY_ALL = 0x466F6F7449640000
_IDENTITY_CLASS = 0x46464944  # "FFID": first key of every per-tenant identity lock

_COPY_EVENTS = f"COPY events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
_EPOCH = datetime(1970, 1, 1)
_LOADABLE = frozenset({"events", "identity_nodes", "links", "link_log", "orders"})
POOL_MAX = 10
IMPORT_SLICE = 50_000
"""Rows of an import per transaction: its parameter arrays stay a few megabytes."""
"""Connections per process: the writer, identity work on the thread pool, queries."""


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _timestamp(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


# --------------------------------------------------------------------------- placeholders

# Things inside which a ``?`` is not a placeholder: string literals (plain, E'' with
# backslash escapes, dollar-quoted), quoted identifiers, comments. A lone ``?`` or ``%`` is
# what we rewrite.
_LEXEME = re.compile(
    r"""
      (?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'   # E'...' string with backslash escapes
    | '(?:[^']|'')*'                        # '...' string
    | "(?:[^"]|"")*"                        # "quoted identifier"
    | --[^\n]*                              # line comment
    | /\*.*?\*/                             # block comment
    | \$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$   # dollar-quoted string
    | \?                                    # a placeholder
    | %                                     # psycopg's escape character
    """,
    re.VERBOSE | re.DOTALL,
)


def _rewrite(match: re.Match[str]) -> str:
    text = match.group(0)
    if text == "?":
        return "%s"
    # psycopg reads % everywhere (it does not parse SQL), so literals need %% too.
    return text.replace("%", "%%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """DuckDB-style ``?`` placeholders to psycopg's ``%s``; literal ``%`` doubled."""
    return _LEXEME.sub(_rewrite, sql)


# --------------------------------------------------------------------------- values

_NUL_ESCAPE = "\\u0000"


def _scrub(value: Any) -> Any:
    """PostgreSQL text and JSONB cannot hold NUL characters, which DuckDB takes: replace them
    with U+FFFD so such input is stored (slightly altered) instead of failing with a 5xx."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if _NUL_ESCAPE in value:
        value = _scrub_json(value)
    return value


def _scrub_json(text: str) -> str:
    """JSON text whose decoded strings hold NULs is re-encoded without them; other text
    (which merely contains a backslash-u0000 sequence) is left as it is."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return text

    def clean(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace("\x00", "\ufffd")
        if isinstance(node, list):
            return [clean(item) for item in node]
        if isinstance(node, dict):
            return {clean(key): clean(item) for key, item in node.items()}
        return node

    cleaned = clean(decoded)
    return text if cleaned == decoded else json.dumps(cleaned, ensure_ascii=False)


def _params(params: Sequence[Any]) -> list[Any]:
    return [_scrub(p) for p in params]


class _NumericLoader(Loader):
    """NUMERIC (sum of integers, avg, round) as int or float, the types DuckDB returns."""

    def load(self, data: Buffer) -> int | float:
        text = bytes(data)
        if b"." in text or b"e" in text or b"E" in text or b"N" in text or b"I" in text:
            return float(text)
        return int(text)


def _configure(conn: psycopg.Connection[Any], read_only: bool) -> None:
    # JSON columns come back as text (callers json.loads them, as with DuckDB).
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_loader("jsonb", TextLoader)
    conn.adapters.register_loader("numeric", _NumericLoader)
    conn.execute("SET TimeZone TO 'UTC'")
    if read_only:
        conn.execute("SET default_transaction_read_only TO on")


def _fetch(cur: psycopg.Cursor[Any]) -> list[tuple[Any, ...]]:
    """Rows, or like DuckDB ``[(rowcount,)]`` for a write and ``[]`` for DDL."""
    if cur.description is None:
        return [(cur.rowcount,)] if cur.rowcount >= 0 else []
    return cur.fetchall()


def scope_key(scope: str) -> int:
    """A tenant's advisory lock key (int4); a collision only makes two tenants wait."""
    return int.from_bytes(hashlib.blake2b(scope.encode(), digest_size=4).digest(), signed=True)


# --------------------------------------------------------------------------- the store


class PostgresStore:
    """Store on a PostgreSQL database shared by any number of Footfall processes."""

    backend = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False, pool_max: int = POOL_MAX) -> None:
        self.url = url
        self.read_only = read_only
        try:
            # A direct first connection fails fast with libpq's own message.
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"cannot connect to PostgreSQL at {redact(url)}: {str(exc).strip()}"
            ) from None
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_max,
            kwargs={"autocommit": True},
            configure=functools.partial(_configure, read_only=read_only),
            open=False,
            name="footfall",
        )
        self._pool.open(wait=True, timeout=30)
        self._analyzed_rows: dict[str, int] = {}
        self._pending_rows: dict[str, int] = {}

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        with self._pool.connection() as conn:
            return self._version(conn)

    @staticmethod
    def _version(conn: psycopg.Connection[Any]) -> int:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> list[int]:
        """Apply pending migrations; concurrent callers queue on an advisory lock."""
        applied: list[int] = []
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", [_MIGRATION_LOCK])
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
                )
                # Every migration not recorded yet (see the DuckDB store's migrate).
                done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
                for migration in MIGRATIONS:
                    if migration.version in done:
                        continue
                    with conn.transaction():
                        for statement in migration.statements:
                            text = render(statement, "JSONB", self.backend)
                            if text is not None:
                                conn.execute(text)  # no parameters: sent as written
                        conn.execute(
                            "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                            [migration.version, migration.name, _utcnow()],
                        )
                    applied.append(migration.version)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", [_MIGRATION_LOCK])
        return applied

    # ------------------------------------------------------------------ events

    def insert_events(self, rows: list[EventRow]) -> list[int]:
        if not rows:
            return []
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            repeated, kept = self._drop_repeated_messages(cur, rows)
            duplicates = self._mark_repeated_orders(cur, kept)
            with cur.copy(_COPY_EVENTS) as copy:
                for row, duplicate in zip(kept, duplicates, strict=True):
                    copy.write_row(
                        (
                            _scrub(row.site_id),
                            _timestamp(row.ts_us),
                            _timestamp(row.received_us),
                            _scrub(row.event),
                            _scrub(row.token),
                            row.ephemeral,
                            _scrub(row.ab_group),
                            _scrub(row.chatbot_id),
                            _scrub(row.popup_version),
                            _scrub(row.open_way),
                            _scrub(row.order_num),
                            duplicate,
                            row.total_value_base,
                            _scrub(row.items),
                            _scrub(row.url),
                            _scrub(row.user_agent),
                            _scrub(row.data),
                            _scrub(row.id_kind),
                            _scrub(row.custom_event),
                        )
                    )
        return merge_flags(repeated, duplicates)

    def import_events(self, batch: pa.Table) -> int:
        """Rows read by ``footfall import`` (``store.arrow.rows_table``), through
        ``insert_events`` (its COPY takes rows) a slice at a time; returns the rows stored."""
        from footfall.store.arrow import table_rows

        stored = 0
        for start in range(0, batch.num_rows, IMPORT_SLICE):
            flags = self.insert_events(table_rows(batch.slice(start, IMPORT_SLICE)))
            stored += sum(flag != REPEATED_MESSAGE for flag in flags)
        return stored

    @staticmethod
    def _drop_repeated_messages(
        cur: psycopg.Cursor[Any], rows: list[EventRow]
    ) -> tuple[list[bool], list[EventRow]]:
        """Rows whose message id their site already has (in any process: the insert waits
        for a racing transaction's commit on the primary key) are dropped."""
        if all(row.message_id is None for row in rows):
            return [False] * len(rows), rows
        _, _, candidates = split_repeated_messages(rows, set())
        cur.execute(
            "INSERT INTO message_ids (site_id, message_id, received_at) "
            "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::timestamp[]) "
            "ON CONFLICT (site_id, message_id) DO NOTHING RETURNING site_id, message_id",
            [
                [_scrub(c[0]) for c in candidates],
                [_scrub(c[1]) for c in candidates],
                [_timestamp(c[2]) for c in candidates],
            ],
        )
        fresh = {(site, message) for site, message in cur.fetchall()}
        known = {(c[0], c[1]) for c in candidates if (_scrub(c[0]), _scrub(c[1])) not in fresh}
        repeated, kept, _ = split_repeated_messages(rows, known)
        return repeated, kept

    @staticmethod
    def _mark_repeated_orders(cur: psycopg.Cursor[Any], rows: list[EventRow]) -> list[bool]:
        """First purchase of an orderNum on a site counts; later ones (here or in any other
        process, committed before or racing with this group) are flagged."""
        duplicates = [False] * len(rows)
        first: dict[tuple[str, str], int] = {}
        for i, row in enumerate(rows):
            if row.event != "purchase" or row.order_num is None:
                continue
            key = (_scrub(row.site_id), _scrub(row.order_num))
            if key in first:
                duplicates[i] = True
            else:
                first[key] = i
        if not first:
            return duplicates
        # Sorted keys: two groups taking the same orders lock them in the same order.
        keys = sorted(first)
        cur.execute(
            "INSERT INTO orders (site_id, order_num, first_seen) "
            "SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::timestamp[]) "
            "ON CONFLICT (site_id, order_num) DO NOTHING RETURNING site_id, order_num",
            [
                [site for site, _ in keys],
                [order for _, order in keys],
                [_timestamp(rows[first[key]].ts_us) for key in keys],
            ],
        )
        fresh = {(site, order) for site, order in cur.fetchall()}
        for key, i in first.items():
            if key not in fresh:
                duplicates[i] = True
        return duplicates

    def load_arrow(self, table: str, data: pa.Table) -> None:
        """COPY in CSV written by Arrow's own writer: ten times faster than row by row."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.csv as pacsv

        if table not in _LOADABLE:
            raise ValueError(f"bulk load into {table!r} is not supported")
        for index, column in enumerate(data.schema):
            values = data.column(index)
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                # Zoned timestamps become naive UTC, the way every TIMESTAMP column holds time.
                values = values.cast(pa.timestamp(column.type.unit))
            elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                if pc.any(pc.match_substring(values, _NUL_ESCAPE)).as_py():
                    values = pa.chunked_array(
                        [pa.array([_scrub(v) for v in values.to_pylist()], column.type)]
                    )
                elif pc.any(pc.match_substring(values, "\x00")).as_py():
                    values = pc.replace_substring(values, "\x00", "\ufffd")
            data = data.set_column(index, column.name, values)
        statement = pgsql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
            pgsql.Identifier(table),
            pgsql.SQL(", ").join(pgsql.Identifier(name) for name in data.column_names),
        )
        # Arrow writes "" for an empty string and nothing for NULL, as PostgreSQL reads them.
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
        with (
            self._pool.connection() as conn,
            conn.transaction(),
            conn.cursor() as cur,
            cur.copy(statement) as copy,
        ):
            for batch in data.to_batches(max_chunksize=100_000):
                sink = pa.BufferOutputStream()
                pacsv.write_csv(batch, sink, options)
                copy.write(sink.getvalue().to_pybytes())
        self._keep_statistics(table, data.num_rows)

    def _keep_statistics(self, table: str, loaded: int) -> None:
        """ANALYZE once bulk loads have grown a table by a fifth since its last statistics.

        Without statistics the planner takes a freshly loaded table for a small one and
        loops over it (a funnel over 60,000 demo events took 80 s instead of 0.1 s);
        autovacuum would catch up only later, and only live ingest is small enough to wait.
        """
        pending = self._pending_rows.get(table, 0) + loaded
        if pending * 5 < self._analyzed_rows.get(table, 0):
            self._pending_rows[table] = pending
            return
        self.query(pgsql.SQL("ANALYZE {}").format(pgsql.Identifier(table)).as_string())
        rows = self.query("SELECT reltuples FROM pg_class WHERE oid = to_regclass(?)", [table])
        self._analyzed_rows[table] = max(0, int(rows[0][0])) if rows else 0
        self._pending_rows[table] = 0

    def count_events(self, site_id: str | None = None) -> int:
        if site_id is None:
            rows = self.query("SELECT count(*) FROM events")
        else:
            rows = self.query("SELECT count(*) FROM events WHERE site_id = ?", [site_id])
        return int(rows[0][0]) if rows else 0

    def memory_bytes(self) -> int | None:
        return None

    def memory_limit(self) -> str | None:
        return None

    # ------------------------------------------------------------------ sites and keys

    def upsert_site(
        self, site_id: str, name: str, allowed_origins: list[str], tenant: str | None = None
    ) -> Site:
        self.query(
            "INSERT INTO sites (site_id, name, allowed_origins, created_at, tenant) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET "
            "name = excluded.name, allowed_origins = excluded.allowed_origins, "
            "tenant = excluded.tenant",
            [site_id, name, json.dumps(allowed_origins), _utcnow(), tenant],
        )
        return Site(site_id, name, tuple(allowed_origins), tenant or site_id)

    def get_site(self, site_id: str) -> Site | None:
        rows = self.query(
            "SELECT site_id, name, allowed_origins, tenant FROM sites WHERE site_id = ?",
            [site_id],
        )
        return _site(rows[0]) if rows else None

    def list_sites(self) -> list[Site]:
        rows = self.query(
            "SELECT site_id, name, allowed_origins, tenant FROM sites ORDER BY site_id"
        )
        return [_site(row) for row in rows]

    def add_api_key(self, key_id: str, site_id: str, key_hash: str, label: str) -> None:
        self.query(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
            [key_id, site_id, key_hash, label, _utcnow()],
        )

    def get_api_key(self, key_id: str) -> ApiKey | None:
        rows = self.query(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608
            [key_id],
        )
        return ApiKey(*rows[0]) if rows else None

    def list_api_keys(self, site_id: str) -> list[ApiKey]:
        rows = self.query(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE site_id = ? ORDER BY created_at",  # noqa: S608
            [site_id],
        )
        return [ApiKey(*row) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        rows = self.query(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL "
            "RETURNING key_id",
            [_utcnow(), key_id],
        )
        return bool(rows)

    # ------------------------------------------------------------------ administration

    def admin_password_hash(self) -> str | None:
        rows = self.query("SELECT password_hash FROM admin_password WHERE id = 1")
        return str(rows[0][0]) if rows else None

    def set_admin_password(self, password_hash: str) -> None:
        self.query(
            "INSERT INTO admin_password VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "password_hash = excluded.password_hash, set_at = excluded.set_at",
            [password_hash, _utcnow()],
        )

    def add_setup_token(self, token_hash: str, created_at: datetime, expires_at: datetime) -> None:
        self.query(
            "INSERT INTO setup_tokens VALUES (?, ?, ?, NULL)", [token_hash, created_at, expires_at]
        )

    def setup_token_usable(self, token_hash: str, now: datetime) -> bool:
        rows = self.query(
            "SELECT count(*) FROM setup_tokens WHERE token_hash = ? AND used_at IS NULL "
            "AND expires_at > ? AND NOT EXISTS (SELECT 1 FROM admin_password)",
            [token_hash, now],
        )
        return bool(rows and rows[0][0])

    def claim_setup_token(self, token_hash: str, password_hash: str, now: datetime) -> bool:
        """Two processes' links used at once: the token row's lock and the password row's
        primary key let exactly one of them set the password."""
        claimed = False
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "UPDATE setup_tokens SET used_at = %s WHERE token_hash = %s "
                "AND used_at IS NULL AND expires_at > %s RETURNING token_hash",
                [now, token_hash, now],
            )
            if cur.fetchall():
                cur.execute(
                    "INSERT INTO admin_password VALUES (1, %s, %s) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    [password_hash, now],
                )
                claimed = bool(cur.fetchall())
                if not claimed:
                    raise psycopg.Rollback()  # the token stays unused
        return claimed

    # ------------------------------------------------------------------ generic SQL

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement with ``?`` placeholders, in autocommit (``HASH_JOINS``: in a
        transaction of its own with nested loops off; ``PERSON_ORDER``: hashing off too)."""
        off: tuple[str, ...] = ()
        if sql.startswith(HASH_JOINS):
            off = ("enable_nestloop",)
        elif sql.startswith(PERSON_ORDER):
            off = ("enable_nestloop", "enable_hashjoin", "enable_hashagg")
        with self._pool.connection() as conn, conn.cursor() as cur:
            if not off:
                cur.execute(translate(sql), _params(params))
                return _fetch(cur)
            with conn.transaction():
                for setting in off:
                    cur.execute(f"SET LOCAL {setting} TO off")
                cur.execute(translate(sql), _params(params))
                return _fetch(cur)

    @contextlib.contextmanager
    def transaction(self, scope: str | None = None) -> Iterator[Transaction]:
        """A read-write transaction serialised with every other one of ``scope`` (a tenant)
        in every process; ``None`` serialises with all of them."""
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            if scope is None:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", [_IDENTITY_ALL])
            else:
                cur.execute(
                    "SELECT pg_advisory_xact_lock_shared(%s), pg_advisory_xact_lock(%s, %s)",
                    [_IDENTITY_ALL, _IDENTITY_CLASS, scope_key(scope)],
                )
            yield _PgTransaction(cur)

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> None:
        self.query("SELECT 1")

    def close(self) -> None:
        self._pool.close()


class _PgTransaction:
    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self._cursor = cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(translate(sql), _params(params))
        return _fetch(self._cursor)


def _site(row: tuple[Any, ...]) -> Site:
    return Site(row[0], row[1], tuple(json.loads(row[2])), row[3] or row[0])
