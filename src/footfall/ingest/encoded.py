"""Rows already encoded the way the journal stores them, with just what the writer thread
decides on (message ids, order numbers) pulled out beside them.

Batches validated in an ingest worker process come back in this form, so the server
process never builds one object per event: the writer splices the encoded rows of a whole
group into one journal record without decoding them.
"""

from __future__ import annotations

import collections
import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from footfall.store.base import EventRow

FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(EventRow))
"""A journaled row is the list of an EventRow's values in this order."""
row_values = operator.attrgetter(*FIELDS)
_encoder = msgspec.msgpack.Encoder()
_rows_decoder = msgspec.msgpack.Decoder(list[tuple[Any, ...]])
_event_of = operator.attrgetter("event")


@dataclass(slots=True)
class EncodedRows:
    """Rows as the concatenated MessagePack arrays of their values (``FIELDS`` order),
    without the enclosing array's header, so groups join by concatenation."""

    count: int
    body: bytes
    messages: list[tuple[int, str, str]]
    """(row index, site_id, message_id) of the rows that carry a message id."""
    orders: list[tuple[int, str, str, int]]
    """(row index, site_id, order_num, ts_us) of the purchases with an order number."""
    events: dict[str, int]
    """Rows per event type, for the committed-events metric."""

    def __len__(self) -> int:
        return self.count

    def rows(self) -> list[EventRow]:
        """The rows back as objects (the rare paths: a repeated message id)."""
        values = _rows_decoder.decode(array_header(self.count) + self.body)
        return [EventRow(*row) for row in values]


def array_header(count: int) -> bytes:
    """MessagePack's header of an array of ``count`` items."""
    if count < 16:
        return bytes((0x90 | count,))
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def encode_rows(rows: Sequence[EventRow]) -> EncodedRows:
    """``rows`` encoded, with their message ids, orders and event counts beside them."""
    encoded = _encoder.encode(list(map(row_values, rows)))
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
    return EncodedRows(len(rows), encoded[len(array_header(len(rows))) :], messages, orders, events)
