"""The dashboard's person search on both stores: graph identifiers and event-only tokens,
any case, LIKE wildcards taken literally, one tenant never finding another's people."""

from __future__ import annotations

from analytics_data import load
from footfall.store.base import Store
from footfall.web.people import like_pattern, search_identifiers

DEFAULT = {"default": ["default", "help"]}


def _events(store: Store, token: str) -> int:
    return int(store.query("SELECT count(*) FROM events WHERE token = ?", [token])[0][0])


def test_search_finds_graph_names_and_event_only_tokens(store: Store) -> None:
    graph = load(store)
    alice = search_identifiers(store, DEFAULT, "ALICE")
    assert [h.name for h in alice] == [
        "email:alice@example.test",
        "token:alicehelp1",
        "token:aliceshop1",
    ]
    (person,) = {h.person_id for h in alice}
    assert person is not None
    profile = graph.profile("default", person)
    # Every name of Alice shows her events as a person: all her tokens' events together.
    assert {h.events for h in alice} == {profile["events"]}
    assert profile["events"] == _events(store, "aliceshop1") + _events(store, "alicehelp1")
    (bob,) = search_identifiers(store, DEFAULT, "bobshop")
    assert (bob.name, bob.person_id) == ("token:bobshop000", None)
    assert bob.events == _events(store, "bobshop000") > 0
    assert bob.last_seen is not None


def test_search_stays_in_its_tenant_and_skips_ephemeral_tokens(store: Store) -> None:
    load(store)
    assert search_identifiers(store, DEFAULT, "erin") == []
    (erin,) = search_identifiers(store, {"rival": ["rival"]}, "erin")
    assert erin.tenant == "rival"
    assert search_identifiers(store, DEFAULT, "davetmp") == []  # no consent: no person
    assert search_identifiers(store, {}, "alice") == []
    assert search_identifiers(store, DEFAULT, "") == []


def test_like_wildcards_are_literal(store: Store) -> None:
    load(store)
    assert like_pattern("a_b%c\\") == "%a\\_b\\%c\\\\%"
    # Unescaped, "_" would match every identifier; no name here holds an underscore.
    assert search_identifiers(store, DEFAULT, "_") == []
    assert search_identifiers(store, DEFAULT, "%") == []
    assert [h.name for h in search_identifiers(store, DEFAULT, "@example.")] == [
        "email:alice@example.test"
    ]
