"""``footfall sites``: sites (tenants), their allowed origins and their API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    console,
    fail,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.sites import (
    SITE_ID_PATTERN,
    ensure_write_key,
    new_api_key,
    revoke_write_key,
    rotate_write_key,
    validate_origin_pattern,
    write_key,
)

app = typer.Typer(help="Sites (tenants): origins and API keys.", no_args_is_help=True)


@app.command("list")
def sites_list(config: ConfigOpt = None, database: DatabaseOpt = None) -> None:
    """List sites with their allowed origins and keys."""
    store = open_store_or_exit(settings_or_exit(config, database=database))
    table = Table("site", "name", "tenant", "allowed origins", "active keys", "write key")
    for site in store.list_sites():
        keys = [k.key_id for k in store.list_api_keys(site.id) if not k.revoked]
        public = write_key(store, site.id)
        table.add_row(
            site.id,
            site.name,
            site.scope,
            "\n".join(site.allowed_origins) or "(none)",
            ", ".join(keys),
            public.key if public else "(none)",
        )
    store.close()
    console.print(table)


def _origins(values: list[str]) -> list[str]:
    try:
        return [validate_origin_pattern(v) for v in values]
    except ValueError as exc:
        raise fail(str(exc), 2) from None


@app.command("add")
def sites_add(
    site_id: Annotated[str, typer.Argument(help="Short id: a-z, 0-9, '-' and '_'.")],
    origin: Annotated[
        list[str] | None,
        typer.Option(
            "--origin", "-o", help="Allowed origin, e.g. https://shop.com or https://*.shop.com"
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Share one identity graph with the other sites of this tenant."),
    ] = None,
    key: Annotated[bool, typer.Option(help="Create an API key for the site.")] = True,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Add a site (or update its name and origins) and print a new API key."""
    if SITE_ID_PATTERN.fullmatch(site_id) is None:
        raise fail("site id must be 1-64 of a-z, 0-9, '-', '_'", 2)
    origins = _origins(origin or [])
    store = open_store_or_exit(settings_or_exit(config, database=database))
    existing = store.get_site(site_id)
    site = store.upsert_site(
        site_id,
        name or (existing.name if existing else site_id),
        origins,
        tenant or (existing.tenant if existing else None),
    )
    console.print(
        f"site [bold]{site.id}[/bold] {'updated' if existing else 'created'}; "
        f"origins: {', '.join(site.allowed_origins) or '(none: browsers are refused)'}"
    )
    if key:
        secret = new_api_key(store, site.id, "created with the site")
        console.print("API key (shown once, store it now):")
        console.print(secret, soft_wrap=True, highlight=False)
    store.close()


@app.command("set-origins")
def sites_set_origins(
    site_id: str,
    origins: Annotated[list[str], typer.Argument(help="The complete list of allowed origins.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Replace a site's allowed origins."""
    cleaned = _origins(origins)
    store = open_store_or_exit(settings_or_exit(config, database=database))
    site = store.get_site(site_id)
    if site is None:
        raise fail(f"no site '{site_id}'")
    store.upsert_site(site.id, site.name, cleaned, site.tenant)
    store.close()
    console.print(f"site {site_id}: origins {', '.join(cleaned)}")


@app.command("new-key")
def sites_new_key(
    site_id: str,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Create another API key for a site; only its hash is stored."""
    store = open_store_or_exit(settings_or_exit(config, database=database))
    if store.get_site(site_id) is None:
        raise fail(f"no site '{site_id}'")
    secret = new_api_key(store, site_id, label)
    store.close()
    console.print(secret, soft_wrap=True, highlight=False)


@app.command("revoke-key")
def sites_revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key id: the part after 'ff_'.")],
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Revoke an API key at once."""
    store = open_store_or_exit(settings_or_exit(config, database=database))
    done = store.revoke_api_key(key_id)
    store.close()
    if not done:
        raise fail(f"no active key '{key_id}'")
    console.print(f"key {key_id} revoked")


@app.command("write-key")
def sites_write_key(
    site_id: str,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new write key; the old one stops working.")
    ] = False,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the write key (the site takes no more).")
    ] = False,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
) -> None:
    """Print the site's public write key (made on first use) for Segment-compatible clients.

    A write key may only send events to its site: it sits in web pages, so it is public and
    can be shown again. Reading and administering take a secret API key.
    """
    if rotate and revoke:
        raise fail("--rotate and --revoke exclude each other", 2)
    store = open_store_or_exit(settings_or_exit(config, database=database))
    try:
        if store.get_site(site_id) is None:
            raise fail(f"no site '{site_id}'")
        if revoke:
            if not revoke_write_key(store, site_id):
                raise fail(f"site '{site_id}' has no write key")
            console.print(f"write key of {site_id} revoked")
            return
        key = rotate_write_key(store, site_id) if rotate else ensure_write_key(store, site_id)
    finally:
        store.close()
    console.print(key.key, soft_wrap=True, highlight=False)
