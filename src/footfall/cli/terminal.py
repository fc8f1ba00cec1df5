"""Reports as readable terminal tables: the same JSON the API returns, drawn with rich;
and how stored text reaches the terminal.

Stored text (user ids, traits, event names, messages...) is the senders', not the
operator's: the CLI's consoles (``SafeConsole``) print control characters as escapes
(``\\x1b``), so nothing stored can move the cursor, retitle the window or forge a link in the
operator's terminal, and ``shown`` is how a stored value goes into printed text (its
markup, e.g. ``[bold]``, stays text).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from footfall.words import counted

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 (but tab and line feed, which the CLI's own text uses), DEL, C1 (CSI among them) and
the Unicode line separators."""
_STORED_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""The same with tab and line feed (a stored value is one line: a line feed in it could
forge a row), and lone surrogates (which cannot be written out)."""


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def plain_text(text: str) -> str:
    """``text`` with its control characters as escapes (``\\x1b``), newlines and tabs too."""
    return _STORED_CONTROLS.sub(_escaped, text)


def shown(value: object) -> str:
    """A stored value as it goes into printed text: control characters as escapes and its
    markup escaped, so it prints literally whatever it holds."""
    return escape(plain_text(str(value)))


class SafeConsole(Console):
    """A console that prints control characters as escapes wherever text comes from: the
    last guard for stored text that reaches a print without ``shown`` (a message quoting
    a value, a table cell). Emoji codes (``:warning:``) are left as text too."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        return super().render_str(_CONTROLS.sub(_escaped, text), **kwargs)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _eur(value: float | None) -> str:
    return "-" if value is None else f"€{value:,.2f}"


