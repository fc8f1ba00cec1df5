"""``footfall import FILE``: newline-delimited JSON (Segment's format or the tracking
format) into the store, or with ``--server`` into a running server's batch APIs.

Into the store, worker processes read and check the lines while this process writes
(``footfall.ingest.import_workers``); here is the command, its progress bar and summary.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from footfall.cli.batches import batches, send_batch
from footfall.cli.common import (
    ConfigOpt,
    DatabaseOpt,
    KeyOpt,
    ServerOpt,
    console,
    err,
    fail,
    open_store_or_exit,
    settings_or_exit,
)
from footfall.cli.terminal import shown
from footfall.identity import IdentityGraph
from footfall.ingest.import_workers import (
    ImportJob,
    Part,
    WorkerPool,
    default_workers,
    import_to_store,
    import_workers,
)
from footfall.ingest.imports import FORMATS, Chunk, LineReader, Reject, line_chunks, open_lines
from footfall.store.base import Store
from footfall.words import counted

CHUNK_LINES = 20_000
SHOWN_REJECTS = 50


def import_command(
    file: Annotated[Path, typer.Argument(help="NDJSON file (may be gzipped), one message a line.")],
    fmt: Annotated[
        str, typer.Option("--format", help="auto (per line), segment or tracking.")
    ] = "auto",
    site: Annotated[
        str | None, typer.Option("--site", help="Site the events belong to (default site).")
    ] = None,
    server: ServerOpt = None,
    key: KeyOpt = None,
    config: ConfigOpt = None,
    database: DatabaseOpt = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=0,
            help="Processes that read and check the lines (0: none, all in this one; "
            "default: one per core, up to 4, for files over 16 MB).",
        ),
    ] = None,
) -> None:
    """Import events, identifies and aliases; running the same file again adds nothing.

    Each line goes through the API's own validation; a line that breaks a rule is reported
    with its number and skipped. A damaged gzip file is imported up to the damage, which is
    reported. The exit code is 1 when any line was rejected or the file was damaged.
    """
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}", 2)
    if not file.is_file():
        raise fail(f"no file {file}", 2)
    started = time.perf_counter()
    if server:
        rejects, accepted, lines, damage = _to_server(file, fmt, site, server, key)
        summary = f"{counted(accepted, 'message')} accepted by {server}"
    else:
        # The workers start while the store opens.
        with import_workers(default_workers(file) if workers is None else workers) as pool:
            settings = settings_or_exit(config, database=database)
            store = open_store_or_exit(settings)
            try:
                site_id = site or settings.default_site
                if store.get_site(site_id) is None:
                    raise fail(f"no site '{site_id}'", 2)
                graph = IdentityGraph(
                    store, settings.identity_max_per_kind, settings.erase_tombstone_days
                )
                before = store.count_events(site_id)
                rejects, lines, rows, damage = _to_store(file, fmt, site_id, store, graph, pool)
                stored = store.count_events(site_id) - before
            finally:
                store.close()
        summary = (
            f"{counted(stored, 'event')} stored, {rows - stored:,} already there "
            "(or of erased persons)"
        )
    seconds = time.perf_counter() - started
    console.print(
        f"{counted(lines, 'line')} in {seconds:.1f} s "
        f"({lines / seconds if seconds else 0:,.0f}/s): "
        f"{summary}, {len(rejects):,} rejected"
    )
    for reject in rejects[:SHOWN_REJECTS]:
        err.print(f"line {reject.line}: {reject.message}", highlight=False, markup=False)
    if len(rejects) > SHOWN_REJECTS:
        more = counted(len(rejects) - SHOWN_REJECTS, "more rejected line")
        err.print(f"... and {more}")
    if damage:
        raise fail(f"{shown(damage)}; the lines up to it were imported")
    if rejects:
        raise typer.Exit(1)


def _progress(file: Path) -> Progress:
    return Progress(
        TextColumn("[bold]import[/bold]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[lines]:>12,} lines"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _to_store(
    file: Path,
    fmt: str,
    site_id: str,
    store: Store,
    graph: IdentityGraph,
    pool: WorkerPool | None,
) -> tuple[list[Reject], int, int, str | None]:
    """Read and check in worker processes, write here; returns rejects, lines, rows made
    and the gzip damage the reading stopped at."""
    site = store.get_site(site_id)
    assert site is not None
    job = ImportJob(site_id, fmt, site.scope, frozenset(graph.tombstones()))
    with _progress(file) as progress:
        task = progress.add_task("import", total=_size(file), lines=0)

        def show(part: Part, lines: int) -> None:
            progress.update(task, completed=part.position, lines=lines)

        result = import_to_store(file, job, store, graph, pool, show)
        progress.update(task, completed=_size(file), lines=result.lines)
    return result.rejects, result.lines, result.rows, result.damage


def _size(file: Path) -> int:
    return max(1, file.stat().st_size)


def _to_server(
    file: Path, fmt: str, site: str | None, server: str, key: str | None
) -> tuple[list[Reject], int, int, str | None]:
    """Send the lines to the server's batch APIs (Segment lines to /v1/batch, tracking
    lines to /api/analytics/batch), 500 at most a request; rejects come back per line."""
    if not key:
        raise fail("--server needs --key (or FOOTFALL_API_KEY): a secret API key of the site", 2)
    base = server.rstrip("/")
    reader = LineReader(site or "", fmt, to_rows=False)
    rejects: list[Reject] = []
    accepted = lines = 0
    size = max(1, file.stat().st_size)
    with open_lines(file) as source, _progress(file) as progress:
        task = progress.add_task("import", total=size, lines=0)
        for numbered in line_chunks(source, CHUNK_LINES):
            chunk = Chunk()
            reader.read(iter(numbered), chunk)
            rejects.extend(chunk.rejects)
            lines += chunk.lines
            for kind in ("segment", "tracking"):
                picked = [(n, body) for n, k, body in chunk.messages if k == kind]
                for batch in batches(picked):
                    sent, refused = send_batch(base, key, kind, site, batch)
                    accepted += sent
                    rejects.extend(refused)
            progress.update(task, completed=min(size, source.position), lines=lines)
    rejects.sort(key=lambda r: r.line)
    return rejects, accepted, lines, source.damage
