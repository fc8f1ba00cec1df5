"""The embedded default store: one DuckDB file, zero set-up.

Batches arrive as Arrow tables so a group of thousands of events is one INSERT; DuckDB
syncs its write-ahead log on COMMIT, so a returned ``insert_events`` call is durable.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from footfall.store.arrow import EVENT_ARROW_COLUMNS as _EVENT_COLUMNS
from footfall.store.base import (
    API_KEY_COLUMNS,
    ApiKey,
    EventRow,
    Site,
    StoreBusyError,
    Transaction,
    merge_flags,
    split_repeated_messages,
)
from footfall.store.migrations import MIGRATIONS, render

_COLUMN_LIST = ", ".join(name for name, _ in _EVENT_COLUMNS)
# Built from the constant column list above, never from input.
_INSERT_AND_COMMIT = (
    f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM _ff_batch; COMMIT"  # noqa: S608
)
_INSERT_BATCH = f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM _ff_batch"  # noqa: S608


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class DuckDBStore:
    """Store on a DuckDB file; one connection, a cursor per thread."""

    backend = "duckdb"

    def __init__(
        self, path: str, *, read_only: bool = False, memory_limit: str | None = None
    ) -> None:
        self.path = path
        if not read_only and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {}
        )
        try:
            self._conn = duckdb.connect(path, read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusyError(
                    f"{path} is in use by another Footfall process (a running server?): "
                    "stop it first, or go through it with --server URL --key KEY"
                ) from None
            raise
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._identity_lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._conn.cursor()
            self._local.cursor = cursor
        return cursor

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        cur = self._cursor()
        exists = cur.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
        ).fetchone()
        if not exists or not exists[0]:
            return 0
        row = cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> list[int]:
        cur = self._cursor()
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
        )
        # Every migration not recorded yet, in order (not only those above the highest: two
        # branches may add versions 8 and 9 and land in either order).
        done = {int(v) for (v,) in cur.execute("SELECT version FROM schema_migrations").fetchall()}
        applied: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            cur.execute("BEGIN")
            try:
                for statement in migration.statements:
                    text = render(statement, "JSON", self.backend)
                    if text is not None:
                        cur.execute(text)
                cur.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [migration.version, migration.name, _utcnow()],
                )
                cur.execute("COMMIT")
            except Exception:
                cur.execute("ROLLBACK")
                raise
            applied.append(migration.version)
        return applied

    # ------------------------------------------------------------------ events

    def insert_events(self, rows: list[EventRow]) -> list[int]:
        if not rows:
            return []
        cur = self._cursor()
        with self._write_lock:
            # Few calls into DuckDB per batch: each one gives up and re-takes the GIL.
            cur.execute("BEGIN")
            try:
                repeated, kept = self._drop_repeated_messages(cur, rows)
                duplicates = self._mark_repeated_orders(cur, kept)
                # DuckDB finds this local by name (a replacement scan): cheaper than register().
                _ff_batch = _arrow_batch(kept, duplicates)
                if kept:
                    cur.execute(_INSERT_AND_COMMIT)
                else:
                    cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return merge_flags(repeated, duplicates)

    def _drop_repeated_messages(
        self, cur: duckdb.DuckDBPyConnection, rows: list[EventRow]
    ) -> tuple[list[bool], list[EventRow]]:
        """Rows whose message id their site already has are dropped; the others' ids are
        recorded in the same transaction. Returns the repeat flags and the rows kept."""
        keyed = [(row.site_id, row.message_id) for row in rows if row.message_id is not None]
        if not keyed:
            return [False] * len(rows), rows
        known = _known_pairs(cur, "message_ids", "message_id", keyed)
        repeated, kept, fresh = split_repeated_messages(rows, known)
        if fresh:
            _ff_messages = _pairs_table(
                [(s, m) for s, m, _ in fresh], "message_id", "received_at", [t for *_, t in fresh]
            )
            cur.execute("INSERT INTO message_ids SELECT * FROM _ff_messages")
        return repeated, kept

    def message_keys(self) -> Iterator[tuple[str, str]]:
        cur = self._cursor().execute("SELECT site_id, message_id FROM message_ids")
        while rows := cur.fetchmany(50_000):
            yield from ((site, message) for site, message in rows)

    def known_messages(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (site_id, message_id) pairs are already stored."""
        if not keys:
            return set()
        return _known_pairs(self._cursor(), "message_ids", "message_id", keys)

    @staticmethod
    def _mark_repeated_orders(cur: duckdb.DuckDBPyConnection, rows: list[EventRow]) -> list[bool]:
        """First purchase of an orderNum on a site counts; later ones are flagged."""
        wanted = [
            (i, row.site_id, row.order_num, row.ts_us)
            for i, row in enumerate(rows)
            if row.event == "purchase" and row.order_num is not None
        ]
        return _repeated_orders(cur, wanted, len(rows))

    def import_events(self, batch: pa.Table) -> int:
        """Rows read by ``footfall import`` (``rows_table``: events columns but ``duplicate``,
        and message ids) in one transaction of a few statements, however many rows: those
        whose message id their site has already, or an earlier row of ``batch`` has, are
        dropped, and repeated order numbers flagged, as ``insert_events`` does row by row.
        Returns the rows stored."""
        if not batch.num_rows:
            return 0
        cur = self._cursor()
        # DuckDB finds these locals by name (replacement scans): cheaper than register().
        _ff_import = batch.append_column("_ff_row", pa.array(np.arange(batch.num_rows)))
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                query = _IMPORT_KNOWN if _distinct_messages(batch) else _IMPORT_REPEATS
                dropped = [row for (row,) in cur.execute(query).fetchall()]
                kept = batch
                if dropped:
                    keep = np.ones(batch.num_rows, dtype=bool)
                    keep[dropped] = False
                    kept = batch.filter(pa.array(keep))
                flags = np.zeros(kept.num_rows, dtype=bool)
                purchases = pc.indices_nonzero(
                    pc.and_(pc.equal(kept["event"], "purchase"), pc.is_valid(kept["order_num"]))
                )
                if len(purchases):
                    wanted = zip(
                        purchases.to_pylist(),
                        pc.take(kept["site_id"], purchases).to_pylist(),
                        pc.take(kept["order_num"], purchases).to_pylist(),
                        pc.take(kept["ts"], purchases).cast(pa.int64()).to_pylist(),
                        strict=True,
                    )
                    flags = np.array(_repeated_orders(cur, list(wanted), kept.num_rows))
                kept = kept.append_column("duplicate", pa.array(flags))
                _ff_batch = kept
                cur.execute(_INSERT_BATCH)
                cur.execute(
                    "INSERT INTO message_ids SELECT site_id, message_id, received_at "
                    "FROM _ff_batch WHERE message_id IS NOT NULL"
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return int(kept.num_rows)

    _LOADABLE = frozenset({"events", "identity_nodes", "links", "link_log", "orders"})

    def load_arrow(self, table: str, data: pa.Table) -> None:
        if table not in self._LOADABLE:
            raise ValueError(f"bulk load into {table!r} is not supported")
        columns = ", ".join(data.column_names)
        # A cursor of its own: the thread's cursor may hold the unfinished result of a
        # COMMIT, and DuckDB refuses to register a table on it then.
        with self._write_lock, self._conn.cursor() as cur:
            cur.register("_ff_load", data)
            try:
                # Table and column names come from the constant set above and the caller's
                # own Arrow schema, never from request input.
                cur.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _ff_load")  # noqa: S608
            finally:
                cur.unregister("_ff_load")

    # ------------------------------------------------------------------ ingest journal

    def journal_position(self) -> int:
        """How far the ingest journal is loaded; replay after a crash starts here."""
        row = (
            self._cursor().execute("SELECT loaded_lsn FROM ingest_journal WHERE id = 1").fetchone()
        )
        return int(row[0]) if row else 0

    def known_orders(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        return _known_pairs(self._cursor(), "orders", "order_num", keys)

    def load_journaled(
        self, batch: pa.Table, orders: Sequence[tuple[str, str, int]], position: int
    ) -> None:
        """Journaled rows (``store.arrow.rows_table`` with ``with_duplicates``), their new
        orders and the journal position, in one transaction: after a crash the position
        says exactly which rows are in (none twice)."""
        cur = self._cursor()
        # DuckDB finds these locals by name (replacement scans): cheaper than register().
        _ff_batch = batch
        _ff_orders = pa.table(
            {
                "site_id": pa.array([o[0] for o in orders], pa.string()),
                "order_num": pa.array([o[1] for o in orders], pa.string()),
                "first_seen": pa.array([o[2] for o in orders], pa.timestamp("us")),
            }
        )
        with_ids = batch.num_rows and batch.column("message_id").null_count < batch.num_rows
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                if batch.num_rows:
                    cur.execute(_INSERT_BATCH)
                if with_ids:
                    # The writer thread let each id through once; DO NOTHING only guards
                    # against an id recorded meanwhile by another path.
                    cur.execute(
                        "INSERT INTO message_ids SELECT site_id, message_id, received_at "
                        "FROM _ff_batch WHERE message_id IS NOT NULL ON CONFLICT DO NOTHING"
                    )
                if orders:
                    cur.execute(
                        "INSERT INTO orders SELECT site_id, order_num, first_seen FROM _ff_orders "
                        "ON CONFLICT DO NOTHING"
                    )
                cur.execute(
                    "UPDATE ingest_journal SET loaded_lsn = ?, loaded_at = ? WHERE id = 1",
                    [position, _utcnow()],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def count_events(self, site_id: str | None = None) -> int:
        cur = self._cursor()
        if site_id is None:
            row = cur.execute("SELECT count(*) FROM events").fetchone()
        else:
            row = cur.execute("SELECT count(*) FROM events WHERE site_id = ?", [site_id]).fetchone()
        return int(row[0]) if row else 0

    def memory_limit(self) -> str | None:
        row = self._cursor().execute("SELECT current_setting('memory_limit')").fetchone()
        return str(row[0]) if row else None

    def memory_bytes(self) -> int | None:
        row = (
            self._cursor().execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        )
        return int(row[0]) if row and row[0] is not None else 0

    # ------------------------------------------------------------------ sites and keys

    def upsert_site(
        self, site_id: str, name: str, allowed_origins: list[str], tenant: str | None = None
    ) -> Site:
        cur = self._cursor()
        origins = json.dumps(allowed_origins)
        with self._write_lock:
            cur.execute(
                "INSERT INTO sites (site_id, name, allowed_origins, created_at, tenant) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (site_id) DO UPDATE SET "
                "name = excluded.name, allowed_origins = excluded.allowed_origins, "
                "tenant = excluded.tenant",
                [site_id, name, origins, _utcnow(), tenant],
            )
        return Site(site_id, name, tuple(allowed_origins), tenant or site_id)

    def get_site(self, site_id: str) -> Site | None:
        row = (
            self._cursor()
            .execute(
                "SELECT site_id, name, allowed_origins, tenant FROM sites WHERE site_id = ?",
                [site_id],
            )
            .fetchone()
        )
        return _site(row) if row else None

    def list_sites(self) -> list[Site]:
        rows = (
            self._cursor()
            .execute("SELECT site_id, name, allowed_origins, tenant FROM sites ORDER BY site_id")
            .fetchall()
        )
        return [_site(row) for row in rows]

    def add_api_key(self, key_id: str, site_id: str, key_hash: str, label: str) -> None:
        with self._write_lock:
            self._cursor().execute(
                "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, site_id, key_hash, label, _utcnow()],
            )

    def get_api_key(self, key_id: str) -> ApiKey | None:
        row = (
            self._cursor()
            .execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?",  # noqa: S608
                [key_id],
            )
            .fetchone()
        )
        return ApiKey(*row) if row else None

    def list_api_keys(self, site_id: str) -> list[ApiKey]:
        rows = (
            self._cursor()
            .execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE site_id = ? ORDER BY created_at",  # noqa: S608
                [site_id],
            )
            .fetchall()
        )
        return [ApiKey(*row) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        with self._write_lock:
            row = (
                self._cursor()
                .execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL "
                    "RETURNING key_id",
                    [_utcnow(), key_id],
                )
                .fetchone()
            )
        return row is not None

    # ------------------------------------------------------------------ administration

    def admin_password_hash(self) -> str | None:
        row = (
            self._cursor()
            .execute("SELECT password_hash FROM admin_password WHERE id = 1")
            .fetchone()
        )
        return str(row[0]) if row else None

    def set_admin_password(self, password_hash: str) -> None:
        with self._write_lock:
            self._cursor().execute(
                "INSERT INTO admin_password VALUES (1, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "password_hash = excluded.password_hash, set_at = excluded.set_at",
                [password_hash, _utcnow()],
            )

    def add_setup_token(self, token_hash: str, created_at: datetime, expires_at: datetime) -> None:
        with self._write_lock:
            self._cursor().execute(
                "INSERT INTO setup_tokens VALUES (?, ?, ?, NULL)",
                [token_hash, created_at, expires_at],
            )

    def setup_token_usable(self, token_hash: str, now: datetime) -> bool:
        row = self._cursor().execute(_USABLE_SETUP_LINK, [token_hash, now]).fetchone()
        return bool(row and row[0])

    def claim_setup_token(self, token_hash: str, password_hash: str, now: datetime) -> bool:
        cur = self._cursor()
        with self._write_lock:
            cur.execute("BEGIN")
            try:
                usable = cur.execute(_USABLE_SETUP_LINK, [token_hash, now]).fetchone()
                if not (usable and usable[0]):
                    cur.execute("ROLLBACK")
                    return False
                cur.execute(
                    "UPDATE setup_tokens SET used_at = ? WHERE token_hash = ?", [now, token_hash]
                )
                cur.execute("INSERT INTO admin_password VALUES (1, ?, ?)", [password_hash, now])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return True

    # ------------------------------------------------------------------ generic SQL

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One read (or autocommitted write) with ``?`` placeholders."""
        return self._cursor().execute(sql, list(params)).fetchall()

    @contextlib.contextmanager
    def transaction(self, scope: str | None = None) -> Iterator[Transaction]:
        """A serialised read-write transaction for the identity graph (not the ingest path).

        One process holds the file, so one lock serialises every scope."""
        cur = self._cursor()
        with self._identity_lock:
            cur.execute("BEGIN")
            try:
                yield _DuckTransaction(cur)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ lifecycle

    def ping(self) -> None:
        self._cursor().execute("SELECT 1").fetchone()

    def close(self) -> None:
        # Read-only or already closed: nothing to fold into the file.
        with contextlib.suppress(duckdb.Error):
            self._conn.execute("CHECKPOINT")
        self._conn.close()


class _DuckTransaction:
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cursor.execute(sql, list(params)).fetchall()


def _pairs_table(
    keys: Sequence[tuple[str, str]],
    column: str,
    time_column: str | None = None,
    times: Sequence[int] = (),
) -> pa.Table:
    """(site_id, key) pairs as an Arrow table, with a time column when given."""
    columns: dict[str, pa.Array] = {
        "site_id": pa.array([k[0] for k in keys], pa.string()),
        column: pa.array([k[1] for k in keys], pa.string()),
    }
    if time_column is not None:
        columns[time_column] = pa.array(times, pa.timestamp("us"))
    return pa.table(columns)


_KNOWN_PAIRS = {
    # Table and column names are these constants, never input.
    table: f"SELECT t.site_id, t.{column} FROM {table} t SEMI JOIN _ff_keys k "  # noqa: S608
    f"ON k.site_id = t.site_id AND k.{column} = t.{column}"
    for table, column in (("orders", "order_num"), ("message_ids", "message_id"))
}


def _known_pairs(
    cur: duckdb.DuckDBPyConnection, table: str, column: str, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (site_id, key) pairs ``table`` holds: one join with the keys as an Arrow table
    (a list of thousands of parameters costs DuckDB far more to bind)."""
    _ff_keys = _pairs_table(keys, column)
    found = cur.execute(_KNOWN_PAIRS[table]).fetchall()
    wanted = set(keys)
    return {(site, key) for site, key in found if (site, key) in wanted}


_USABLE_SETUP_LINK = (
    "SELECT count(*) FROM setup_tokens WHERE token_hash = ? AND used_at IS NULL "
    "AND expires_at > ? AND NOT EXISTS (SELECT 1 FROM admin_password)"
)


def _repeated_orders(
    cur: duckdb.DuckDBPyConnection,
    wanted: Sequence[tuple[int, str, str, int]],
    rows: int,
) -> list[bool]:
    """Flags for ``rows`` rows: the purchases ``wanted`` (row index, site, order number,
    time) that repeat an order number their site has, or an earlier one of them has; the
    first ones are recorded in ``orders`` in the same transaction."""
    duplicates = [False] * rows
    if not wanted:
        return duplicates
    # Every pair asked, the empty order number too: one left out would be recorded again.
    known = _known_pairs(cur, "orders", "order_num", [(s, o) for _, s, o, _ in wanted])
    fresh: list[tuple[str, str, int]] = []
    for i, site, order, ts_us in wanted:
        if (site, order) in known:
            duplicates[i] = True
        else:
            known.add((site, order))
            fresh.append((site, order, ts_us))
    if fresh:
        _ff_orders = _pairs_table(
            [(s, o) for s, o, _ in fresh], "order_num", "first_seen", [t for _, _, t in fresh]
        )
        cur.execute("INSERT INTO orders SELECT * FROM _ff_orders")
    return duplicates


_IMPORT_KNOWN = (
    # Rows whose message id their site has.
    "SELECT b._ff_row FROM _ff_import b SEMI JOIN message_ids m "
    "ON m.site_id = b.site_id AND m.message_id = b.message_id"
)
_IMPORT_REPEATS = (
    # Those, and the rows repeating an earlier row's message id.
    "SELECT b._ff_row FROM _ff_import b SEMI JOIN message_ids m "
    "ON m.site_id = b.site_id AND m.message_id = b.message_id "
    "UNION ALL SELECT unnest(list_sort(list(_ff_row))[2:]) FROM _ff_import "
    "WHERE message_id IS NOT NULL GROUP BY site_id, message_id HAVING count(*) > 1"
)


def _distinct_messages(batch: pa.Table) -> bool:
    """Whether no two rows of one site share a message id: the common case (an import's
    rows are of one site), told by Arrow far cheaper than by grouping them in DuckDB."""
    ids = batch.column("message_id")
    if pc.count_distinct(batch.column("site_id")).as_py() != 1:
        return False
    return bool(pc.count_distinct(ids).as_py() == len(ids) - ids.null_count)


def _site(row: tuple[str, str, str, str | None]) -> Site:
    return Site(row[0], row[1], tuple(json.loads(row[2])), row[3] or row[0])


def _arrow_batch(rows: list[EventRow], duplicates: list[bool]) -> pa.Table:
    columns = {
        "site_id": [r.site_id for r in rows],
        "ts": [r.ts_us for r in rows],
        "received_at": [r.received_us for r in rows],
        "event": [r.event for r in rows],
        "token": [r.token for r in rows],
        "ephemeral": [r.ephemeral for r in rows],
        "ab_group": [r.ab_group for r in rows],
        "chatbot_id": [r.chatbot_id for r in rows],
        "popup_version": [r.popup_version for r in rows],
        "open_way": [r.open_way for r in rows],
        "order_num": [r.order_num for r in rows],
        "duplicate": duplicates,
        "total_value_base": [r.total_value_base for r in rows],
        "items": [r.items for r in rows],
        "url": [r.url for r in rows],
        "user_agent": [r.user_agent for r in rows],
        "data": [r.data for r in rows],
        "id_kind": [r.id_kind for r in rows],
        "custom_event": [r.custom_event for r in rows],
    }
    return pa.table({name: pa.array(columns[name], type=kind) for name, kind in _EVENT_COLUMNS})
