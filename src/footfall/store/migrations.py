"""Versioned schema migrations shared by every backend.

Each migration is a list of statements written in the SQL both DuckDB and PostgreSQL speak;
``{json}`` stands for the backend's JSON column type; a statement given as a mapping has one
text per backend. A migration is applied once, in its own transaction, and recorded in
``schema_migrations``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str | dict[str, str], ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "sites, api keys, events, orders",
        (
            """CREATE TABLE sites (
                site_id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                allowed_origins {json} NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE api_keys (
                key_id VARCHAR PRIMARY KEY,
                site_id VARCHAR NOT NULL REFERENCES sites (site_id),
                key_hash VARCHAR NOT NULL,
                label VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                revoked_at TIMESTAMP
            )""",
            "CREATE SEQUENCE event_id_seq START 1",
            """CREATE TABLE events (
                event_id BIGINT NOT NULL DEFAULT nextval('event_id_seq'),
                site_id VARCHAR NOT NULL,
                ts TIMESTAMP NOT NULL,
                received_at TIMESTAMP NOT NULL,
                event VARCHAR NOT NULL,
                token VARCHAR NOT NULL,
                ephemeral BOOLEAN NOT NULL,
                ab_group VARCHAR,
                chatbot_id VARCHAR,
                popup_version VARCHAR,
                open_way VARCHAR,
                order_num VARCHAR,
                duplicate BOOLEAN NOT NULL,
                total_value_base DOUBLE PRECISION,
                items {json},
                url VARCHAR,
                user_agent VARCHAR,
                data {json} NOT NULL
            )""",
            """CREATE TABLE orders (
                site_id VARCHAR NOT NULL,
                order_num VARCHAR NOT NULL,
                first_seen TIMESTAMP NOT NULL,
                PRIMARY KEY (site_id, order_num)
            )""",
        ),
    ),
)


# Events resolve to persons at query time: a token maps to the identity node whose validity
# began last before the event (a token moved off a shared computer keeps its past person).
# Events of identifiers without a node are each their own person.
_EVENT_PERSONS_DUCKDB = """CREATE VIEW event_persons AS
SELECT e.*, coalesce(s.tenant, s.site_id) AS tenant, n.node_id, n.person_id,
       coalesce('p' || CAST(n.person_id AS VARCHAR), e.id_kind || ':' || e.token) AS person_key
FROM events e
JOIN sites s ON s.site_id = e.site_id
ASOF LEFT JOIN identity_nodes n
  ON n.tenant = coalesce(s.tenant, s.site_id) AND n.kind = e.id_kind AND n.value = e.token
 AND e.ts >= n.valid_from"""

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        2,
        "identity graph: tenants, identifier nodes, links, link log, properties, tombstones",
        (
            "ALTER TABLE sites ADD COLUMN tenant VARCHAR",
            "ALTER TABLE events ADD COLUMN id_kind VARCHAR DEFAULT 'token'",
            "CREATE SEQUENCE identity_node_seq START 1",
            "CREATE SEQUENCE person_seq START 1",
            "CREATE SEQUENCE link_seq START 1",
            "CREATE SEQUENCE link_log_seq START 1",
            """CREATE TABLE identity_nodes (
                node_id BIGINT PRIMARY KEY,
                tenant VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                value VARCHAR NOT NULL,
                valid_from TIMESTAMP NOT NULL,
                person_id BIGINT NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            "CREATE INDEX identity_nodes_value ON identity_nodes (value)",
            "CREATE INDEX identity_nodes_person ON identity_nodes (person_id)",
            """CREATE TABLE links (
                link_id BIGINT PRIMARY KEY,
                tenant VARCHAR NOT NULL,
                a_node BIGINT NOT NULL,
                b_node BIGINT NOT NULL,
                source VARCHAR NOT NULL,
                rule VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                removed_at TIMESTAMP
            )""",
            "CREATE INDEX links_a ON links (a_node)",
            "CREATE INDEX links_b ON links (b_node)",
            """CREATE TABLE link_log (
                seq BIGINT PRIMARY KEY,
                tenant VARCHAR NOT NULL,
                action VARCHAR NOT NULL,
                a_kind VARCHAR,
                a_value VARCHAR,
                b_kind VARCHAR,
                b_value VARCHAR,
                source VARCHAR NOT NULL,
                rule VARCHAR NOT NULL,
                actor VARCHAR NOT NULL,
                logged_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE identity_properties (
                node_id BIGINT NOT NULL,
                key VARCHAR NOT NULL,
                value {json},
                set_at TIMESTAMP NOT NULL,
                PRIMARY KEY (node_id, key)
            )""",
            """CREATE TABLE tombstones (
                tenant VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                value VARCHAR NOT NULL,
                erased_at TIMESTAMP NOT NULL,
                until_at TIMESTAMP NOT NULL,
                PRIMARY KEY (tenant, kind, value)
            )""",
            {"duckdb": _EVENT_PERSONS_DUCKDB},
        ),
    ),
)


