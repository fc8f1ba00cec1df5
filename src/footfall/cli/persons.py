"""``footfall person ...`` and ``footfall alias``: a person's data and links, through the
database file or, with ``--server``, a running server's API.

Every command here takes the same five options (``--site``, ``--server``, ``--key``,
``--config``, ``--database``); ``person_command`` adds them and hands the command a
``Persons``: the local identity graph or the remote API, the one place that decides which.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol
from urllib.parse import urlencode

import typer
from rich.table import Table

from footfall.cli.common import (
    TARGET_OPTIONS,
    Remote,
    SiteOpt,
    console,
    err,
    fail,
    open_store_or_exit,
    quote_name,
    settings_or_exit,
    target_command,
)
from footfall.cli.terminal import shown
from footfall.errors import ApiError
from footfall.words import counted

if TYPE_CHECKING:
    from footfall.identity import IdentityGraph

app = typer.Typer(help="Persons: show, explain, split, export, erase.", no_args_is_help=True)


class Persons(Protocol):
    """What the person commands do, wherever the data is."""

    def show(self, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The profile and the journey of the person holding ``name``."""
        ...

    def explain(self, a: str, b: str) -> list[dict[str, Any]] | None:
        """The chain of links joining ``a`` and ``b``; None when they are not one person."""
        ...

    def split(self, a: str, b: str) -> tuple[int, int]: ...

    def export(self, name: str) -> dict[str, Any]: ...

    def erase(self, name: str) -> dict[str, int]: ...

    def alias(self, a: str, b: str) -> int: ...


