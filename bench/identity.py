"""Identity resolution cost: merges per second, and unique people over 1M events.

Builds a DuckDB file with 1,000,000 events from 400,000 tokens, of which 200,000 are merged
(with an email each) into 100,000 persons, then times in the same run:
  - the unique-people count with identity resolution (query-time, through event_persons)
  - the same count without resolution (distinct tokens): the baseline
  - alias calls (merges) per second through the identity graph, each its own transaction.

    python bench/identity.py [--events 1000000] [--merges 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from footfall.analytics.reports import Filters, people_count
from footfall.identity import IdentityGraph
from footfall.store.duckdb import DuckDBStore

BENCH = Path(__file__).resolve().parent
EVERYTHING = Filters(None, datetime(1970, 1, 1), datetime(2100, 1, 1))


def timed(fn: object, repeat: int = 5) -> tuple[float, object]:
    assert callable(fn)
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def build(store: DuckDBStore, events: int, tokens: int, persons: int) -> None:
    store.upsert_site("default", "Default", ["*"])
    store.query(
        "INSERT INTO events (site_id, ts, received_at, event, token, ephemeral, duplicate, data, "
        "id_kind) SELECT 'default', TIMESTAMP '2026-01-01' + to_seconds(i * 3), "
        "TIMESTAMP '2026-01-01' + to_seconds(i * 3), "
        "CASE i % 4 WHEN 0 THEN 'visitor' WHEN 1 THEN 'bot_open' WHEN 2 THEN 'message_sent' "
        "ELSE 'convo_started' END, 'tok' || lpad(CAST(hash(i) % ? AS VARCHAR), 8, '0'), "
        "false, false, '{}', 'token' FROM range(?) t(i)",
        [tokens, events],
    )
    # Persons p < persons: tokens 2p and 2p+1 plus email p, linked token-email-token.
    store.query(
        "INSERT INTO identity_nodes (node_id, tenant, kind, value, valid_from, person_id, "
        "created_at) SELECT row_number() OVER (), 'default', kind, value, "
        "TIMESTAMP '1970-01-01', p + 1, now()::TIMESTAMP FROM ("
        " SELECT p, 'token' AS kind, 'tok' || lpad(CAST(2 * p AS VARCHAR), 8, '0') AS value "
        " FROM range(?) r(p) UNION ALL "
        " SELECT p, 'token', 'tok' || lpad(CAST(2 * p + 1 AS VARCHAR), 8, '0') FROM range(?) r(p) "
        " UNION ALL SELECT p, 'email', 'user' || p || '@example.com' FROM range(?) r(p))",
        [persons, persons, persons],
    )
    store.query(
        "INSERT INTO links SELECT row_number() OVER (), 'default', a.node_id, b.node_id, "
        "'bench', 'explicit', 'bench', now()::TIMESTAMP, NULL FROM identity_nodes a "
        "JOIN identity_nodes b ON a.person_id = b.person_id AND a.kind = 'token' "
        "AND b.kind = 'email'"
    )
    next_node = store.query("SELECT max(node_id) + 1 FROM identity_nodes")[0][0]
    next_link = store.query("SELECT max(link_id) + 1 FROM links")[0][0]
    for name, start in (
        ("identity_node_seq", next_node),
        ("person_seq", persons + 1),
        ("link_seq", next_link),
    ):
        store.query(f"DROP SEQUENCE {name}")
        store.query(f"CREATE SEQUENCE {name} START {int(start)}")
    store.query("CHECKPOINT")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--merges", type=int, default=2_000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="footfall-identity-bench-"))
    store = DuckDBStore(str(workdir / "identity.duckdb"))
    store.migrate()
    started = time.perf_counter()
    build(store, args.events, args.tokens, args.persons)
    build_s = time.perf_counter() - started

    tokens_seen = int(store.query("SELECT count(DISTINCT token) FROM events")[0][0])
    merged_seen = int(
        store.query(
            "SELECT count(DISTINCT e.token) FROM events e JOIN identity_nodes n "
            "ON n.kind = 'token' AND n.value = e.token"
        )[0][0]
    )
    expected = (
        tokens_seen
        - merged_seen
        + int(
            store.query(
                "SELECT count(DISTINCT n.person_id) FROM events e JOIN identity_nodes n "
                "ON n.kind = 'token' AND n.value = e.token"
            )[0][0]
        )
    )

    baseline_s, baseline = timed(lambda: people_count(store, EVERYTHING, resolve_identities=False))
    resolved_s, resolved = timed(lambda: people_count(store, EVERYTHING))
    assert baseline == tokens_seen, (baseline, tokens_seen)
    assert resolved == expected, (resolved, expected)

    graph = IdentityGraph(store)
    pairs = [
        (f"tok{2 * args.persons + 2 * i:08d}", f"tok{2 * args.persons + 2 * i + 1:08d}")
        for i in range(args.merges)
    ]
    started = time.perf_counter()
    for a, b in pairs:
        graph.alias("default", a, b)
    merge_s = time.perf_counter() - started
    after_s, after = timed(lambda: people_count(store, EVERYTHING), repeat=3)
    assert after == resolved - sum(  # each merge of two seen tokens removes one person
        1
        for a, b in pairs
        if store.query(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE token IN (?, ?) GROUP BY token)",
            [a, b],
        )[0][0]
        == 2
    )
    store.close()

    report = {
        "events": args.events,
        "distinct_tokens": tokens_seen,
        "merged_persons": args.persons,
        "build_seconds": round(build_s, 1),
        "unique_people_resolved": resolved,
        "unique_people_resolved_s": round(resolved_s, 4),
        "distinct_tokens_baseline_s": round(baseline_s, 4),
        "ratio_resolved_to_baseline": round(resolved_s / baseline_s, 2),
        "merges": args.merges,
        "merges_per_s": round(args.merges / merge_s, 1),
        "unique_people_after_merges_s": round(after_s, 4),
    }
    print(
        f"events                     : {args.events:,} ({tokens_seen:,} tokens, "
        f"{args.persons:,} merged persons)"
    )
    print(f"unique people (resolved)   : {resolved:,} in {resolved_s * 1000:.0f} ms")
    print(f"distinct tokens (baseline) : {baseline:,} in {baseline_s * 1000:.0f} ms")
    print(f"ratio                      : {resolved_s / baseline_s:.1f}x the baseline")
    print(
        f"merges                     : {args.merges:,} alias calls, "
        f"{args.merges / merge_s:.0f} merges/s (each one committed transaction)"
    )
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "identity.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