# Events resolve to persons with a plain equi-join (hash join) on the identifier and a
# validity range: at 10M events it costs ~1.6x a bare COUNT(DISTINCT token), where the ASOF
# join of migration 2 cost ~7x. A token moved off a shared computer closes its old node
# (valid_to) and opens a new one, so its earlier events keep their earlier person.
_EVENT_PERSONS = """CREATE VIEW event_persons AS
SELECT e.*, coalesce(s.tenant, s.site_id) AS tenant, n.node_id, n.person_id,
       coalesce('p' || CAST(n.person_id AS VARCHAR), e.id_kind || ':' || e.token) AS person_key
FROM events e
JOIN sites s ON s.site_id = e.site_id
LEFT JOIN identity_nodes n
  ON n.value = e.token AND n.kind = e.id_kind AND n.tenant = coalesce(s.tenant, s.site_id)
 AND e.ts >= n.valid_from AND e.ts < n.valid_to"""

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        3,
        "identity nodes get a validity end; events join their person with a hash join",
        (
            "DROP VIEW IF EXISTS event_persons",
            "ALTER TABLE identity_nodes ADD COLUMN valid_to TIMESTAMP "
            "DEFAULT TIMESTAMP '9999-12-31 00:00:00'",
            "UPDATE identity_nodes SET valid_to = TIMESTAMP '9999-12-31 00:00:00' "
            "WHERE valid_to IS NULL",
            """UPDATE identity_nodes SET valid_to = later.next_from
            FROM (SELECT node_id, lead(valid_from) OVER (
                      PARTITION BY tenant, kind, value ORDER BY valid_from) AS next_from
                  FROM identity_nodes) AS later
            WHERE later.node_id = identity_nodes.node_id AND later.next_from IS NOT NULL""",
            _EVENT_PERSONS,
        ),
    ),
)

# The DuckDB store acknowledges events once they are synced to its ingest journal and loads
# them in batches; the position loaded so far is committed with each batch's rows, so after
# a crash replay resumes exactly there (nothing lost, nothing loaded twice). PostgreSQL
# commits directly and leaves the row at 0.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        4,
        "ingest journal: the journal position loaded into the database",
        (
            """CREATE TABLE ingest_journal (
                id INTEGER PRIMARY KEY,
                loaded_lsn BIGINT NOT NULL,
                loaded_at TIMESTAMP
            )""",
            "INSERT INTO ingest_journal VALUES (1, 0, NULL)",
        ),
    ),
)


# Who was there on which day: one row per (site, day, identifier) with the first and last
# event time and a few counts, so the person-per-period reports read a few times fewer
# rows than there are events. Derived from the events table only and rebuilt from it for
# every day that new events touch (rollup_state remembers the last event folded in).
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        5,
        "daily presence rollup for person-per-period reports",
        (
            """CREATE TABLE daily_presence (
                site_id VARCHAR NOT NULL,
                day DATE NOT NULL,
                id_kind VARCHAR NOT NULL,
                token VARCHAR NOT NULL,
                ephemeral BOOLEAN NOT NULL,
                first_ts TIMESTAMP NOT NULL,
                last_ts TIMESTAMP NOT NULL,
                events BIGINT NOT NULL,
                visits BIGINT NOT NULL,
                orders BIGINT NOT NULL,
                conversations BIGINT NOT NULL,
                messages BIGINT NOT NULL,
                revenue DOUBLE PRECISION,
                ab_group VARCHAR
            )""",
            """CREATE TABLE rollup_state (
                name VARCHAR PRIMARY KEY,
                last_event_id BIGINT NOT NULL,
                refreshed_at TIMESTAMP
            )""",
            "INSERT INTO rollup_state VALUES ('daily_presence', 0, NULL)",
        ),
    ),
)


