"""Versioned schema migrations shared by every backend.

Each migration is a list of statements written in the SQL both DuckDB and PostgreSQL speak;
``{json}`` stands for the backend's JSON column type. A migration is applied once, in its
own transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


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


def render(statement: str, json_type: str) -> str:
    return statement.replace("{json}", json_type)
