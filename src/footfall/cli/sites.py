"""``footfall sites``: sites (tenants), their allowed origins and their API keys, through the
database file or, with ``--server``, a running server's admin API (so nothing needs the
server stopped).

Every command takes ``--server``, ``--key``, ``--config`` and ``--database``; ``sites_command``
adds them and hands the command a ``Sites``: the file (as administrator) or the admin API
(as the key allows: the ``admin_token`` every site, a site key its own tenant's), the one
place that decides which. Both apply the rules of ``footfall.sites``.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol

import typer
from rich.table import Table

from footfall import sites
from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    Remote,
    ServerOpt,
    console,
    fail,
    open_store_or_exit,
    quote_name,
    settings_or_exit,
    target_command,
)
from footfall.cli.terminal import shown
from footfall.config import Settings
from footfall.errors import ApiError
from footfall.store import Store
from footfall.store.base import Site

app = typer.Typer(help="Sites (tenants): origins and API keys.", no_args_is_help=True)

AdminKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="FOOTFALL_API_KEY",
        help="For --server: the server's admin_token (every site) or a site API key (the "
        "sites of its tenant).",
    ),
]


class Sites(Protocol):
    """What the site commands do, wherever the sites are; documents as the admin API's."""

    def listing(self) -> list[dict[str, Any]]: ...

    def get(self, site_id: str) -> dict[str, Any] | None: ...

    def create(
        self, site_id: str, name: str | None, origins: list[str], tenant: str | None
    ) -> dict[str, Any]: ...

    def update(self, site_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """``changes``: any of name, allowed_origins, tenant."""
        ...

    def keys(self, site_id: str) -> list[dict[str, Any]]: ...

    def new_key(self, site_id: str, label: str) -> str: ...

    def revoke_key(self, key_id: str) -> dict[str, Any]: ...

    def write_key(self, site_id: str, rotate: bool) -> dict[str, Any]: ...

    def revoke_write_key(self, site_id: str) -> None: ...

    def ticket_cost(self, site_id: str, amount: str | None, currency: str) -> dict[str, Any]: ...


class LocalSites:
    """The database file, opened at first use, with the administrator's authority."""

    def __init__(self, config: str | None, database: str | None) -> None:
        self._options = (config, database)
        self._opened: tuple[Store, Settings] | None = None
        self.authority = sites.Authority.admin("cli")

    def _store(self, existing: bool = False) -> tuple[Store, Settings]:
        """``existing``: the command only reads, so a missing database file is refused."""
        if self._opened is None:
            settings = settings_or_exit(self._options[0], database=self._options[1])
            self._opened = open_store_or_exit(settings, existing=existing), settings
        return self._opened

    def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        store, _ = self._store()
        try:
            return fn(store, self.authority, *args, **kwargs)
        except ApiError as exc:
            raise fail(exc.message, 2 if exc.status == 422 else 1) from None

    def close(self) -> None:
        if self._opened is not None:
            self._opened[0].close()
            self._opened = None

    def _document(self, site: Site) -> dict[str, Any]:
        store, settings = self._store()
        activity = sites.site_activity(store).get(site.id)
        return sites.site_document(
            site, settings, activity, sites.active_write_keys(store).get(site.id)
        )

    def listing(self) -> list[dict[str, Any]]:
        store, settings = self._store(existing=True)
        activity = sites.site_activity(store)
        writers = sites.active_write_keys(store)
        return [
            sites.site_document(s, settings, activity.get(s.id), writers.get(s.id))
            for s in self.authority.visible(store.list_sites())
        ]

    def get(self, site_id: str) -> dict[str, Any] | None:
        site = self._store()[0].get_site(site_id)
        return None if site is None else self._document(site)

    def create(
        self, site_id: str, name: str | None, origins: list[str], tenant: str | None
    ) -> dict[str, Any]:
        return self._document(self._run(sites.create_site, site_id, name, origins, tenant))

    def update(self, site_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        named = {"origins" if k == "allowed_origins" else k: v for k, v in changes.items()}
        return self._document(self._run(sites.update_site, site_id, **named))

    def keys(self, site_id: str) -> list[dict[str, Any]]:
        return [sites.key_document(k) for k in self._run(sites.site_keys, site_id)]

    def new_key(self, site_id: str, label: str) -> str:
        _, secret = self._run(sites.create_key, site_id, label)
        return str(secret)

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return sites.key_document(self._run(sites.revoke_key, key_id))

    def write_key(self, site_id: str, rotate: bool) -> dict[str, Any]:
        return sites.write_key_document(self._run(sites.site_write_key, site_id, rotate=rotate))

    def revoke_write_key(self, site_id: str) -> None:
        self._run(sites.drop_write_key, site_id)

    def ticket_cost(self, site_id: str, amount: str | None, currency: str) -> dict[str, Any]:
        cost = self._run(sites.manage_ticket_cost, site_id, amount, currency)
        return sites.ticket_cost_document(site_id, cost)


class RemoteSites:
    """The same through a running server's admin API."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def _site_path(self, site_id: str) -> str:
        return f"/api/admin/sites/{quote_name(site_id)}"

    def listing(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.remote.call("GET", "/api/admin/sites")["sites"]
        return listed

    def get(self, site_id: str) -> dict[str, Any] | None:
        found = self.remote.call("GET", self._site_path(site_id), missing_ok=True)
        return None if found is None else dict(found["site"])

    def create(
        self, site_id: str, name: str | None, origins: list[str], tenant: str | None
    ) -> dict[str, Any]:
        body = {"id": site_id, "name": name, "allowed_origins": origins, "tenant": tenant}
        return dict(self.remote.call("POST", "/api/admin/sites", body)["site"])

    def update(self, site_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(self.remote.call("PATCH", self._site_path(site_id), changes)["site"])

    def keys(self, site_id: str) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.remote.call("GET", self._site_path(site_id) + "/keys")[
            "keys"
        ]
        return listed

    def new_key(self, site_id: str, label: str) -> str:
        answer = self.remote.call("POST", self._site_path(site_id) + "/keys", {"label": label})
        return str(answer["key"])

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        answer = self.remote.call("DELETE", f"/api/admin/keys/{quote_name(key_id)}")
        return dict(answer["record"])

    def write_key(self, site_id: str, rotate: bool) -> dict[str, Any]:
        path = self._site_path(site_id) + "/write-key"
        return dict(self.remote.call("POST" if rotate else "GET", path))

    def revoke_write_key(self, site_id: str) -> None:
        self.remote.call("DELETE", self._site_path(site_id) + "/write-key")

    def ticket_cost(self, site_id: str, amount: str | None, currency: str) -> dict[str, Any]:
        body = {"cost_per_ticket": amount, "ticket_currency": currency}
        return dict(self.remote.call("PUT", self._site_path(site_id) + "/ticket-cost", body))


def _sites(server: str | None, key: str | None, config: str | None, database: str | None) -> Sites:
    return RemoteSites(Remote(server, key)) if server else LocalSites(config, database)


sites_command = target_command(
    (("server", ServerOpt), ("key", AdminKeyOpt), ("config", ConfigOpt), ("database", DatabaseOpt)),
    _sites,
    "target",
)


def _warn(document: dict[str, Any]) -> None:
    for warning in document.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
    if document.get("configured_in_file"):
        console.print(
            "[yellow]note:[/yellow] this site is declared in the config file, which sets it "
            "again at every server start",
            soft_wrap=True,
        )


@app.command("list")
@sites_command
def sites_list(target: Sites) -> None:
    """List sites with their allowed origins, keys and last event."""
    table = Table(
        "site",
        "name",
        "tenant",
        "allowed origins",
        "active keys",
        "write key",
        "last event (UTC)",
    )
    for site in target.listing():
        keys = [k["key_id"] for k in target.keys(site["id"]) if not k["revoked"]]
        last = site["last_event_at"]
        table.add_row(
            shown(site["id"]),
            shown(site["name"]),
            shown(site["tenant"]),
            "\n".join(shown(o) for o in site["allowed_origins"]) or "(none)",
            ", ".join(shown(k) for k in keys),
            site.get("write_key") or "(revoked)",
            last[:19].replace("T", " ") if last else "never",
        )
    console.print(table)


OriginOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--origin", "-o", help="Allowed origin, e.g. https://shop.com or https://*.shop.com"
    ),
]


@app.command("add")
@sites_command
def sites_add(
    target: Sites,
    site_id: Annotated[str, typer.Argument(help="Short id: a-z, 0-9, '-' and '_'.")],
    origin: OriginOpt = None,
    name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Share one identity graph with the other sites of this tenant."),
    ] = None,
    create_key: Annotated[
        bool, typer.Option("--create-key/--no-key", help="Create an API key for the site.")
    ] = True,
) -> None:
    """Add a site (or change an existing one's name, origins and tenant) and print a new
    API key. Origins and tenant are left as they are unless given."""
    if sites.SITE_ID_PATTERN.fullmatch(site_id) is None:
        raise fail("site id must be 1-64 of a-z, 0-9, '-', '_'", 2)
    existing = target.get(site_id)
    if existing is None:
        site = target.create(site_id, name, origin or [], tenant)
    else:
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if origin:
            changes["allowed_origins"] = origin
        if tenant is not None:
            changes["tenant"] = tenant
        site = target.update(site_id, changes) if changes else existing
    origins = ", ".join(site["allowed_origins"]) or "(none: browsers are refused)"
    console.print(
        f"site [bold]{site['id']}[/bold] {'updated' if existing else 'created'}; "
        f"origins: {origins}",
        soft_wrap=True,
    )
    _warn(site)
    if create_key:
        secret = target.new_key(site_id, "created with the site")
        console.print("API key (shown once, store it now):")
        console.print(secret, soft_wrap=True, highlight=False)


@app.command("set-origins")
@sites_command
def sites_set_origins(
    target: Sites,
    site_id: str,
    origins: Annotated[list[str], typer.Argument(help="The complete list of allowed origins.")],
) -> None:
    """Replace a site's allowed origins."""
    site = target.update(site_id, {"allowed_origins": origins})
    console.print(f"site {site_id}: origins {', '.join(site['allowed_origins'])}", soft_wrap=True)
    _warn(site)


@app.command("new-key")
@sites_command
def sites_new_key(
    target: Sites,
    site_id: str,
    label: Annotated[str, typer.Option(help="What the key is for.")] = "",
) -> None:
    """Create another API key for a site; only its hash is stored."""
    console.print(target.new_key(site_id, label), soft_wrap=True, highlight=False)


@app.command("revoke-key")
@sites_command
def sites_revoke_key(
    target: Sites,
    key_id: Annotated[str, typer.Argument(help="The key id: the part after 'ff_'.")],
) -> None:
    """Revoke an API key at once (a server in another process stops taking it within 30 s)."""
    record = target.revoke_key(key_id)
    console.print(f"key {record['key_id']} of site {record['site_id']} revoked")


@app.command("write-key")
@sites_command
def sites_write_key(
    target: Sites,
    site_id: str,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new write key; the old one stops working.")
    ] = False,
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke the write key (the site takes no more).")
    ] = False,
) -> None:
    """Print the site's public write key (made if it has none) for Segment-compatible
    clients.

    A write key may only send events to its site: it sits in web pages, so it is public and
    can be shown again. Reading and administering take a secret API key.
    """
    if rotate and revoke:
        raise fail("--rotate and --revoke exclude each other", 2)
    if revoke:
        target.revoke_write_key(site_id)
        console.print(f"write key of {site_id} revoked")
        return
    console.print(target.write_key(site_id, rotate)["write_key"], soft_wrap=True, highlight=False)


@app.command("ticket-cost")
@sites_command
def sites_ticket_cost(
    target: Sites,
    site_id: str,
    amount: Annotated[
        str, typer.Argument(help="What one support ticket costs, e.g. 12.50; 'none' clears it.")
    ],
    currency: Annotated[str, typer.Option(help="Three-letter currency code.")] = "EUR",
) -> None:
    """Set a site's cost per support ticket: the deflection report's savings are its
    deflected tickets times this."""
    cleared = amount.strip().lower() in ("none", "")
    document = target.ticket_cost(site_id, None if cleared else amount, currency)
    if document["cost_per_ticket"] is None:
        console.print(f"site {shown(site_id)}: no cost per ticket")
    else:
        console.print(
            f"site {shown(site_id)}: a ticket costs {document['cost_per_ticket']:,.2f} "
            f"{shown(document['ticket_currency'])}"
        )