# PostgreSQL finds a person's events (profile, journey, export, erase) by token: without an
# index that is a scan of every event (2M events: 250 ms per profile; 0.6 ms with it).
# DuckDB scans the token column fast enough and keeps no such index.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        6,
        "PostgreSQL: events indexed by token for person views",
        ({"postgresql": "CREATE INDEX events_token ON events (token)"},),
    ),
)


# Funnels on the embedded store read each step's events from a table of that event type
# alone, with the person already resolved (``pk``) and kept in person order: a 5-step funnel
# at 10M events reads its step rows directly instead of scanning every event and joining
# the identity graph (see footfall/funnel_steps.py). The types are spelled out: a
# migration must not change when the product learns a new event type (that is a new one).
FUNNEL_STEP_TYPES = (
    "visitor",
    "popup_displayed",
    "popup_opened",
    "bot_open",
    "convo_started",
    "message_sent",
    "message_like",
    "message_dislike",
    "click_through",
    "added_to_cart",
    "go_to_cart",
    "purchase",
    "error",
)


def _funnel_step_table(event: str) -> str:
    return f"""CREATE TABLE funnel_{event} (
                        site_id VARCHAR NOT NULL,
                        ts TIMESTAMP NOT NULL,
                        id_kind VARCHAR,
                        token_key BIGINT NOT NULL,
                        pk BIGINT NOT NULL,
                        ab_group VARCHAR,
                        chatbot_id VARCHAR,
                        popup_version VARCHAR,
                        open_way VARCHAR
                    )"""


_FUNNEL_BOOKKEEPING = (
    """CREATE TABLE funnel_nodes (
                    tenant VARCHAR NOT NULL,
                    kind VARCHAR NOT NULL,
                    value VARCHAR NOT NULL,
                    person_id BIGINT NOT NULL,
                    valid_from TIMESTAMP,
                    valid_to TIMESTAMP
                )""",
    """CREATE TABLE funnel_sites (
                    site_id VARCHAR NOT NULL,
                    tenant VARCHAR NOT NULL
                )""",
    """CREATE TABLE funnel_state (
                    id INTEGER PRIMARY KEY,
                    last_event_id BIGINT NOT NULL,
                    hash_check BIGINT,
                    nodes_check VARCHAR,
                    checked_at TIMESTAMP,
                    refreshed_at TIMESTAMP
                )""",
    "INSERT INTO funnel_state VALUES (1, 0, NULL, NULL, NULL, NULL)",
    """CREATE TABLE funnel_tables (
                    event VARCHAR PRIMARY KEY,
                    appended_rows BIGINT NOT NULL,
                    clustered_rows BIGINT NOT NULL
                )""",
    *(
        f"INSERT INTO funnel_tables VALUES ('{event}', 0, 0)"  # noqa: S608
        for event in FUNNEL_STEP_TYPES
    ),
)
"""The step tables' state: the nodes and sites of the last fold, its mark (an event id on
DuckDB; the same column holds the txid mark on PostgreSQL, migration 18), appended rows."""

MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        7,
        "DuckDB: funnel step tables, one per event type, persons resolved",
        (
            *({"duckdb": _funnel_step_table(event)} for event in FUNNEL_STEP_TYPES),
            *({"duckdb": statement} for statement in _FUNNEL_BOOKKEEPING),
        ),
    ),
)


