"""Identity resolution: identifiers, links and persons as connected components.

Every identifier (token, client_id, email, alias) of a tenant is a node; every link joins two
nodes; a person is a connected component, stored as the ``person_id`` of its nodes. A merge
relabels the smaller component, a split recomputes the one it cut; events are never
rewritten, they find their person at query time through their identifier's node. A token
taken over on a shared computer gets a new node valid from that moment, so its earlier
events stay with the earlier person. Every change is written to an append-only link log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from footfall.analytics import form_events, funnel_steps, identifier_days, person_days
from footfall.analytics.dialect import dialect_of
from footfall.errors import ApiError, invalid
from footfall.ingest.validate import TOKEN_PATTERN, printable
from footfall.store.base import Store, Transaction
from footfall.words import counted

log = logging.getLogger("footfall.identity")

KINDS = ("token", "client_id", "email", "alias")
MAX_NAME_CHARS = 255
BEGINNING = datetime(1970, 1, 1)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# When a bare name (alias API, vendor-compatible API) matches several kinds, the first wins.
_KIND_PRIORITY = {"client_id": 0, "token": 1, "email": 2, "alias": 3}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Identifier:
    kind: str
    value: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.value}"


def normalise(kind: str, value: Any, field_name: str | None = None) -> Identifier:
    """Validate one identifier; emails are trimmed and lower-cased."""
    where = field_name or kind
    if kind not in KINDS:
        raise invalid(where, f"unknown identifier kind '{kind}'")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise invalid(where, "must be a string")
    text = str(value)
    if len(text) > MAX_NAME_CHARS:  # the limit is on what was sent, spaces included
        raise invalid(where, f"at most {MAX_NAME_CHARS} characters")
    text = text.strip()
    if kind == "token":
        if TOKEN_PATTERN.fullmatch(text) is None:
            raise invalid(where, "must be 8-128 characters of A-Z, a-z, 0-9, '_' or '-'")
        return Identifier(kind, text)
    if not text:
        raise invalid(where, "must not be empty")
    if kind == "email":
        text = text.lower()
        if _EMAIL.fullmatch(text) is None:
            raise invalid(where, "is not an email address")
    return Identifier(kind, text)


def user_identifiers(client_id: Any, email: Any) -> tuple[list[Identifier], bool]:
    """The user's ids by the identify rules, normalised, and whether the email was sent empty
    (a form's empty field: it clears the email). Callers that answer before identifying (an
    erased identifier is acknowledged unstored) check with it first: a bad id is still a 422.
    A client id or email with a control character is refused (as a custom event name is).
    """
    clear_email = isinstance(email, str) and not email.strip()
    if clear_email:
        if len(email) > MAX_NAME_CHARS:
            raise invalid("user.email", f"at most {MAX_NAME_CHARS} characters")
        email = None
    named = []
    for kind, name, value in (
        ("client_id", "uniqueClientId", client_id),
        ("email", "email", email),
    ):
        if value not in (None, ""):
            identifier = normalise(kind, value, f"user.{name}")
            printable(identifier.value, f"user.{name}")
            named.append(identifier)
    return named, clear_email


def checked_name(value: Any, field_name: str) -> str:
    """A name given to the API (alias, explain, split, vendor ``_p``): a non-empty string of
    at most ``MAX_NAME_CHARS``; its meaning is decided later by ``find``."""
    if value is None or value == "":
        raise invalid(field_name, "required")
    if not isinstance(value, str):
        raise invalid(field_name, "must be a string")
    if len(value) > MAX_NAME_CHARS:
        raise invalid(field_name, f"at most {MAX_NAME_CHARS} characters")
    return value


def parse_name(text: str) -> Identifier | None:
    """``email:jane@x.com`` style names name their kind; bare names return None.

    A bare name means an existing client id, token, email or alias (in that order); a new
    one becomes an email if it looks like one, a token if it has the token format, else an
    alias.
    """
    kind, sep, value = text.partition(":")
    if sep and kind in KINDS and value:
        return normalise(kind, value, "name")
    return None


@dataclass(frozen=True, slots=True)
class Node:
    node_id: int
    kind: str
    value: str
    person_id: int
    valid_from: datetime

    @property
    def identifier(self) -> Identifier:
        return Identifier(self.kind, self.value)


@dataclass(frozen=True, slots=True)
class LinkStep:
    link_id: int
    a: Identifier
    b: Identifier
    source: str
    rule: str
    actor: str
    created_at: datetime

    def to_dict(self) -> dict[str, str]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "source": self.source,
            "rule": self.rule,
            "actor": self.actor,
            "at": self.created_at.isoformat() + "Z",
        }


@dataclass(slots=True)
class IdentifyResult:
    person_id: int | None
    merged: bool = False
    refused: list[str] = field(default_factory=list)
    moved_token: bool = False
    cleared_email: bool = False


_NODE_COLUMNS = "node_id, kind, value, person_id, valid_from"


def _node(row: Sequence[Any]) -> Node:
    return Node(int(row[0]), row[1], row[2], int(row[3]), row[4])


class IdentityGraph:
    """All identity operations of one store; each public method is one transaction."""

    def __init__(self, store: Store, max_per_kind: int = 100, tombstone_days: int = 30) -> None:
        self.store = store
        self.max_per_kind = max_per_kind
        self.tombstone_days = tombstone_days
        self._within: Transaction | None = None

    @contextlib.contextmanager
    def batch(self, tenant: str) -> Iterator[IdentityGraph]:
        """The graph with every operation in one transaction, each seeing those before it:
        one commit for many (an import applies thousands). An error rolls back them all."""
        with self._transaction(tenant) as tx:
            inner = IdentityGraph(self.store, self.max_per_kind, self.tombstone_days)
            inner._within = tx
            yield inner

    def _transaction(self, tenant: str) -> AbstractContextManager[Transaction]:
        if self._within is not None:
            return contextlib.nullcontext(self._within)
        return self.store.transaction(tenant)

    # ------------------------------------------------------------------ node helpers

    @staticmethod
    def _current(tx: Transaction, tenant: str, ident: Identifier) -> Node | None:
        rows = tx.query(
            f"SELECT {_NODE_COLUMNS} FROM identity_nodes "  # noqa: S608 - constant columns
            "WHERE tenant = ? AND value = ? AND kind = ? ORDER BY valid_from DESC LIMIT 1",
            [tenant, ident.value, ident.kind],
        )
        return _node(rows[0]) if rows else None

    @staticmethod
    def _create(
        tx: Transaction, tenant: str, ident: Identifier, valid_from: datetime = BEGINNING
    ) -> Node:
        node_id, person_id = tx.query("SELECT nextval('identity_node_seq'), nextval('person_seq')")[
            0
        ]
        if valid_from != BEGINNING:
            # The identifier's earlier node ends where this one begins.
            tx.query(
                "UPDATE identity_nodes SET valid_to = ? "
                "WHERE tenant = ? AND kind = ? AND value = ? AND valid_to > ?",
                [valid_from, tenant, ident.kind, ident.value, valid_from],
            )
        tx.query(
            "INSERT INTO identity_nodes (node_id, tenant, kind, value, valid_from, person_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [node_id, tenant, ident.kind, ident.value, valid_from, person_id, utcnow()],
        )
        return Node(int(node_id), ident.kind, ident.value, int(person_id), valid_from)

    def _ensure(self, tx: Transaction, tenant: str, ident: Identifier) -> Node:
        return self._current(tx, tenant, ident) or self._create(tx, tenant, ident)

    def _by_name(self, tx: Transaction, tenant: str, name: str, create: bool) -> Node | None:
        """A bare name: an existing client id, token, email or alias, in that order."""
        explicit = parse_name(name)
        if explicit is not None:
            found = self._current(tx, tenant, explicit)
            return found if found or not create else self._create(tx, tenant, explicit)
        text = name.strip()
        if not text or len(text) > MAX_NAME_CHARS:
            raise invalid("name", f"must be 1-{MAX_NAME_CHARS} characters")
        rows = tx.query(
            f"SELECT {_NODE_COLUMNS} FROM identity_nodes "  # noqa: S608 - constant columns
            "WHERE tenant = ? AND value IN (?, ?)",
            [tenant, text, text.lower()],
        )
        candidates = [
            _node(r) for r in rows if r[2] == text or (r[1] == "email" and r[2] == text.lower())
        ]
        if candidates:
            candidates.sort(key=lambda n: (_KIND_PRIORITY[n.kind], -n.valid_from.timestamp()))
            return candidates[0]
        if not create:
            return None
        # A new bare name in the token format is taken as a token: browsers hand their
        # anonymous id to back ends under that format, and its events are token events.
        if _EMAIL.fullmatch(text):
            kind = "email"
        elif TOKEN_PATTERN.fullmatch(text):
            kind = "token"
        else:
            kind = "alias"
        return self._create(tx, tenant, normalise(kind, text, "name"))

    @staticmethod
    def _members(tx: Transaction, person_id: int) -> list[Node]:
        rows = tx.query(
            f"SELECT {_NODE_COLUMNS} FROM identity_nodes "  # noqa: S608 - constant columns
            "WHERE person_id = ? ORDER BY node_id",
            [person_id],
        )
        return [_node(r) for r in rows]

    @staticmethod
    def _log(
        tx: Transaction,
        tenant: str,
        action: str,
        a: Identifier | None,
        b: Identifier | None,
        source: str,
        rule: str,
        actor: str,
    ) -> None:
        tx.query(
            "INSERT INTO link_log VALUES (nextval('link_log_seq'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                tenant,
                action,
                a.kind if a else None,
                a.value if a else None,
                b.kind if b else None,
                b.value if b else None,
                source,
                rule,
                actor,
                utcnow(),
            ],
        )

    def _link(
        self,
        tx: Transaction,
        tenant: str,
        a: Node,
        b: Node,
        source: str,
        rule: str,
        actor: str,
    ) -> int:
        """Add a link and union the two persons; returns the surviving person id."""
        if a.node_id == b.node_id:
            return a.person_id
        existing = tx.query(
            "SELECT link_id FROM links WHERE removed_at IS NULL AND "
            "((a_node = ? AND b_node = ?) OR (a_node = ? AND b_node = ?))",
            [a.node_id, b.node_id, b.node_id, a.node_id],
        )
        if not existing:
            tx.query(
                "INSERT INTO links VALUES (nextval('link_seq'), ?, ?, ?, ?, ?, ?, ?, NULL)",
                [tenant, a.node_id, b.node_id, source, rule, actor, utcnow()],
            )
            self._log(tx, tenant, "link", a.identifier, b.identifier, source, rule, actor)
        if a.person_id == b.person_id:
            return a.person_id
        sizes = dict(
            tx.query(
                "SELECT person_id, count(*) FROM identity_nodes WHERE person_id IN (?, ?) "
                "GROUP BY person_id",
                [a.person_id, b.person_id],
            )
        )
        keep, drop = sorted((a.person_id, b.person_id), key=lambda p: (-int(sizes.get(p, 0)), p))
        tx.query("UPDATE identity_nodes SET person_id = ? WHERE person_id = ?", [keep, drop])
        return int(keep)

    def _profile(self, tx: Transaction, person_id: int) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {kind: set() for kind in KINDS}
        for node in self._members(tx, person_id):
            out[node.kind].add(node.value)
        return out

    def _merge_blocker(self, tx: Transaction, p: int, q: int) -> str | None:
        """Why automatic merging of persons p and q is refused, or None if it is safe."""
        if p == q:
            return None
        first, second = self._profile(tx, p), self._profile(tx, q)
        for kind in ("email", "client_id"):
            if first[kind] and second[kind]:
                return f"conflicting-{kind}"
        for kind in KINDS:
            if len(first[kind]) + len(second[kind]) > self.max_per_kind:
                log.warning(
                    "identifier cap reached; automatic merge refused",
                    extra={"kind": kind, "cap": self.max_per_kind},
                )
                return f"cap-{kind}"
        return None

    # ------------------------------------------------------------------ operations

    def identify(
        self,
        tenant: str,
        token: str | None,
        client_id: str | None = None,
        email: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        ephemeral: bool = False,
        actor: str = "identify",
    ) -> IdentifyResult:
        """Link a browser's token with the user's own ids, unless that would merge strangers.

        ``email=""`` (a form submitted with an empty email field) clears the email: see
        ``_clear_email``. ``None`` leaves it as it is.
        """
        named, clear_email = user_identifiers(client_id, email)
        result = IdentifyResult(person_id=None)
        with self._transaction(tenant) as tx:
            explicit = [self._ensure(tx, tenant, ident) for ident in named]
            target: Node | None = explicit[0] if explicit else None
            if len(explicit) == 2:
                c, e = explicit
                blocker = self._merge_blocker(tx, c.person_id, e.person_id)
                if blocker:
                    result.refused.append(blocker)
                    self._log(
                        tx, tenant, "refused", c.identifier, e.identifier, actor, blocker, actor
                    )
                else:
                    merged = self._link(tx, tenant, c, e, actor, "explicit", actor)
                    result.merged = result.merged or c.person_id != e.person_id
                    target = _with_person(c, merged)
            if token is not None and not ephemeral:
                ident = normalise("token", token)
                if clear_email:
                    result.cleared_email = self._clear_email(tx, tenant, ident, actor)
                node = self._ensure(tx, tenant, ident)
                if target is None:
                    target = node
                elif node.person_id != target.person_id:
                    blocker = self._merge_blocker(tx, node.person_id, target.person_id)
                    if blocker and blocker.startswith("conflicting"):
                        # Shared computer: the token belongs to the new person from now on.
                        moved = self._create(tx, tenant, ident, valid_from=utcnow())
                        target = _with_person(
                            target,
                            self._link(tx, tenant, moved, target, actor, "token-moved", actor),
                        )
                        result.moved_token = True
                    elif blocker:
                        result.refused.append(blocker)
                        self._log(
                            tx,
                            tenant,
                            "refused",
                            node.identifier,
                            target.identifier,
                            actor,
                            blocker,
                            actor,
                        )
                    else:
                        merged = self._link(tx, tenant, node, target, actor, "identify", actor)
                        target = _with_person(target, merged)
                        result.merged = True
            if target is not None and metadata:
                self._set_properties(tx, target.node_id, metadata)
            result.person_id = target.person_id if target else None
        return result

    def identify_many(
        self, tenant: str, requests: Sequence[IdentifyRequest], actor: str = "identify"
    ) -> None:
        """``identify`` for each request in order, in one transaction, with the outcome of
        one call each, ids included (an import applies thousands).

        A request whose identifiers neither the graph nor any request before it has seen
        can only create them and link them (no rule can refuse a merge of new nodes): such
        requests are written a run at a time, in a few statements, with the ids the
        sequences would give them one by one. The rest go through ``identify``."""
        with self.batch(tenant) as graph:
            graph._identify_many(tenant, requests, actor)

    def _identify_many(self, tenant: str, requests: Sequence[IdentifyRequest], actor: str) -> None:
        assert self._within is not None
        tx = self._within
        # The bulk statements are DuckDB's (PostgreSQL's import goes one by one).
        bulk = self.max_per_kind >= 1 and self.store.backend == "duckdb"
        plans = [_new_identifiers(r) if bulk else None for r in requests]
        wanted = sorted({v for plan in plans if plan for v in _values(plan)})
        seen: set[str] = set()
        if wanted:
            seen.update(
                value
                for (value,) in tx.query(
                    "SELECT DISTINCT value FROM identity_nodes "
                    "WHERE tenant = ? AND value IN (SELECT unnest(?::VARCHAR[]))",
                    [tenant, wanted],
                )
            )
        run: list[tuple[list[Identifier], Mapping[str, Any]]] = []
        for request, plan in zip(requests, plans, strict=True):
            if plan is not None and seen.isdisjoint(_values(plan)):
                run.append((plan, request.metadata))
                seen.update(_values(plan))
                continue
            self._create_linked(tx, tenant, run, actor)
            run = []
            sent = (request.token, request.client_id, request.email)
            seen.update(v for v in sent if isinstance(v, str))
            seen.update(v.strip().lower() for v in sent if isinstance(v, str))
            if plan is not None:
                seen.update(_values(plan))
            self.identify(
                tenant,
                request.token,
                request.client_id,
                request.email,
                request.metadata,
                actor=actor,
            )
        self._create_linked(tx, tenant, run, actor)

    @staticmethod
    def _create_linked(
        tx: Transaction,
        tenant: str,
        run: Sequence[tuple[list[Identifier], Mapping[str, Any]]],
        actor: str,
    ) -> None:
        """New identifiers, each request's linked into one person, as ``identify`` makes
        them: nodes (client id, email, token) in order, the client id and email linked
        (rule ``explicit``), the token to the first of them (``identify``); the person is
        the first node's (the merges keep the larger person, of two alike the older)."""
        if not run:
            return
        nodes = sum(len(idents) for idents, _ in run)
        links = sum(len(idents) - 1 for idents, _ in run)
        drawn = tx.query(
            "SELECT nextval('identity_node_seq'), nextval('person_seq') FROM range(?)", [nodes]
        )
        node_ids = sorted(int(row[0]) for row in drawn)
        person_ids = sorted(int(row[1]) for row in drawn)
        link_ids: list[int] = []
        log_ids: list[int] = []
        if links:
            drawn = tx.query(
                "SELECT nextval('link_seq'), nextval('link_log_seq') FROM range(?)", [links]
            )
            link_ids = sorted(int(row[0]) for row in drawn)
            log_ids = sorted(int(row[1]) for row in drawn)
        node_rows: list[tuple[int, str, str, int]] = []
        link_rows: list[tuple[int, int, int, str]] = []
        log_rows: list[tuple[int, Identifier, Identifier, str]] = []
        properties: list[tuple[int, str, str]] = []
        next_node = next_link = 0
        for idents, metadata in run:
            first = node_ids[next_node]
            person = person_ids[next_node]
            created = {}
            for ident in idents:
                created[ident] = node_ids[next_node]
                node_rows.append((node_ids[next_node], ident.kind, ident.value, person))
                next_node += 1
            named = [i for i in idents if i.kind != "token"]
            pairs = []
            if len(named) == 2:
                pairs.append((named[0], named[1], "explicit"))
            if len(named) < len(idents) and named:
                pairs.append((idents[-1], named[0], "identify"))
            for a, b, rule in pairs:
                link_rows.append((link_ids[next_link], created[a], created[b], rule))
                log_rows.append((log_ids[next_link], a, b, rule))
                next_link += 1
            values = {str(key)[:255]: json.dumps(value) for key, value in metadata.items()}
            properties.extend((first, key, value) for key, value in values.items())
        now = utcnow()
        tx.query(
            "INSERT INTO identity_nodes (node_id, tenant, kind, value, valid_from, person_id, "
            "created_at) SELECT unnest(?::BIGINT[]), ?, unnest(?::VARCHAR[]), "
            "unnest(?::VARCHAR[]), ?, unnest(?::BIGINT[]), ?",
            [
                [r[0] for r in node_rows],
                tenant,
                [r[1] for r in node_rows],
                [r[2] for r in node_rows],
                BEGINNING,
                [r[3] for r in node_rows],
                now,
            ],
        )
        if link_rows:
            tx.query(
                "INSERT INTO links (link_id, tenant, a_node, b_node, source, rule, actor, "
                "created_at) SELECT unnest(?::BIGINT[]), ?, unnest(?::BIGINT[]), "
                "unnest(?::BIGINT[]), ?, unnest(?::VARCHAR[]), ?, ?",
                [
                    [r[0] for r in link_rows],
                    tenant,
                    [r[1] for r in link_rows],
                    [r[2] for r in link_rows],
                    actor,
                    [r[3] for r in link_rows],
                    actor,
                    now,
                ],
            )
            tx.query(
                "INSERT INTO link_log (seq, tenant, action, a_kind, a_value, b_kind, b_value, "
                "source, rule, actor, logged_at) SELECT unnest(?::BIGINT[]), ?, 'link', "
                "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
                "unnest(?::VARCHAR[]), ?, unnest(?::VARCHAR[]), ?, ?",
                [
                    [r[0] for r in log_rows],
                    tenant,
                    [r[1].kind for r in log_rows],
                    [r[1].value for r in log_rows],
                    [r[2].kind for r in log_rows],
                    [r[2].value for r in log_rows],
                    actor,
                    [r[3] for r in log_rows],
                    actor,
                    now,
                ],
            )
        if properties:
            tx.query(
                "INSERT INTO identity_properties (node_id, key, value, set_at) "
                "SELECT unnest(?::BIGINT[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), ?",
                [
                    [r[0] for r in properties],
                    [r[1] for r in properties],
                    [r[2] for r in properties],
                    now,
                ],
            )

    def _clear_email(self, tx: Transaction, tenant: str, ident: Identifier, actor: str) -> bool:
        """The token stops being the email(s) identify linked it to directly.

        Like a token moved on a shared computer, it gets a new node valid from now: its
        earlier events stay with the person they belonged to (that email did submit them),
        later ones start anonymous. Links made by the alias API are explicit and stay. Each
        cleared email is logged as an ``unlink`` with the rule ``email-cleared``.
        """
        node = self._current(tx, tenant, ident)
        if node is None:
            return False
        emails = tx.query(
            "SELECT DISTINCT n.value FROM links l JOIN identity_nodes n "
            "ON n.node_id = CASE WHEN l.a_node = ? THEN l.b_node ELSE l.a_node END "
            "WHERE l.removed_at IS NULL AND (l.a_node = ? OR l.b_node = ?) "
            "AND l.rule IN ('identify', 'token-moved') AND n.kind = 'email' ORDER BY n.value",
            [node.node_id, node.node_id, node.node_id],
        )
        if not emails:
            return False
        self._create(tx, tenant, ident, valid_from=utcnow())
        for (value,) in emails:
            cleared = Identifier("email", value)
            self._log(tx, tenant, "unlink", ident, cleared, actor, "email-cleared", actor)
        return True

    def alias(self, tenant: str, a: str, b: str, actor: str = "alias-api") -> int:
        """An explicit instruction: the two names are one person (symmetric, idempotent)."""
        with self._transaction(tenant) as tx:
            first = self._by_name(tx, tenant, a, create=True)
            second = self._by_name(tx, tenant, b, create=True)
            assert first is not None
            assert second is not None
            return self._link(tx, tenant, first, second, "alias", "explicit", actor)

    def set_properties(self, tenant: str, name: str, properties: Mapping[str, Any]) -> int:
        with self._transaction(tenant) as tx:
            node = self._by_name(tx, tenant, name, create=True)
            assert node is not None
            self._set_properties(tx, node.node_id, properties)
            return node.person_id

    @staticmethod
    def _set_properties(tx: Transaction, node_id: int, properties: Mapping[str, Any]) -> None:
        now = utcnow()
        for key, value in properties.items():
            tx.query(
                "INSERT INTO identity_properties VALUES (?, ?, ?, ?) ON CONFLICT (node_id, key) "
                "DO UPDATE SET value = excluded.value, set_at = excluded.set_at",
                [node_id, str(key)[:255], json.dumps(value), now],
            )

    def node_for_event(self, tenant: str, name: str) -> Identifier:
        """Which identifier a vendor-API event names; creates it so the event has a person."""
        with self._transaction(tenant) as tx:
            node = self._by_name(tx, tenant, name, create=True)
            assert node is not None
            return node.identifier

    def find(self, tenant: str, name: str) -> Node | None:
        with self._transaction(tenant) as tx:
            return self._by_name(tx, tenant, name, create=False)

    def locate(self, tenant: str, name: str) -> Node | None:
        """The node of the person a name means, for show, journey, export and erase.

        Besides the graph's identifiers, a name seen only on events (a visitor who never
        identified: a bare token, or ``kind:value``) has a person too, of that one
        identifier: it gets its node here, so the rights of access and erasure hold for it
        and erasing it leaves the same tombstone as any other person's. Ephemeral events
        make nobody a person (they are never linked or counted as people either).
        """
        with self._transaction(tenant) as tx:
            node = self._by_name(tx, tenant, name, create=False)
            if node is not None:
                return node
            ident = parse_name(name)
            if ident is None:
                text = name.strip()
                if TOKEN_PATTERN.fullmatch(text) is None:
                    return None
                ident = Identifier("token", text)
            seen = tx.query(
                "SELECT 1 FROM events e JOIN sites s ON s.site_id = e.site_id "
                "WHERE coalesce(s.tenant, s.site_id) = ? AND e.id_kind = ? AND e.token = ? "
                "AND NOT e.ephemeral LIMIT 1",
                [tenant, ident.kind, ident.value],
            )
            return self._create(tx, tenant, ident) if seen else None

    def members(self, person_id: int) -> list[Node]:
        # One statement: consistent by itself, so no transaction (and no lock) is needed.
        return self._members(self.store, person_id)

    def persons(self, tenant: str) -> dict[Identifier, int]:
        """Every identifier's current person (a token's latest node)."""
        rows = self.store.query(
            "SELECT kind, value, person_id FROM identity_nodes WHERE tenant = ? "
            "ORDER BY valid_from",
            [tenant],
        )
        return {Identifier(k, v): int(p) for k, v, p in rows}

    def explain(self, tenant: str, a: str, b: str) -> list[LinkStep] | None:
        """The chain of links that makes ``a`` and ``b`` one person, or None if they are not."""
        with self._transaction(tenant) as tx:
            first = self._by_name(tx, tenant, a, create=False)
            second = self._by_name(tx, tenant, b, create=False)
            if first is None or second is None or first.person_id != second.person_id:
                return None
            members = {n.node_id: n for n in self._members(tx, first.person_id)}
            links = self._active_links(tx, list(members))
        adjacency: dict[int, list[tuple[int, tuple[Any, ...]]]] = {}
        for row in links:
            adjacency.setdefault(row[1], []).append((row[2], row))
            adjacency.setdefault(row[2], []).append((row[1], row))
        previous: dict[int, tuple[int, tuple[Any, ...]] | None] = {first.node_id: None}
        queue = deque([first.node_id])
        while queue:
            current = queue.popleft()
            if current == second.node_id:
                break
            for neighbour, row in adjacency.get(current, []):
                if neighbour not in previous:
                    previous[neighbour] = (current, row)
                    queue.append(neighbour)
        steps: list[LinkStep] = []
        cursor = second.node_id
        while (hop := previous.get(cursor)) is not None:
            before, row = hop
            steps.append(
                LinkStep(
                    int(row[0]),
                    members[before].identifier,
                    members[cursor].identifier,
                    row[3],
                    row[4],
                    row[5],
                    row[6],
                )
            )
            cursor = before
        steps.reverse()
        return steps

    @staticmethod
    def _active_links(tx: Transaction, node_ids: list[int]) -> list[tuple[Any, ...]]:
        if not node_ids:
            return []
        marks = ", ".join("?" * len(node_ids))
        return tx.query(
            "SELECT link_id, a_node, b_node, source, rule, actor, created_at FROM links "  # noqa: S608
            f"WHERE removed_at IS NULL AND a_node IN ({marks})",
            node_ids,
        )

    def split(self, tenant: str, a: str, b: str, actor: str = "split") -> tuple[int, int]:
        """Remove the direct link between ``a`` and ``b`` and recompute; returns both persons."""
        with self._transaction(tenant) as tx:
            first = self._by_name(tx, tenant, a, create=False)
            second = self._by_name(tx, tenant, b, create=False)
            if first is None or second is None:
                raise ApiError(404, "NOT_FOUND", "unknown identifier")
            cut = tx.query(
                "UPDATE links SET removed_at = ? WHERE removed_at IS NULL AND "
                "((a_node = ? AND b_node = ?) OR (a_node = ? AND b_node = ?)) RETURNING link_id",
                [utcnow(), first.node_id, second.node_id, second.node_id, first.node_id],
            )
            if not cut:
                raise ApiError(
                    409, "NO_DIRECT_LINK", "these two are not linked directly; see explain"
                )
            self._log(
                tx, tenant, "unlink", first.identifier, second.identifier, actor, "split", actor
            )
            members = self._members(tx, first.person_id)
            reached = _component(
                first.node_id, self._active_links(tx, [n.node_id for n in members])
            )
            if second.node_id in reached:
                return first.person_id, first.person_id
            # The part holding the oldest identifier keeps the person id.
            other = [n.node_id for n in members if n.node_id not in reached]
            moving = other if min(reached) < min(other) else sorted(reached)
            (new_person,) = tx.query("SELECT nextval('person_seq')")[0]
            marks = ", ".join("?" * len(moving))
            tx.query(
                f"UPDATE identity_nodes SET person_id = ? WHERE node_id IN ({marks})",  # noqa: S608
                [new_person, *moving],
            )
            stays = first.person_id
            return (int(new_person), stays) if first.node_id in moving else (stays, int(new_person))

    # ------------------------------------------------------------------ person views

    def _event_filter(self, nodes: list[Node]) -> tuple[str, list[Any]]:
        """SQL selecting exactly the events attributed to ``nodes`` (their validity ranges)."""
        if not nodes:
            return "FALSE", []
        # A token taken over and then named again holds two nodes with one value: one
        # placeholder per distinct value, never per node.
        values = sorted({n.value for n in nodes})
        marks = ", ".join("?" * len(values))
        return f"person_id = ? AND token IN ({marks})", [nodes[0].person_id, *values]

    def person_events(
        self, tenant: str, person_id: int, limit: int | None = None
    ) -> list[dict[str, Any]]:
        nodes = self.members(person_id)
        where, params = self._event_filter(nodes)
        sql = (
            "SELECT event_id, site_id, ts, event, token, id_kind, chatbot_id, order_num, "  # noqa: S608
            "total_value_base, duplicate, ab_group, url, data, items, custom_event "
            "FROM event_persons "
            f"WHERE tenant = ? AND {where} ORDER BY ts, event_id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.store.query(sql, [tenant, *params])
        names = (
            "event_id",
            "site_id",
            "ts",
            "event",
            "identifier",
            "identifier_kind",
            "chatbot_id",
            "order_num",
            "total_value_base",
            "duplicate",
            "ab_group",
            "url",
            "data",
            "items",
            "custom_event",
        )
        out = []
        for row in rows:
            record = dict(zip(names, row, strict=True))
            record["ts"] = record["ts"].isoformat() + "Z"
            record["data"] = json.loads(record["data"]) if record["data"] else {}
            record["items"] = json.loads(record["items"]) if record["items"] else None
            out.append(record)
        return out

    def profile(self, tenant: str, person_id: int) -> dict[str, Any]:
        """Identifiers (customer ids: only those with events or properties), metadata, times."""
        nodes = self.members(person_id)
        if not nodes:
            raise ApiError(404, "NOT_FOUND", "no such person")
        ids = [n.node_id for n in nodes]
        marks = ", ".join("?" * len(ids))
        properties: dict[str, Any] = {}
        with_properties: set[int] = set()
        for node_id, key, value in self.store.query(
            f"SELECT node_id, key, value FROM identity_properties WHERE node_id IN ({marks}) "  # noqa: S608
            "ORDER BY set_at",
            ids,
        ):
            properties[key] = json.loads(value) if value is not None else None
            with_properties.add(int(node_id))
        where, params = self._event_filter(nodes)
        activity = {
            int(node_id): (int(count), first, last)
            for node_id, count, first, last in self.store.query(
                "SELECT node_id, count(*), min(ts), max(ts) FROM event_persons "  # noqa: S608
                f"WHERE tenant = ? AND {where} GROUP BY node_id",
                [tenant, *params],
            )
        }
        identifiers = []
        for node in nodes:
            count, first, last = activity.get(node.node_id, (0, None, None))
            identifiers.append(
                {
                    "kind": node.kind,
                    "value": node.value,
                    "events": count,
                    "first_seen": first.isoformat() + "Z" if first else None,
                    "last_seen": last.isoformat() + "Z" if last else None,
                    "has_properties": node.node_id in with_properties,
                    "since": None
                    if node.valid_from == BEGINNING
                    else node.valid_from.isoformat() + "Z",
                }
            )
        firsts = [a[1] for a in activity.values() if a[1] is not None]
        lasts = [a[2] for a in activity.values() if a[2] is not None]
        return {
            "person_id": person_id,
            "customer_ids": [
                f"{i['kind']}:{i['value']}"
                for i in identifiers
                if i["events"] or i["has_properties"]
            ],
            "identifiers": identifiers,
            "metadata": properties,
            "events": sum(a[0] for a in activity.values()),
            "first_seen": min(firsts).isoformat() + "Z" if firsts else None,
            "last_seen": max(lasts).isoformat() + "Z" if lasts else None,
        }

    def export(self, tenant: str, person_id: int) -> dict[str, Any]:
        """Everything stored about a person, for a data-access request."""
        profile = self.profile(tenant, person_id)
        nodes = self.members(person_id)
        with self._transaction(tenant) as tx:
            links = self._active_links(tx, [n.node_id for n in nodes])
        by_id = {n.node_id: n for n in nodes}
        values = sorted({n.value for n in nodes})
        marks = ", ".join("?" * len(values))
        history = self.store.query(
            "SELECT action, a_kind, a_value, b_kind, b_value, source, rule, actor, logged_at "  # noqa: S608
            f"FROM link_log WHERE tenant = ? AND (a_value IN ({marks}) OR b_value IN ({marks})) "
            "ORDER BY seq",
            [tenant, *values, *values],
        )
        return {
            **profile,
            "exported_at": utcnow().isoformat() + "Z",
            "links": [
                {
                    "a": str(by_id[row[1]].identifier) if row[1] in by_id else None,
                    "b": str(by_id[row[2]].identifier) if row[2] in by_id else None,
                    "source": row[3],
                    "rule": row[4],
                    "created_at": row[6].isoformat() + "Z",
                }
                for row in links
            ],
            "link_log": [
                {
                    "action": r[0],
                    "a": f"{r[1]}:{r[2]}" if r[1] else None,
                    "b": f"{r[3]}:{r[4]}" if r[3] else None,
                    "source": r[5],
                    "rule": r[6],
                    "actor": r[7],
                    "at": r[8].isoformat() + "Z",
                }
                for r in history
            ],
            "event_list": self.person_events(tenant, person_id),
        }

    def erase(self, tenant: str, person_id: int, actor: str = "erase") -> dict[str, int]:
        """Delete a person's identifiers, links, properties and events; tombstone the names."""
        nodes = self.members(person_id)
        if not nodes:
            raise ApiError(404, "NOT_FOUND", "no such person")
        where, params = self._event_filter(nodes)
        now = utcnow()
        until = now + timedelta(days=self.tombstone_days)
        ids = [n.node_id for n in nodes]
        marks = ", ".join("?" * len(ids))
        values = sorted({n.value for n in nodes})
        vmarks = ", ".join("?" * len(values))
        with self._transaction(tenant) as tx:
            doomed = [
                r[0]
                for r in tx.query(
                    f"SELECT event_id FROM event_persons WHERE tenant = ? AND {where}",  # noqa: S608
                    [tenant, *params],
                )
            ]
            for start in range(0, len(doomed), 1000):
                chunk = doomed[start : start + 1000]
                tx.query(
                    f"DELETE FROM events WHERE event_id IN ({', '.join('?' * len(chunk))})",  # noqa: S608
                    chunk,
                )
            # The daily rollups are derived from the events just deleted: their rows go too.
            identifier_days.forget_erased(tx, dialect_of(self.store), values, tenant)
            funnel_steps.forget_erased(tx, dialect_of(self.store), values)
            person_days.forget_erased(tx, dialect_of(self.store), person_id, values, tenant)
            form_events.forget_erased(tx, dialect_of(self.store), doomed)
            tx.query(f"DELETE FROM identity_properties WHERE node_id IN ({marks})", ids)  # noqa: S608
            tx.query(
                f"DELETE FROM links WHERE a_node IN ({marks}) OR b_node IN ({marks})",  # noqa: S608
                [*ids, *ids],
            )
            tx.query(f"DELETE FROM identity_nodes WHERE node_id IN ({marks})", ids)  # noqa: S608
            # The log keeps that links existed, not whose: erased names are blanked.
            for column in ("a_value", "b_value"):
                tx.query(
                    f"UPDATE link_log SET {column} = '[erased]' "  # noqa: S608 - fixed names
                    f"WHERE tenant = ? AND {column} IN ({vmarks})",
                    [tenant, *values],
                )
            names = sorted({(n.kind, n.value) for n in nodes})
            for kind, value in names:
                tx.query(
                    "INSERT INTO tombstones VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (tenant, kind, value) DO UPDATE SET "
                    "erased_at = excluded.erased_at, until_at = excluded.until_at",
                    [tenant, kind, value, now, until],
                )
            erased = counted(len(names), "identifier")
            self._log(tx, tenant, "erase", None, None, actor, erased, actor)
        return {"identifiers": len(names), "events": len(doomed)}

    def tombstones(self) -> set[tuple[str, str, str]]:
        rows = self.store.query(
            "SELECT tenant, kind, value FROM tombstones WHERE until_at > ?", [utcnow()]
        )
        return {(t, k, v) for t, k, v in rows}


@dataclass(frozen=True, slots=True)
class IdentifyRequest:
    """One ``identify`` call's arguments, for ``identify_many``."""

    token: str | None
    client_id: str | None = None
    email: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _new_identifiers(request: IdentifyRequest) -> list[Identifier] | None:
    """The identifiers ``identify`` would create for the request were they all new (user
    ids, then the token), or None where it may do more (clear an email) or refuse."""
    try:
        named, clear_email = user_identifiers(request.client_id, request.email)
        token = None if request.token is None else normalise("token", request.token)
    except ApiError:
        return None
    if clear_email:
        return None
    idents = [*named, token] if token is not None else named
    return idents or None


def _values(idents: Sequence[Identifier]) -> set[str]:
    """Values a name lookup could match them by (any kind; emails in lower case)."""
    return {ident.value for ident in idents} | {ident.value.lower() for ident in idents}


def _with_person(node: Node, person_id: int) -> Node:
    return Node(node.node_id, node.kind, node.value, person_id, node.valid_from)


def _component(start: int, links: Iterable[Sequence[Any]]) -> set[int]:
    adjacency: dict[int, list[int]] = {}
    for row in links:
        adjacency.setdefault(int(row[1]), []).append(int(row[2]))
        adjacency.setdefault(int(row[2]), []).append(int(row[1]))
    seen = {start}
    queue = deque([start])
    while queue:
        for neighbour in adjacency.get(queue.popleft(), []):
            if neighbour not in seen:
                seen.add(neighbour)
                queue.append(neighbour)
    return seen
