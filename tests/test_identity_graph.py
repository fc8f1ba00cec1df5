"""The identity graph on each store (DuckDB file, PostgreSQL server): persons are the
connected components of links."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from footfall.errors import ApiError
from footfall.identity import Identifier, IdentityGraph
from footfall.ingest.validate import now_us
from footfall.store.base import EventRow, Store

TENANT = "default"
NAMES = [f"person-name-{i}" for i in range(7)]
# Property examples share the test's store; each gets an identity graph (tenant) of its own.
_tenants = (f"example-{n}" for n in itertools.count())


@pytest.fixture
def graph(store: Store) -> IdentityGraph:
    return IdentityGraph(store)


def reference_components(edges: set[frozenset[str]], names: list[str]) -> set[frozenset[str]]:
    """Plain depth-first search over the current edges: the persons we must match."""
    adjacency: dict[str, set[str]] = {n: set() for n in names}
    for edge in edges:
        a, b = tuple(edge)
        adjacency[a].add(b)
        adjacency[b].add(a)
    seen: set[str] = set()
    out: set[frozenset[str]] = set()
    for start in names:
        if start in seen:
            continue
        stack, part = [start], set()
        while stack:
            node = stack.pop()
            if node not in part:
                part.add(node)
                stack.extend(adjacency[node] - part)
        seen |= part
        out.add(frozenset(part))
    return out


def graph_components(
    graph: IdentityGraph, names: list[str], tenant: str = TENANT
) -> set[frozenset[str]]:
    persons = graph.persons(tenant)
    groups: dict[int, set[str]] = {}
    for name in names:
        person = persons.get(Identifier("token", name))
        key = person if person is not None else -hash(name)
        groups.setdefault(key, set()).add(name)
    return {frozenset(g) for g in groups.values()}


operation = st.tuples(
    st.sampled_from(["alias", "split"]), st.sampled_from(NAMES), st.sampled_from(NAMES)
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(operation, min_size=1, max_size=25))
def test_persons_equal_connected_components(
    graph: IdentityGraph, ops: list[tuple[str, str, str]]
) -> None:
    tenant = next(_tenants)
    edges: set[frozenset[str]] = set()
    for op, a, b in ops:
        if a == b:
            continue
        if op == "alias":
            graph.alias(tenant, a, b)
            edges.add(frozenset((a, b)))
        elif frozenset((a, b)) in edges:
            graph.split(tenant, a, b)
            edges.discard(frozenset((a, b)))
        else:
            with pytest.raises(ApiError):
                graph.split(tenant, a, b)
    assert graph_components(graph, NAMES, tenant) == reference_components(edges, NAMES)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)), min_size=1, max_size=12),
    st.randoms(),
)
def test_alias_order_and_repetition_do_not_matter(
    graph: IdentityGraph, pairs: list[tuple[str, str]], rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    shuffled = [(b, a) if rnd.random() < 0.5 else (a, b) for a, b in pairs]
    shuffled = shuffled + rnd.sample(shuffled, k=len(shuffled) // 2)
    rnd.shuffle(shuffled)
    results = []
    for sequence in (pairs, shuffled):
        tenant = next(_tenants)
        for a, b in sequence:
            graph.alias(tenant, a, b)
        results.append(graph_components(graph, NAMES, tenant))
    assert results[0] == results[1]


def test_split_keeps_people_joined_by_another_chain(graph: IdentityGraph) -> None:
    for a, b in [("aaaaaaa1", "bbbbbbb2"), ("bbbbbbb2", "ccccccc3"), ("aaaaaaa1", "ccccccc3")]:
        graph.alias(TENANT, a, b)
    first, second = graph.split(TENANT, "aaaaaaa1", "bbbbbbb2")
    assert first == second
    chain = graph.explain(TENANT, "aaaaaaa1", "bbbbbbb2")
    assert chain is not None
    assert [(str(s.a), str(s.b)) for s in chain] == [
        ("token:aaaaaaa1", "token:ccccccc3"),
        ("token:ccccccc3", "token:bbbbbbb2"),
    ]
    graph.split(TENANT, "ccccccc3", "bbbbbbb2")
    assert graph.explain(TENANT, "aaaaaaa1", "bbbbbbb2") is None


def test_identify_links_token_client_id_and_email(graph: IdentityGraph) -> None:
    result = graph.identify(
        TENANT, "browser-token-1", "user-123", " Jane@Example.COM ", {"first_name": "Jane"}
    )
    assert result.merged
    assert not result.refused
    chain = graph.explain(TENANT, "browser-token-1", "email:jane@example.com")
    assert chain is not None
    node = graph.find(TENANT, "user-123")
    assert node is not None
    assert node.kind == "client_id"
    assert node.person_id == result.person_id
    assert graph.profile(TENANT, node.person_id)["metadata"] == {"first_name": "Jane"}


def _visit(store: Store, token: str, ts_us: int) -> None:
    store.insert_events(
        [EventRow(site_id="default", ts_us=ts_us, received_us=ts_us, event="visitor", token=token)]
    )


def test_shared_computer_moves_the_token_and_keeps_history(store: Store) -> None:
    graph = IdentityGraph(store)
    start = now_us() - 10_000_000
    _visit(store, "kiosk-token-1", start)
    first = graph.identify(TENANT, "kiosk-token-1", email="alice@example.com")
    _visit(store, "kiosk-token-1", start + 1_000_000)
    second = graph.identify(TENANT, "kiosk-token-1", email="bob@example.com")
    assert second.moved_token
    assert not second.merged
    assert first.person_id != second.person_id
    _visit(store, "kiosk-token-1", now_us() + 1_000)
    assert first.person_id is not None
    assert second.person_id is not None
    alice = graph.profile(TENANT, first.person_id)
    bob = graph.profile(TENANT, second.person_id)
    assert (alice["events"], bob["events"]) == (2, 1)
    assert graph.explain(TENANT, "email:alice@example.com", "email:bob@example.com") is None
    rule = store.query("SELECT rule FROM links ORDER BY link_id DESC LIMIT 1")
    assert rule == [("token-moved",)]


def test_identify_never_merges_two_identified_people(graph: IdentityGraph) -> None:
    graph.identify(TENANT, "token-alpha-1", "client-a", "a@example.com")
    graph.identify(TENANT, "token-beta-22", "client-b", "b@example.com")
    result = graph.identify(TENANT, "token-gamma-3", "client-a", "b@example.com")
    assert result.refused == ["conflicting-email"]
    assert graph.explain(TENANT, "client-a", "client-b") is None
    logged = graph.store.query("SELECT action, rule FROM link_log WHERE action = 'refused'")
    assert logged == [("refused", "conflicting-email")]
    # The explicit alias API is an instruction, not a guess: it merges.
    graph.alias(TENANT, "client-a", "client-b")
    assert graph.explain(TENANT, "client-a", "client-b") is not None


def test_ephemeral_tokens_are_never_linked(graph: IdentityGraph) -> None:
    result = graph.identify(TENANT, "ephemeral-tok", "client-e", "e@example.com", ephemeral=True)
    assert graph.find(TENANT, "ephemeral-tok") is None
    assert graph.explain(TENANT, "client-e", "email:e@example.com") is not None
    assert result.person_id is not None


def test_identifier_cap_refuses_automatic_merges(store: Store) -> None:
    graph = IdentityGraph(store, max_per_kind=3)
    for i in range(3):
        graph.identify(TENANT, f"shared-token-{i}", client_id="kiosk-user")
    refused = graph.identify(TENANT, "shared-token-9", client_id="kiosk-user")
    assert refused.refused == ["cap-token"]
    assert graph.explain(TENANT, "shared-token-9", "kiosk-user") is None
    assert store.query("SELECT rule FROM link_log WHERE action = 'refused'") == [("cap-token",)]
    graph.alias(TENANT, "shared-token-9", "kiosk-user")  # explicit: merges anyway
    assert graph.explain(TENANT, "shared-token-9", "kiosk-user") is not None


def test_customer_ids_show_only_identifiers_with_events_or_properties(store: Store) -> None:
    graph = IdentityGraph(store)
    _visit(store, "visited-token", now_us())
    graph.alias(TENANT, "visited-token", "never used alias")
    graph.alias(TENANT, "visited-token", "email:with-props@example.com")
    graph.set_properties(TENANT, "email:with-props@example.com", {"plan": "pro"})
    node = graph.find(TENANT, "never used alias")
    assert node is not None
    assert node.kind == "alias"
    profile = graph.profile(TENANT, node.person_id)
    assert sorted(profile["customer_ids"]) == [
        "email:with-props@example.com",
        "token:visited-token",
    ]
    assert len(profile["identifiers"]) == 3


def test_tenants_do_not_share_identities(graph: IdentityGraph) -> None:
    graph.alias("tenant-a", "shared-name-1", "email:x@example.com")
    assert graph.find("tenant-b", "shared-name-1") is None
    graph.alias("tenant-b", "shared-name-1", "other-name-2")
    a = graph.find("tenant-a", "shared-name-1")
    b = graph.find("tenant-b", "shared-name-1")
    assert a is not None
    assert b is not None
    assert a.person_id != b.person_id


def test_bare_names_pick_existing_kinds_first(graph: IdentityGraph) -> None:
    graph.identify(TENANT, "abcdefgh12", client_id="abcdefgh99")
    assert graph.find(TENANT, "abcdefgh99").kind == "client_id"  # type: ignore[union-attr]
    assert graph.find(TENANT, "ABCDEFGH12") is None  # tokens are case-sensitive
    graph.alias(TENANT, "Someone@Example.com", "User 12345")
    email = graph.find(TENANT, "someone@example.com")
    alias = graph.find(TENANT, "User 12345")
    assert email is not None
    assert email.kind == "email"
    assert alias is not None
    assert alias.kind == "alias"
    assert email.person_id == alias.person_id


def test_a_token_seen_only_on_events_is_a_person_of_its_own(store: Store) -> None:
    """A visitor who never identified has no graph node, yet has data: ``locate`` gives the
    token its node, so show, journey, export and erase work for it as for anyone."""
    graph = IdentityGraph(store)
    store.upsert_site("rival", "Rival", ["*"])
    start = now_us() - 5_000_000
    for offset in (0, 1_000_000):
        _visit(store, "anon-visitor-1", start + offset)
    _visit(store, "anon-visitor-2", start)
    store.insert_events(
        [
            EventRow(
                site_id="rival",
                ts_us=start,
                received_us=start,
                event="visitor",
                token="rival-anon-1",
            ),
            EventRow(
                site_id="default",
                ts_us=start,
                received_us=start,
                event="visitor",
                token="ephemeral-anon",
                ephemeral=True,
            ),
        ]
    )
    assert graph.find(TENANT, "anon-visitor-1") is None
    node = graph.locate(TENANT, "anon-visitor-1")
    assert node is not None
    assert node.identifier == Identifier("token", "anon-visitor-1")
    assert graph.locate(TENANT, "token:anon-visitor-1") == node  # the node is made once
    profile = graph.profile(TENANT, node.person_id)
    assert (profile["events"], profile["customer_ids"]) == (2, ["token:anon-visitor-1"])
    assert len(graph.person_events(TENANT, node.person_id)) == 2
    assert len(graph.export(TENANT, node.person_id)["event_list"]) == 2
    # Names without events of this tenant (or only ephemeral ones) are nobody.
    assert graph.locate(TENANT, "never-seen-token") is None
    assert graph.locate(TENANT, "rival-anon-1") is None
    assert graph.locate("rival", "rival-anon-1") is not None
    assert graph.locate(TENANT, "ephemeral-anon") is None
    assert graph.locate(TENANT, "not a token") is None
    assert graph.locate(TENANT, "email:anon-visitor-1@example.com") is None
    # Erasing it deletes its events and leaves the tombstone any erased person leaves.
    other = graph.locate(TENANT, "token:anon-visitor-2")
    assert other is not None
    assert graph.erase(TENANT, other.person_id) == {"identifiers": 1, "events": 1}
    assert (TENANT, "token", "anon-visitor-2") in graph.tombstones()
    assert graph.locate(TENANT, "anon-visitor-2") is None
    assert store.query("SELECT count(*) FROM events WHERE token = 'anon-visitor-2'") == [(0,)]