# First run and administration while the server runs: the admin password set through the
# setup page (only its scrypt hash; a password in the config wins over it), and the one-time
# setup links (only their SHA-256, with expiry and use). On PostgreSQL, events indexed by
# site and time received: a site's last event, today's count and its install check's newest
# events are then index reads instead of scans of the table (DuckDB scans those two columns
# fast enough; its zone maps narrow a time range). Appended in time order, the index costs
# ingest little: 38.2k and 35.5k events/s without and with it through insert_events in groups
# of 50 (median of five interleaved runs on a shared 2-core machine, single runs +-40 %).
# (A BRIN index was tried first: free to keep, but useless once rows arrive out of time
# order, as a demo or bulk load writes them: 0.5 s per poll at 1M events.)
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        8,
        "admin password and setup links; PostgreSQL: events by site and time received",
        (
            """CREATE TABLE admin_password (
                id INTEGER PRIMARY KEY,
                password_hash VARCHAR NOT NULL,
                set_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE setup_tokens (
                token_hash VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                expires_at TIMESTAMP NOT NULL,
                used_at TIMESTAMP
            )""",
            {"postgresql": "CREATE INDEX events_site_received ON events (site_id, received_at)"},
        ),
    ),
)


# Version 9:
# - custom events: a name outside the 13 types is stored with event = 'custom' and the name
#   in custom_event, so no count of the 13 types can include it; the vendor /e stored such
#   names in event until now;
# - write keys: public, per site, only for sending events (the Segment-spec API);
# - message ids: a sender's messageId per site, kept for a bounded time, so a re-sent
#   message is stored once (the primary key is the lookup).
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        9,
        "custom events, write keys, message ids",
        (
            "ALTER TABLE events ADD COLUMN custom_event VARCHAR",
            # PostgreSQL fixed the view's columns when it was made: make it again.
            "DROP VIEW IF EXISTS event_persons",
            _EVENT_PERSONS,
            # The names are the constants above, never input.
            "UPDATE events SET custom_event = event, event = 'custom' WHERE event NOT IN ("  # noqa: S608
            + ", ".join(f"'{event}'" for event in FUNNEL_STEP_TYPES)
            + ")",
            """CREATE TABLE write_keys (
                write_key VARCHAR PRIMARY KEY,
                site_id VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                revoked_at TIMESTAMP
            )""",
            "CREATE INDEX write_keys_site ON write_keys (site_id)",
            """CREATE TABLE message_ids (
                site_id VARCHAR NOT NULL,
                message_id VARCHAR NOT NULL,
                received_at TIMESTAMP NOT NULL,
                PRIMARY KEY (site_id, message_id)
            )""",
            {"postgresql": "CREATE INDEX message_ids_received ON message_ids (received_at)"},
        ),
    ),
    Migration(
        10,
        "dashboard sessions ended by logout",
        (
            """CREATE TABLE revoked_sessions (
                session_digest VARCHAR PRIMARY KEY,
                until_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
)


# Version 11: what a ticket costs a site's support team (and in which currency), so the
# deflection report can say what the tickets the form's answers avoided saved.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        11,
        "sites: cost per ticket and its currency",
        (
            "ALTER TABLE sites ADD COLUMN cost_per_ticket DOUBLE PRECISION",
            "ALTER TABLE sites ADD COLUMN ticket_currency VARCHAR",
        ),
    ),
)


# Version 12: the deflection report on the embedded store reads the support form's events
# from a narrow table of their own, with each row's previous row of the same browser and
# form and its session number (at the default 30-minute gap) worked out when folded in
# (see footfall/analytics/form_events.py). PostgreSQL reads the events.
_FORM_EVENTS = (
    """CREATE TABLE form_events (
                    event_id BIGINT NOT NULL,
                    k BIGINT NOT NULL,
                    site_id VARCHAR NOT NULL,
                    id_kind VARCHAR,
                    token VARCHAR NOT NULL,
                    form VARCHAR NOT NULL,
                    ts TIMESTAMP NOT NULL,
                    event VARCHAR NOT NULL,
                    ephemeral BOOLEAN NOT NULL,
                    ab_group VARCHAR,
                    chatbot_id VARCHAR,
                    popup_version VARCHAR,
                    raw_question VARCHAR,
                    prev_ts TIMESTAMP,
                    prev_ticket BOOLEAN NOT NULL,
                    session_no BIGINT NOT NULL
                )""",
    """CREATE TABLE form_events_state (
                    id INTEGER PRIMARY KEY,
                    last_event_id BIGINT NOT NULL,
                    hash_check BIGINT,
                    checked_at TIMESTAMP,
                    refreshed_at TIMESTAMP
                )""",
    "INSERT INTO form_events_state VALUES (1, 0, NULL, NULL, NULL)",
)
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        12,
        "DuckDB: the support form's events, with their sessions, for the deflection report",
        tuple({"duckdb": statement} for statement in _FORM_EVENTS),
    ),
)


# Version 13 (PostgreSQL): each event records the transaction that wrote it (``txid``), so
# derived tables are folded by a watermark that is safe with several writers: event ids are
# taken before commit and commit out of order, but every transaction below the snapshot's
# xmin has ended, so "txid from the last mark up to xmin" misses no committed event
# (footfall.analytics.watermark). ``rollup_state.last_txid`` is the daily rollup's mark.
# Existing rows all get the migration's own txid: the first fold after it takes them all.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        13,
        "PostgreSQL: events record their writing transaction, for folds by watermark",
        (
            {
                "postgresql": "ALTER TABLE events "
                "ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()"
            },
            {"postgresql": "CREATE INDEX events_txid ON events (txid)"},
            {
                "postgresql": "ALTER TABLE rollup_state "
                "ADD COLUMN last_txid BIGINT NOT NULL DEFAULT 0"
            },
        ),
    ),
)


# Version 14: the person reports read ``person_days``, the daily rollup
# with each row's person resolved by a fold (footfall/analytics/person_days.py), instead of
# joining every rollup row of the range to the identity graph. The rollup also records when
# each identifier's day first had an A/B group, so a person's group (their earliest) is
# exact from the rollup; the rollup is rebuilt once to fill it in.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        14,
        "person days: the daily rollup with persons resolved; first A/B time",
        (
            "ALTER TABLE daily_presence ADD COLUMN ab_ts TIMESTAMP",
            {
                "duckdb": "UPDATE rollup_state SET last_event_id = 0 WHERE name = 'daily_presence'",
                "postgresql": "UPDATE rollup_state SET last_txid = 0 WHERE name = 'daily_presence'",
            },
            """CREATE TABLE person_days (
                    site_id VARCHAR NOT NULL,
                    day DATE NOT NULL,
                    pk BIGINT NOT NULL,
                    person_id BIGINT,
                    token VARCHAR NOT NULL,
                    ephemeral BOOLEAN NOT NULL,
                    first_ts TIMESTAMP NOT NULL,
                    events BIGINT NOT NULL,
                    visits BIGINT NOT NULL,
                    orders BIGINT NOT NULL,
                    conversations BIGINT NOT NULL,
                    messages BIGINT NOT NULL,
                    revenue DOUBLE PRECISION,
                    ab_group VARCHAR,
                    ab_ts TIMESTAMP,
                    first_of_day BOOLEAN NOT NULL
                )""",
            """CREATE TABLE person_days_nodes (
                    tenant VARCHAR NOT NULL,
                    kind VARCHAR NOT NULL,
                    value VARCHAR NOT NULL,
                    person_id BIGINT NOT NULL,
                    valid_from TIMESTAMP NOT NULL,
                    valid_to TIMESTAMP
                )""",
            "CREATE TABLE person_days_sites (site_id VARCHAR NOT NULL, tenant VARCHAR NOT NULL)",
            """CREATE TABLE person_days_state (
                    id INTEGER PRIMARY KEY,
                    built BOOLEAN NOT NULL,
                    hash_check BIGINT,
                    nodes_check VARCHAR,
                    checked_at TIMESTAMP,
                    refreshed_at TIMESTAMP
                )""",
            "INSERT INTO person_days_state VALUES (1, FALSE, NULL, NULL, NULL, NULL)",
        ),
    ),
)


# Version 15: each person day knows the person's previous active day and first day (over
# every site, and on its own site), so distinct persons over any range or period are a
# filtered count of rows (the row whose previous day lies before the period) instead of a
# distinct count; person days are rebuilt once to fill them in.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        15,
        "person days: previous and first active day, over every site and per site",
        (
            "ALTER TABLE person_days ADD COLUMN prev_day DATE",
            "ALTER TABLE person_days ADD COLUMN first_day DATE",
            "ALTER TABLE person_days ADD COLUMN site_prev_day DATE",
            "ALTER TABLE person_days ADD COLUMN site_first_day DATE",
            "UPDATE person_days_state SET built = FALSE WHERE id = 1",
        ),
    ),
)


# Version 16: two more rollups per identifier and day, folded with the daily presence rollup
# (footfall/analytics/identifier_days.py): the items of purchases (revenue's top items) and
# the normalised message texts (power users' most asked questions), so neither report reads
# every event's JSON. The rollups are built once from the events.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        16,
        "daily items and questions per identifier",
        (
            """CREATE TABLE daily_items (
                    site_id VARCHAR NOT NULL,
                    day DATE NOT NULL,
                    id_kind VARCHAR NOT NULL,
                    token VARCHAR NOT NULL,
                    ephemeral BOOLEAN NOT NULL,
                    item_id VARCHAR,
                    quantity BIGINT NOT NULL,
                    orders BIGINT NOT NULL,
                    revenue_eur DECIMAL(38, 6)
                )""",
            """CREATE TABLE daily_questions (
                    site_id VARCHAR NOT NULL,
                    day DATE NOT NULL,
                    id_kind VARCHAR NOT NULL,
                    token VARCHAR NOT NULL,
                    ephemeral BOOLEAN NOT NULL,
                    question VARCHAR NOT NULL,
                    n BIGINT NOT NULL
                )""",
            {
                "duckdb": "UPDATE rollup_state SET last_event_id = 0 WHERE name = 'daily_presence'",
                "postgresql": "UPDATE rollup_state SET last_txid = 0 WHERE name = 'daily_presence'",
            },
            "UPDATE person_days_state SET built = FALSE WHERE id = 1",
        ),
    ),
)


# Version 17 (PostgreSQL): indexes for the fold's look-ups of a few identifiers or persons:
# the rollups by token and day (rebuilding the identifier-days new events touch, erasing an
# identifier), person days by person key (a dirty person's rows, their marks). Without them
# each fold scanned and sorted the whole rollups (6 s after 10,000 new events at 10M).
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        17,
        "PostgreSQL indexes for folds: rollups by token and day, person days by key",
        (
            {"postgresql": "CREATE INDEX daily_presence_token ON daily_presence (token, day)"},
            {"postgresql": "CREATE INDEX daily_items_token ON daily_items (token, day)"},
            {"postgresql": "CREATE INDEX daily_questions_token ON daily_questions (token, day)"},
            {"postgresql": "CREATE INDEX person_days_pk ON person_days (pk, day)"},
        ),
    ),
)


# Version 18 (PostgreSQL): the funnel step tables and the form events table there too, folded
# by the txid watermark (footfall.analytics.watermark) instead of event ids, so funnels and
# the deflection report stop scanning every event and joining the identity graph per row
# (10 s and 15 s at 10M events). Indexed by the keys a fold rewrites a few of: the step rows
# by identifier key (identity changes, erase), form rows by form key (late events renumber
# their key); the step rows also by person and time, the order a funnel merges them in
# (PostgreSQL's heap keeps no order of its own). ``last_event_id`` holds the txid mark.
MIGRATIONS = (
    *MIGRATIONS,
    Migration(
        18,
        "PostgreSQL: funnel step tables and form events, folded by watermark",
        (
            *({"postgresql": _funnel_step_table(event)} for event in FUNNEL_STEP_TYPES),
            *(
                {"postgresql": f"CREATE INDEX funnel_{event}_token ON funnel_{event} (token_key)"}
                for event in FUNNEL_STEP_TYPES
            ),
            *(
                {"postgresql": f"CREATE INDEX funnel_{event}_person ON funnel_{event} (pk, ts)"}
                for event in FUNNEL_STEP_TYPES
            ),
            *({"postgresql": statement} for statement in _FUNNEL_BOOKKEEPING),
            *({"postgresql": statement} for statement in _FORM_EVENTS),
            {"postgresql": "CREATE INDEX form_events_key ON form_events (k)"},
        ),
    ),
)


def render(statement: str | dict[str, str], json_type: str, backend: str) -> str | None:
    """The statement's text for ``backend``, or None where it has nothing to do there."""
    if isinstance(statement, dict):
        text = statement.get(backend)
        if text is None:
            return None
        statement = text
    return statement.replace("{json}", json_type)