class LocalPersons:
    """The identity graph in the database file, opened at first use (after any prompt)."""

    def __init__(self, config: str | None, database: str | None, site: str | None) -> None:
        self._options = (config, database, site)
        self._opened: tuple[IdentityGraph, str] | None = None

    def _graph(self, existing: bool = True) -> tuple[IdentityGraph, str]:
        """``existing``: refuse a database file that does not exist (every command but
        ``alias`` needs persons already stored)."""
        if self._opened is None:
            from footfall.identity import IdentityGraph

            config, database, site = self._options
            settings = settings_or_exit(config, database=database)
            store = open_store_or_exit(settings, existing=existing)
            chosen = store.get_site(site or settings.default_site)
            if chosen is None:
                raise fail(f"no site '{site}'")
            graph = IdentityGraph(
                store, settings.identity_max_per_kind, settings.erase_tombstone_days
            )
            self._opened = graph, chosen.scope
        return self._opened

    def _person(self, name: str) -> tuple[IdentityGraph, str, int]:
        graph, tenant = self._graph()
        node = graph.locate(tenant, name)
        if node is None:
            raise fail(f"no person with identifier '{shown(name)}'")
        return graph, tenant, int(node.person_id)

    def show(self, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        graph, tenant, person = self._person(name)
        return graph.profile(tenant, person), graph.person_events(tenant, person)

    def explain(self, a: str, b: str) -> list[dict[str, Any]] | None:
        graph, tenant = self._graph()
        steps = graph.explain(tenant, a, b)
        return None if steps is None else [step.to_dict() for step in steps]

    def split(self, a: str, b: str) -> tuple[int, int]:
        graph, tenant = self._graph()
        try:
            return graph.split(tenant, a, b, "cli")
        except ApiError as exc:
            raise fail(shown(exc.message)) from None

    def export(self, name: str) -> dict[str, Any]:
        graph, tenant, person = self._person(name)
        return graph.export(tenant, person)

    def erase(self, name: str) -> dict[str, int]:
        graph, tenant, person = self._person(name)
        return graph.erase(tenant, person, "cli")

    def alias(self, a: str, b: str) -> int:
        graph, tenant = self._graph(existing=False)
        return graph.alias(tenant, a, b, "cli")


class RemotePersons:
    """The same operations through a running server's person API (its key's tenant)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def show(self, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        profile = self.remote.call("GET", f"/api/persons/{quote_name(name)}")
        events = self.remote.call("GET", f"/api/persons/{quote_name(name)}/journey")["events"]
        return profile, events

    def explain(self, a: str, b: str) -> list[dict[str, Any]] | None:
        answer = self.remote.call("GET", "/api/identity/explain?" + urlencode({"a": a, "b": b}))
        return answer["chain"] if answer["same_person"] else None

    def split(self, a: str, b: str) -> tuple[int, int]:
        answer = self.remote.call("POST", "/api/identity/split", {"a": a, "b": b})
        return answer["a_person"], answer["b_person"]

    def export(self, name: str) -> dict[str, Any]:
        document: dict[str, Any] = self.remote.call(
            "GET", f"/api/persons/{quote_name(name)}/export"
        )
        return document

    def erase(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = self.remote.call("DELETE", f"/api/persons/{quote_name(name)}")[
            "erased"
        ]
        return counts

    def alias(self, a: str, b: str) -> int:
        return int(self.remote.call("POST", "/api/alias", {"a": a, "b": b})["person_id"])


def _persons(
    site: str | None,
    server: str | None,
    key: str | None,
    config: str | None,
    database: str | None,
) -> Persons:
    if server:
        return RemotePersons(Remote(server, key))
    return LocalPersons(config, database, site)


person_command = target_command((("site", SiteOpt), *TARGET_OPTIONS), _persons, "persons")
"""Gives a command ``(persons, ...)`` the five target options as its last parameters and
calls it with the ``Persons`` they name: the server's API with ``--server``, else the file."""


def _print_profile(profile: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Every stored value through ``shown``: the senders', not the operator's, text."""
    console.print(
        f"[bold]person {profile['person_id']}[/bold]  events: {profile['events']}  "
        f"first seen: {shown(profile['first_seen'] or '-')}  "
        f"last seen: {shown(profile['last_seen'] or '-')}"
    )
    ids = Table(
        "identifier", "events", "first seen", "last seen", "properties", title="identifiers"
    )
    for item in profile["identifiers"]:
        ids.add_row(
            shown(f"{item['kind']}:{item['value']}"),
            shown(item["events"]),
            shown(item["first_seen"] or "-"),
            shown(item["last_seen"] or "-"),
            "yes" if item["has_properties"] else "",
        )
    console.print(ids)
    customers = ", ".join(shown(c) for c in profile["customer_ids"])
    console.print("customer ids: " + (customers or "(none yet)"))
    if profile["metadata"]:
        meta = Table("property", "value", title="metadata")
        for key, value in sorted(profile["metadata"].items()):
            meta.add_row(shown(key), shown(value))
        console.print(meta)
    if events:
        journey = Table("time (UTC)", "site", "event", "identifier", "details", title="journey")
        for event in events[-30:]:
            details = event["data"].get("text") or event.get("chatbot_id") or ""
            if event.get("total_value_base") is not None:
                details = f"{event['total_value_base']:.2f} EUR {event.get('order_num') or ''}"
            journey.add_row(
                shown(event["ts"][:19].replace("T", " ")),
                shown(event["site_id"]),
                shown(event["event"]),
                shown(f"{event['identifier_kind']}:{event['identifier']}"),
                shown(str(details)[:60]),
            )
        console.print(journey)


@app.command("show")
@person_command
def person_show(
    persons: Persons,
    name: Annotated[str, typer.Argument(help="Any identifier: token, email, client id, alias.")],
) -> None:
    """A person's identifiers, metadata and journey."""
    _print_profile(*persons.show(name))


@app.command("explain")
@person_command
def person_explain(persons: Persons, a: str, b: str) -> None:
    """The chain of links that makes A and B one person."""
    chain = persons.explain(a, b)
    if chain is None:
        console.print(f"{shown(a)} and {shown(b)} are [bold]not[/bold] the same person")
        raise typer.Exit(1)
    table = Table("#", "from", "to", "source", "rule", "by", "when (UTC)")
    for i, step in enumerate(chain, 1):
        table.add_row(
            str(i),
            *(shown(step[name]) for name in ("a", "b", "source", "rule", "actor")),
            shown(step["at"][:19].replace("T", " ")),
        )
    console.print(f"{shown(a)} and {shown(b)} are one person through {len(chain)} link(s):")
    console.print(table)


@app.command("split")
@person_command
def person_split(persons: Persons, a: str, b: str) -> None:
    """Remove the direct link between A and B and recompute the persons."""
    first, second = persons.split(a, b)
    a, b = shown(a), shown(b)
    if first == second:
        console.print(f"link removed; {a} and {b} are still one person (another chain joins them)")
    else:
        console.print(f"link removed; {a} is person {first}, {b} is person {second}")


@app.command("export")
@person_command
def person_export(
    persons: Persons,
    name: str,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File (default: stdout).")
    ] = None,
) -> None:
    """Everything stored about a person, as JSON."""
    document = persons.export(name)
    text = json.dumps(document, indent=2, default=str)
    if output:
        Path(output).write_text(text + "\n")
        err.print(f"wrote {output} ({counted(len(document['event_list']), 'event')})")
    else:
        sys.stdout.write(text + "\n")


@app.command("erase")
@person_command
def person_erase(
    persons: Persons,
    name: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a person's identifiers, links, metadata and events (with a tombstone)."""
    if not yes and not typer.confirm(f"Erase the person holding '{name}' and all their data?"):
        raise typer.Exit(1)
    counts = persons.erase(name)
    console.print(
        f"erased {counted(counts['identifiers'], 'identifier')} and "
        f"{counted(counts['events'], 'event')}"
    )


@person_command
def alias_command(persons: Persons, a: str, b: str) -> None:
    """Declare that A and B are the same person (symmetric, idempotent)."""
    person = persons.alias(a, b)
    console.print(f"{shown(a)} and {shown(b)} are person {person}")
