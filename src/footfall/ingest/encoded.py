"""Rows already encoded the way the journal stores them, with just what the writer thread
decides on (message ids, order numbers) pulled out beside them.

Two encodings: MessagePack value lists (rows validated in the server: a handful at a time,
where building Arrow arrays would cost more than the rows), and an Arrow IPC stream (a
large batch validated in an ingest worker process: the loader then hands it to DuckDB as
it is, with no per-event work left in the server). Either way the server process never
builds one object per event of a worker's batch: the writer splices the encoded parts of a
whole group into one journal record without decoding them.
"""

from __future__ import annotations

import collections
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import pyarrow as pa

from footfall.store.arrow import ROW_FIELDS, rows_arrow, table_rows
from footfall.store.base import EventRow

FIELDS = ROW_FIELDS
row_values = operator.attrgetter(*FIELDS)
_encoder = msgspec.msgpack.Encoder()
_rows_decoder = msgspec.msgpack.Decoder(list[tuple[Any, ...]])
_event_of = operator.attrgetter("event")


@dataclass(slots=True)
class EncodedRows:
    """Rows as the concatenated MessagePack arrays of their values (``FIELDS`` order),
    without the enclosing array's header, so groups join by concatenation; or, with
    ``arrow``, as an Arrow IPC stream of ``store.arrow.rows_table``."""

    count: int
    body: bytes
    messages: list[tuple[int, str, str]]
    """(row index, site_id, message_id) of the rows that carry a message id."""
    orders: list[tuple[int, str, str, int]]
    """(row index, site_id, order_num, ts_us) of the purchases with an order number."""
    events: dict[str, int]
    """Rows per event type, for the committed-events metric."""
    identities: set[tuple[str, str]]
    """The (id_kind, token) pairs the rows name, to check against erased identifiers."""
    arrow: bool = False

    def __len__(self) -> int:
        return self.count

    def rows(self) -> list[EventRow]:
        """The rows back as objects (the rare paths: a repeated message id)."""
        if self.arrow:
            return table_rows(read_ipc(self.body))
        values = _rows_decoder.decode(array_header(self.count) + self.body)
        return [EventRow(*row) for row in values]

    def journal_part(self) -> bytes:
        """This part of a journal record: a MessagePack array of the value lists, or a
        MessagePack bin of the Arrow IPC stream."""
        if self.arrow:
            return bin_header(len(self.body)) + self.body
        return array_header(self.count) + self.body


def array_header(count: int) -> bytes:
    """MessagePack's header of an array of ``count`` items."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def bin_header(size: int) -> bytes:
    """MessagePack's header of ``size`` bytes of binary data."""
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def read_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def write_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def encode_rows(rows: Sequence[EventRow], *, arrow: bool = False) -> EncodedRows:
    """``rows`` encoded (as Arrow IPC with ``arrow``), with their message ids, orders and
    event counts beside them."""
    if arrow:
        encoded = write_ipc(rows_arrow(rows))
    else:
        encoded = _encoder.encode(list(map(row_values, rows)))[len(array_header(len(rows))) :]
    messages = [
        (index, row.site_id, row.message_id)
        for index, row in enumerate(rows)
        if row.message_id is not None
    ]
    orders = [
        (index, row.site_id, row.order_num, row.ts_us)
        for index, row in enumerate(rows)
        if row.order_num is not None and row.event == "purchase"
    ]
    events = dict(collections.Counter(map(_event_of, rows)))
    identities = {(row.id_kind, row.token) for row in rows}
    return EncodedRows(len(rows), encoded, messages, orders, events, identities, arrow)
