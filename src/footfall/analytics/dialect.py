"""The few SQL spellings that differ between DuckDB and PostgreSQL, for the analytics
modules that write SQL for both stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from footfall.store.base import Store, Transaction


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few SQL spellings that differ between DuckDB and PostgreSQL."""

    name: str

    def first_by(self, value: str, order: str, where: str | None = None) -> str:
        """The value of the row with the smallest ``order`` in a group (among ``where``)."""
        only = f" FILTER (WHERE {where})" if where else ""
        if self.name == "duckdb":
            return f"arg_min({value}, {order}){only}"
        return f"(array_agg({value} ORDER BY {order}){only})[1]"

    def last_by(self, value: str, order: str, where: str | None = None) -> str:
        """The value of the row with the largest ``order`` in a group (among ``where``)."""
        only = f" FILTER (WHERE {where})" if where else ""
        if self.name == "duckdb":
            return f"arg_max({value}, {order}){only}"
        return f"(array_agg({value} ORDER BY {order} DESC){only})[1]"

    def any_value(self, value: str) -> str:
        """Any one value of a group whose rows all hold the same (DuckDB: without comparing)."""
        return f"any_value({value})" if self.name == "duckdb" else f"min({value})"

    def row_key(self, *columns: str) -> str:
        """One BIGINT hash of several text columns, to partition and group by an integer
        (two of a million keys collide with a probability of about 1 in 10 million)."""
        if self.name == "duckdb":
            return f"CAST(hash({', '.join(columns)}) >> 1 AS BIGINT)"
        joined = " || chr(31) || ".join(columns)
        return f"hashtextextended({joined}, 0)"

    def items(self, column: str) -> str:
        """A lateral row source with one JSON ``item`` per element of a JSON array column."""
        if self.name == "duckdb":
            return f"(SELECT unnest(CAST({column} AS JSON[])) AS item)"
        return f"jsonb_array_elements({column}) AS item"

    def seconds(self, placeholder: str = "?") -> str:
        return f"({placeholder} * INTERVAL '1 second')"

    def person_key(self, person_id: str, token: str) -> str:
        """One BIGINT per person: ``-person_id`` for identity-graph persons, else a 63-bit
        hash of the token (a person of one identifier).

        Integers group and join several times faster than strings at 10M events. Two of a
        million unlinked tokens share a hash with a probability of about 3 in 100 million.
        """
        return f"coalesce(-{person_id}, {self.unlinked_key(token)})"

    def unlinked_key(self, token: str) -> str:
        """The person key of an identifier no node links: a 63-bit hash of its value."""
        if self.name == "duckdb":
            return f"CAST(hash({token}) >> 1 AS BIGINT)"
        return f"(hashtextextended({token}, 0) & 9223372036854775807)"

    def index_lookup(self, table: str, alias: str, condition: str) -> str:
        """PostgreSQL: a FROM item after a fold's small temporary table: for each of its
        rows, the rows of ``table`` (as ``alias``, with their ``ctid``) matching
        ``condition``, looked up one by one by the index of its equality. OFFSET 0 keeps the
        planner from flattening the look-ups into a join: without statistics on a table made
        a moment ago it would hash or sort the whole big table (seconds at 10M events, where
        the look-ups take milliseconds)."""
        return (
            f"CROSS JOIN LATERAL (SELECT {alias}.*, {alias}.ctid FROM {table} {alias} "  # noqa: S608
            f"WHERE {condition} OFFSET 0) {alias}"
        )

    def temp_table(
        self,
        tx: Transaction,
        name: str,
        definition: str,
        params: list[Any] | None = None,
        *,
        analyze: bool = False,
    ) -> None:
        """A fold's temporary table, ``CREATE TEMP TABLE name definition`` (``AS SELECT ...``
        or a column list) on both stores, dropped first if a failed fold left one.
        ``analyze``: PostgreSQL then gathers its statistics, for statements that join it with
        big tables (without them it is planned as if it held thousands of rows); a fold that
        looks its rows up by ``index_lookup`` needs none."""
        tx.query(f"DROP TABLE IF EXISTS {name}")
        tx.query(f"CREATE TEMP TABLE {name} {definition}", params or [])
        if analyze and self.name != "duckdb":
            tx.query(f"ANALYZE {name}")

    @contextmanager
    def row_joins(self, tx: Transaction) -> Iterator[None]:
        """PostgreSQL: inside, joins are nested loops, so a join on ``ctid`` fetches each
        row by its address instead of hashing the whole table (see ``index_lookup``). The
        settings return when the block ends; a failing block's transaction ends and takes
        them with it."""
        if self.name == "duckdb":
            yield
            return
        knobs = ("enable_hashjoin", "enable_mergejoin")
        before = tx.query("SELECT " + ", ".join(f"current_setting('{k}')" for k in knobs))[0]
        setting = "SELECT " + ", ".join(f"set_config('{k}', ?, true)" for k in knobs)
        tx.query(setting, ["off"] * len(knobs))
        yield
        tx.query(setting, list(before))


def dialect_of(store: Store) -> Dialect:
    return Dialect("duckdb" if store.backend == "duckdb" else "postgresql")
