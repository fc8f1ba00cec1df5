"""The events table as Arrow: how batches are handed to DuckDB. Kept apart from the DuckDB
store so ingest worker processes can build batches without loading the database engine."""

from __future__ import annotations

import dataclasses
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
_JOURNAL_COLUMNS = (*EVENT_ARROW_COLUMNS, ("message_id", pa.string()))
_FIELD_COLUMNS = {"ts_us": "ts", "received_us": "received_at"}
"""EventRow fields whose column has another name; the rest share theirs."""


def events_table(columns: Mapping[str, Sequence[Any]], duplicates: Sequence[bool]) -> pa.Table:
    """One value sequence per EventRow field to the batch the DuckDB store's
    ``load_journaled`` takes: the events columns and the message ids."""
    by_column = {_FIELD_COLUMNS.get(name, name): values for name, values in columns.items()}
    by_column["duplicate"] = duplicates
    if not duplicates:
        return pa.table({name: pa.array([], type=kind) for name, kind in _JOURNAL_COLUMNS})
    return pa.table({name: pa.array(by_column[name], type=kind) for name, kind in _JOURNAL_COLUMNS})


def event_rows(table: pa.Table) -> list[EventRow]:
    """``events_table``'s rows back as objects, for a store that writes rows one by one
    (PostgreSQL's COPY); the duplicate flags are the store's to set again."""
    columns = []
    for field in dataclasses.fields(EventRow):
        values = table.column(_FIELD_COLUMNS.get(field.name, field.name))
        if pa.types.is_timestamp(values.type):
            values = values.cast(pa.int64())
        columns.append(values.to_pylist())
    return [EventRow(*values) for values in zip(*columns, strict=True)]
