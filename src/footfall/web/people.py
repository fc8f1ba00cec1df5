"""Person search for the dashboard: identifiers containing a piece of text.

A person is either a component of the identity graph (its nodes: emails, client ids,
aliases, tokens that were linked) or a token that only ever appeared on events and was
never linked (a person of one identifier, without a node). The search looks in both, in
two statements, bounded by a limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from footfall.store.base import Store

KIND_ORDER = {"email": 0, "client_id": 1, "alias": 2, "token": 3}


@dataclass(slots=True)
class Hit:
    tenant: str
    kind: str
    value: str
    person_id: int | None = None
    events: int | None = None
    last_seen: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.value}"


def like_pattern(text: str) -> str:
    """``%text%`` with LIKE's own wildcards escaped (tokens contain ``_``)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_identifiers(
    store: Store, tenants: Mapping[str, Sequence[str]], text: str, limit: int = 50
) -> list[Hit]:
    """Identifiers of the given tenants (tenant -> its sites) containing ``text``, any case.

    Graph nodes come first (by kind, then value), then identifiers seen only on events,
    most recently seen first; each with its person's event count and last event.
    """
    if not tenants or not text:
        return []
    pattern = like_pattern(text)
    names = sorted(tenants)
    marks = ", ".join("?" * len(names))
    node_rows = store.query(
        "SELECT DISTINCT tenant, kind, value, person_id FROM identity_nodes "  # noqa: S608
        f"WHERE tenant IN ({marks}) AND valid_to > ? AND lower(value) LIKE ? ESCAPE '\\' "
        "ORDER BY kind, value LIMIT ?",
        [*names, datetime.now(UTC).replace(tzinfo=None), pattern, limit],
    )
    sites = sorted({s for tenant in names for s in tenants[tenant]})
    site_marks = ", ".join("?" * len(sites))
    event_rows = (
        store.query(
            "SELECT coalesce(s.tenant, s.site_id), e.id_kind, e.token, count(*), max(e.ts) "  # noqa: S608
            "FROM events e JOIN sites s ON s.site_id = e.site_id "
            f"WHERE e.site_id IN ({site_marks}) AND NOT e.ephemeral "
            "AND lower(e.token) LIKE ? ESCAPE '\\' "
            "GROUP BY 1, 2, 3 ORDER BY 5 DESC, 3 LIMIT ?",
            [*sites, pattern, limit],
        )
        if sites
        else []
    )
    hits: dict[tuple[str, str, str], Hit] = {}
    for tenant, kind, value, count, last in event_rows:
        hits[(tenant, kind, value)] = Hit(tenant, kind, value, None, int(count), last)
    persons = sorted({int(r[3]) for r in node_rows})
    activity: dict[int, tuple[int, datetime | None]] = {}
    if persons and sites:
        # A graph person's events are those of all its identifiers: one grouped join.
        person_marks = ", ".join("?" * len(persons))
        activity = {
            int(person): (int(count), last)
            for person, count, last in store.query(
                "SELECT n.person_id, count(*), max(e.ts) FROM identity_nodes n "  # noqa: S608
                "JOIN events e ON e.token = n.value AND e.id_kind = n.kind "
                "AND e.ts >= n.valid_from AND e.ts < n.valid_to "
                f"WHERE n.person_id IN ({person_marks}) AND n.tenant IN ({marks}) "
                f"AND e.site_id IN ({site_marks}) GROUP BY 1",
                [*persons, *names, *sites],
            )
        }
    for tenant, kind, value, person in node_rows:
        count, last = activity.get(int(person), (0, None))
        hits[(tenant, kind, value)] = Hit(tenant, kind, value, int(person), count, last)
    ordered = sorted(
        hits.values(),
        key=lambda h: (
            h.person_id is None,
            KIND_ORDER.get(h.kind, 9) if h.person_id is not None else 0,
            -(h.last_seen.timestamp() if h.last_seen else 0),
            h.value,
        ),
    )
    return ordered[:limit]


def display_name(identifiers: Sequence[Mapping[str, Any]]) -> str:
    """The name a person is shown by: an email, else a client id, an alias, a token."""
    ranked = sorted(identifiers, key=lambda i: KIND_ORDER.get(str(i["kind"]), 9))
    return f"{ranked[0]['kind']}:{ranked[0]['value']}" if ranked else "(no identifiers)"
