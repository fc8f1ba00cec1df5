"""The few SQL spellings that differ between DuckDB and PostgreSQL, for the analytics
modules that write SQL for both stores."""

from __future__ import annotations

from dataclasses import dataclass

from footfall.store.base import Store


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


def dialect_of(store: Store) -> Dialect:
    return Dialect("duckdb" if store.backend == "duckdb" else "postgresql")
