"""The ``footfall`` command: one Typer app with a module per command group."""

from __future__ import annotations

import sys

import typer

from footfall.cli import data, imports, persons, reports, server, sites

app = typer.Typer(
    help="Footfall: tracking, identity resolution and analytics.", no_args_is_help=True
)
app.command()(server.serve)
app.command()(server.migrate)
app.command("hash-password")(server.hash_password_command)
app.command()(server.version)
app.add_typer(sites.app, name="sites")
app.add_typer(persons.app, name="person")
app.add_typer(data.retention_app, name="retention")
app.command("alias")(persons.alias_command)
app.command("report")(reports.report_command)
app.command("demo")(data.demo_command)
app.command("import")(imports.import_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
