"""The events table as Arrow: how batches are handed to DuckDB. Kept apart from the DuckDB
store so ingest worker processes can build batches without loading the database engine."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from footfall.store.base import EVENT_COLUMNS, EventRow

_ARROW_TYPES: dict[str, pa.DataType] = {
    "ts": pa.timestamp("us"),
    "received_at": pa.timestamp("us"),
    "ephemeral": pa.bool_(),
    "duplicate": pa.bool_(),
    "total_value_base": pa.float64(),
}
"""Arrow types of the events columns that are not strings."""
EVENT_ARROW_COLUMNS: tuple[tuple[str, pa.DataType], ...] = tuple(
    (name, _ARROW_TYPES.get(name, pa.string())) for name in EVENT_COLUMNS
)
_ROW_COLUMNS = (
    *((name, kind) for name, kind in EVENT_ARROW_COLUMNS if name != "duplicate"),
    ("message_id", pa.string()),
)
"""What a row brings: every events column but ``duplicate`` (decided by the writer when the
row is journaled), and its message id (kept in ``message_ids``, not in ``events``)."""
ROW_SCHEMA = pa.schema(_ROW_COLUMNS)
_FIELD_COLUMNS = {"ts_us": "ts", "received_us": "received_at"}
"""EventRow fields whose column has another name; the rest share theirs."""
ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EventRow))
"""EventRow's fields in order: a journaled row is the list of its values in this order."""
_FIELD_VALUES = [(name, operator.attrgetter(name)) for name in ROW_FIELDS]


def rows_table(columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """One value sequence per EventRow field as Arrow (``ROW_SCHEMA``)."""
    by_column = {_FIELD_COLUMNS.get(name, name): values for name, values in columns.items()}
    if not by_column:
        return ROW_SCHEMA.empty_table()
    return pa.table({name: pa.array(by_column[name], type=kind) for name, kind in _ROW_COLUMNS})


def with_duplicates(rows: pa.Table, duplicates: Sequence[bool]) -> pa.Table:
    """``rows_table``'s rows with their duplicate flags: the batch the DuckDB store's
    ``load_journaled`` takes."""
    return rows.append_column("duplicate", pa.array(duplicates, pa.bool_()))


def rows_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """``rows_table`` of row objects."""
    return rows_table({name: list(map(value, rows)) for name, value in _FIELD_VALUES})


def table_values(table: pa.Table) -> list[list[Any]]:
    """``rows_table``'s inverse: per row, its values in ``ROW_FIELDS`` order (times back to
    microseconds). For the rare paths: replay, a repeated message, PostgreSQL's COPY."""
    columns = []
    for name in ROW_FIELDS:
        column = table.column(_FIELD_COLUMNS.get(name, name))
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.int64())
        columns.append(column.to_pylist())
    return [list(values) for values in zip(*columns, strict=True)]


def table_rows(table: pa.Table) -> list[EventRow]:
    """``table_values`` as row objects."""
    return [EventRow(*values) for values in table_values(table)]