def _int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _duration(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _bar(value: float, top: float, width: int = 24) -> str:
    return "█" * max(0, round(width * value / top)) if top else ""


def _overview(r: dict[str, Any]) -> RenderableType:
    head = Table.grid(padding=(0, 3))
    head.add_row(
        *(Text(label, style="dim") for label in ("people", "conversations", "messages")),
        *(Text(label, style="dim") for label in ("orders", "revenue", "conversion")),
    )
    head.add_row(
        Text(_int(r["people"]), style="bold"),
        Text(_int(r["conversations"]), style="bold"),
        Text(_int(r["messages"]), style="bold"),
        Text(_int(r["orders"]), style="bold"),
        Text(_eur(r["revenue_eur"]), style="bold"),
        Text(_pct(r["conversion_rate"]), style="bold"),
    )
    # Every day of the range (the range is the reader's choice: --days, --from/--to).
    days = Table(
        "day",
        "people",
        "visits",
        "conversations",
        "orders",
        "revenue",
        title="daily",
        caption=f"every day with events: {counted(len(r['daily']), 'day')}",
    )
    for d in r["daily"]:
        days.add_row(
            d["day"],
            _int(d["people"]),
            _int(d["visits"]),
            _int(d["conversations"]),
            _int(d["orders"]),
            _eur(d["revenue_eur"]),
        )
    return Group(head, days)


def _people(r: dict[str, Any]) -> RenderableType:
    top = max((p["people"] for p in r["series"]), default=0)
    caption = f"{counted(r['people'], 'person')} in the range"
    table = Table(r["interval"], "people", "", caption=caption)
    for p in r["series"]:
        table.add_row(p["period"], _int(p["people"]), Text(_bar(p["people"], top), "cyan"))
    return table


def _retention(r: dict[str, Any]) -> RenderableType:
    from footfall.analytics.reports import period_start, retention_columns  # (startup)

    # Only the periods that begin within the range: later columns would be blank.
    shown_periods = retention_columns(r)
    end = datetime.fromisoformat(str(r["filters"]["end"]).rstrip("Z"))
    table = Table(
        "cohort", "size", *(f"+{k}" for k in range(shown_periods)), title="share who came back"
    )
    for c in r["cohorts"]:
        # A period that begins after the range is not "0.0%": nobody could come back yet.
        begun = [period_start(c["cohort"], r["interval"], k) < end for k in range(shown_periods)]
        cells = [
            _pct(rate) if rate is not None and ok else "-"
            for rate, ok in zip(c["rates"], begun, strict=False)
        ]
        table.add_row(c["cohort"], _int(c["size"]), *cells)
    return table


def _power_users(r: dict[str, Any]) -> RenderableType:
    users = Table("person", "conversations", "messages", "asks most", title="power users")
    for u in r["users"]:
        asks = "; ".join(f"{shown(q['text'])} ({q['count']})" for q in u["questions"])
        users.add_row(shown(u["label"]), _int(u["conversations"]), _int(u["messages"]), asks)
    common = Table("question", "times asked", title="common questions")
    for q in r["common_questions"]:
        common.add_row(shown(q["text"]), _int(q["count"]))
    return Group(users, common)


def _funnel(r: dict[str, Any]) -> RenderableType:
    groups = r["groups"] or [r["overall"]]
    title = f"within {_duration(r['window_seconds'])}" + (
        f", by {shown(r['breakdown'])}" if r["breakdown"] else ""
    )
    table = Table("step", *(shown(g["group"]) for g in groups), title=title)
    for i, step in enumerate(r["steps"]):
        table.add_row(
            shown(step),
            *(f"{g['steps'][i]['people']:,} ({_pct(g['steps'][i]['conversion'])})" for g in groups),
        )
    return table


def _ab(r: dict[str, Any]) -> RenderableType:
    table = Table(
        "group",
        "people",
        "converted",
        "conversion",
        "revenue",
        "per person",
        title=shown(r["goal"]),
    )
    for g in r["groups"]:
        table.add_row(
            shown(g["group"]),
            _int(g["people"]),
            _int(g["converted"]),
            _pct(g["conversion"]),
            _eur(g["revenue_eur"]),
            _eur(g["revenue_per_person"]),
        )
    c = r["comparison"]
    if c is None:
        return Group(table, Text("needs people in both control and test", style="dim"))
    verdict = "significant" if c["significant"] else "not significant"
    low, high = c["ci95"]
    summary = Text(
        f"test - control: {c['difference'] * 100:+.2f} points "
        f"(95% CI {low * 100:+.2f} to {high * 100:+.2f}), "
        + ("p < 0.0001" if c["p_value"] < 0.0001 else f"p = {c['p_value']:.4f}")
        + f": {verdict}",
        style="bold green" if c["significant"] else "yellow",
    )
    return Group(table, summary)


def _revenue(r: dict[str, Any]) -> RenderableType:
    head = Text(
        f"revenue {_eur(r['revenue_eur'])}   orders {r['orders']:,}   "
        f"average order {_eur(r['average_order_eur'])}   buyers {r['buyers']:,}"
        + (
            f"   ({counted(r['orders_without_eur'], 'order')} in unknown currencies)"
            if r["orders_without_eur"]
            else ""
        ),
        style="bold",
    )
    items = Table("item", "quantity", "orders", "revenue", title="top items")
    for i in r["top_items"]:
        items.add_row(
            shown(i["item_id"]), _int(i["quantity"]), _int(i["orders"]), _eur(i["revenue_eur"])
        )
    return Group(head, items)


def _feedback(r: dict[str, Any]) -> RenderableType:
    table = Table("chatbot", "likes", "dislikes", "liked")
    for b in r["chatbots"]:
        table.add_row(
            shown(b["chatbot_id"]), _int(b["likes"]), _int(b["dislikes"]), _pct(b["like_rate"])
        )
    return table


def _popups(r: dict[str, Any]) -> RenderableType:
    table = Table("popup version", "displays", "opens", "open rate")
    for v in r["versions"]:
        table.add_row(
            shown(v["popup_version"]), _int(v["displays"]), _int(v["opens"]), _pct(v["open_rate"])
        )
    return table


def _errors(r: dict[str, Any]) -> RenderableType:
    table = Table("message", "count", "people", "last seen", caption=counted(r["total"], "error"))
    for e in r["errors"]:
        table.add_row(
            shown(e["message"]), _int(e["count"]), _int(e["people"]), (e["last_seen"] or "")[:19]
        )
    return table


def _custom_events(r: dict[str, Any]) -> RenderableType:
    table = Table(
        "custom event", "count", "people", "last seen", caption=counted(r["total"], "custom event")
    )
    for e in r["events"]:
        table.add_row(
            shown(e["name"]), _int(e["count"]), _int(e["people"]), (e["last_seen"] or "")[:19]
        )
    return table


def _money(amount: float, currency: str | None) -> str:
    return f"{amount:,.2f} {shown(currency or '')}".strip()


def _deflection(r: dict[str, Any]) -> RenderableType:
    t = r["totals"]
    labels = ("sessions", "answered", "tickets", "deflected", "deferred", "deflection rate")
    head = Table.grid(padding=(0, 3))
    head.add_row(*(Text(label, style="dim") for label in labels))
    head.add_row(
        *(Text(_int(t[k]), style="bold") for k in labels[:5]),
        Text(_pct(t["deflection_rate"]), style="bold"),
    )
    e = r["ephemeral"]
    notes = [
        f"{t['tickets_without_answer']:,} tickets without an answer shown; "
        f"{t['deflected_window_open']:,} deflected sessions still inside their "
        f"{r['window_days']}-day window",
        f"without consent (ephemeral, counted apart): {e['sessions']:,} sessions, "
        f"{e['answered']:,} answered, {e['tickets']:,} tickets",
    ]
    for saving in r["savings"]:
        notes.append(
            f"saved {_money(saving['amount'], saving['currency'])} "
            f"({saving['deflected']:,} deflected tickets)"
        )
    for site in r["sites_without_cost"]:
        notes.append(f"site {shown(site['site_id'])} has no cost per ticket set")
    funnel = Table("step", "sessions", "of all sessions", title="funnel")
    for step in r["funnel"]:
        funnel.add_row(shown(step["step"]), _int(step["sessions"]), _pct(step["of_sessions"]))
    gaps = Table(
        "question",
        "sessions",
        "answered",
        "tickets",
        "deferred",
        "dislikes",
        "deflected",
        title="questions that still end in tickets",
    )
    for q in r["questions"]:
        gaps.add_row(
            shown(q["question"]),
            _int(q["sessions"]),
            _int(q["answered"]),
            _int(q["tickets"]),
            _int(q["deferred"]),
            _int(q["dislikes"]),
            _pct(q["deflection_rate"]),
        )
    forms = Table("site", "form", "sessions", "answered", "tickets", "deflected", title="forms")
    for f in r["forms"]:
        forms.add_row(
            shown(f["site_id"]),
            shown(f["form"] or "(none)"),
            _int(f["sessions"]),
            _int(f["answered"]),
            _int(f["tickets"]),
            _pct(f["deflection_rate"]),
        )
    parts: list[RenderableType] = [head, *(Text(n, style="dim") for n in notes), funnel]
    lift = r["lift"]
    if lift["groups"]:
        table = Table("group", "sessions", "answered", "tickets", "ticket rate", title="holdout")
        for g in lift["groups"]:
            table.add_row(
                shown(g["group"]),
                _int(g["sessions"]),
                _int(g["answered"]),
                _int(g["tickets"]),
                _pct(g["ticket_rate"]),
            )
        parts.append(table)
        c, avoided = lift["comparison"], lift["avoided_tickets"]
        if c is not None and avoided is not None:
            low, high = avoided["ci95"]
            parts.append(
                Text(
                    f"tickets avoided by the answers: {avoided['tickets']:,.1f} "
                    f"(95% CI {low:,.1f} to {high:,.1f}), "
                    + ("p < 0.0001" if c["p_value"] < 0.0001 else f"p = {c['p_value']:.4f}"),
                    style="bold green" if c["significant"] else "yellow",
                )
            )
    return Group(*parts, gaps, forms)


RENDERERS: dict[str, Callable[[dict[str, Any]], RenderableType]] = {
    "overview": _overview,
    "people": _people,
    "retention": _retention,
    "power-users": _power_users,
    "funnel": _funnel,
    "ab": _ab,
    "revenue": _revenue,
    "feedback": _feedback,
    "popups": _popups,
    "errors": _errors,
    "custom-events": _custom_events,
    "deflection": _deflection,
}


def show_report(console: Console, name: str, title: str, result: dict[str, Any]) -> None:
    f = result["filters"]
    sites = ", ".join(shown(s) for s in f["sites"]) if f["sites"] else "all sites"
    console.print(
        f"[bold]{title}[/bold]  [dim]{sites}, {f['start'][:10]} to {f['end'][:10]} (UTC, end "
        "exclusive)[/dim]"
    )
    console.print(RENDERERS[name](result))
