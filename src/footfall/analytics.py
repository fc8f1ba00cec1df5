"""Analytics as SQL inside the store; persons come from the identity graph at query time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from footfall.store.base import Store


def _filters(
    site_ids: Sequence[str] | None, start: datetime | None, end: datetime | None
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if site_ids:
        clauses.append(f"site_id IN ({', '.join('?' * len(site_ids))})")
        params.extend(site_ids)
    if start is not None:
        clauses.append("ts >= ?")
        params.append(start)
    if end is not None:
        clauses.append("ts < ?")
        params.append(end)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def unique_people(
    store: Store,
    site_ids: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    resolve_identities: bool = True,
) -> int:
    """Distinct persons with events in the range; without resolution, distinct identifiers."""
    where, params = _filters(site_ids, start, end)
    if resolve_identities:
        sql = f"SELECT count(DISTINCT person_key) FROM event_persons{where}"  # noqa: S608
    else:
        sql = f"SELECT count(DISTINCT id_kind || ':' || token) FROM events{where}"  # noqa: S608
    return int(store.query(sql, params)[0][0])
