"""Numbers as people read them, and the Plotly figures of the dashboard's panels.

Figures are plain dicts (``data`` and ``layout``) built from the reports' JSON; the page
embeds them as JSON and ``dashboard.js`` hands them to Plotly in the browser, which adds
the shared look (fonts, grid, margins). Nothing here queries the store. Every string from
the data goes through ``chart_text`` and never into a hover template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from footfall.analytics.reports import period_start, retention_columns

DASH = "—"
BLUE = "#4263eb"
TEAL = "#0ca678"
AMBER = "#f59f00"
RED = "#e03131"
GREY = "#868e96"
PALETTE = (BLUE, TEAL, AMBER, "#ae3ec9", "#1098ad", RED, "#74b816", GREY)

EVENT_LABELS = {
    "visitor": "Visit",
    "popup_displayed": "Popup shown",
    "popup_opened": "Popup opened",
    "bot_open": "Chat opened",
    "convo_started": "Conversation",
    "message_sent": "Message",
    "message_like": "Like",
    "message_dislike": "Dislike",
    "click_through": "Click-through",
    "added_to_cart": "Added to cart",
    "go_to_cart": "Went to cart",
    "purchase": "Purchase",
    "error": "Error",
    "form_viewed": "Form viewed",
    "answer_shown": "Answer shown",
    "ticket_submitted": "Ticket submitted",
}
BREAKDOWN_LABELS = {
    "popup_version": "Popup version",
    "open_way": "How the chat was opened",
    "chatbot_id": "Chatbot",
    "ab_group": "A/B group",
}


# --------------------------------------------------------------------------- numbers


def fmt_int(value: Any) -> str:
    return DASH if value is None else f"{int(value):,}"


def fmt_eur(value: Any) -> str:
    return DASH if value is None else f"{float(value):,.2f} EUR"


def fmt_pct(ratio: Any, digits: int = 1) -> str:
    return DASH if ratio is None else f"{float(ratio) * 100:,.{digits}f}%"


def fmt_pp(difference: Any) -> str:
    """A difference of two proportions in percentage points, with its sign."""
    return DASH if difference is None else f"{float(difference) * 100:+.2f} pp"


def fmt_p(p_value: Any) -> str:
    """A p-value alone, as in a table cell: ``< 0.0001`` or ``0.0123``."""
    if p_value is None:
        return DASH
    return "< 0.0001" if p_value < 0.0001 else f"{p_value:.4f}"


def p_clause(p_value: Any) -> str:
    """A p-value in a sentence: ``p < 0.0001`` or ``p = 0.0123`` (never ``p = < ...``)."""
    shown = fmt_p(p_value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def fmt_time(value: Any) -> str:
    """ISO times from the reports (``...Z``) as ``2026-11-02 14:03 UTC``."""
    if not value:
        return DASH
    text = str(value).rstrip("Z")
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


def event_label(event: str) -> str:
    """A type's label; a custom event (``custom:NAME``) by its name."""
    if event.startswith("custom:"):
        return f"{event[7:]} (custom)"
    return EVENT_LABELS.get(event, event)


def ab_verdict(comparison: Mapping[str, Any] | None, goal: str) -> str:
    """The A/B result in words: which group does better, by how much, and can we trust it."""
    if not comparison:
        return "Both groups need people in the range before they can be compared."
    diff = float(comparison["difference"])
    low, high = (float(x) for x in comparison["ci95"])
    action = event_label(goal).lower()
    interval = f"95% interval {low * 100:+.2f} to {high * 100:+.2f} percentage points"
    if comparison["significant"]:
        better = "test" if diff > 0 else "control"
        return (
            f"The {better} group converts better ({action}) by {abs(diff) * 100:.2f} "
            f"percentage points ({interval}). With {p_clause(comparison['p_value'])}, a "
            "difference this large is unlikely to be chance: it is statistically significant "
            "at the 5% level."
        )
    return (
        f"No clear winner: the test group differs from control by {diff * 100:+.2f} "
        f"percentage points ({interval}, {p_clause(comparison['p_value'])}). A difference "
        "like this could be chance; it is not significant at the 5% level. Keep the test "
        "running to collect more people."
    )


# --------------------------------------------------------------------------- figures


def chart_text(value: Any) -> str:
    """A data string as Plotly shows it literally: Plotly reads its own tags (``<a href>``,
    ``<span style>``, ``<br>``) in labels, names and hover text, and decodes ``&amp;``,
    ``&lt;`` and ``&gt;`` to the character."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _figure(data: list[dict[str, Any]], **layout: Any) -> dict[str, Any]:
    return {"data": data, "layout": layout}


def _bar(name: str, x: Sequence[Any], y: Sequence[Any], color: Any, **trace: Any) -> dict[str, Any]:
    return {"type": "bar", "name": name, "x": x, "y": y, "marker": {"color": color}, **trace}


def _line(
    name: str, x: Sequence[Any], y: Sequence[Any], color: str, **trace: Any
) -> dict[str, Any]:
    """A series of points joined by a line, as the trend charts draw them."""
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x,
        "y": y,
        "line": {"color": color, "width": 2},
        "marker": {"size": 4},
        **trace,
    }


PERIOD_MS = {"day": 86_400_000, "week": 7 * 86_400_000}
FEW_PERIODS = 14
"""Up to this many periods, a tick on each; beyond, Plotly spaces them (whole days still)."""


def one_bar(periods: Sequence[str], interval: str = "day") -> dict[str, Any]:
    """A lone bar's width on a date axis: Plotly sizes bars by the gap between them, and a
    single bar has none (it would be a millisecond wide in a range of a day)."""
    if len(periods) != 1:
        return {}
    return {"width": 0.75 * PERIOD_MS.get(interval, 30 * PERIOD_MS["day"])}


def count_axis(*series: Sequence[Any]) -> dict[str, Any]:
    """A y axis of counts: with small counts, a tick per whole number (Plotly would write
    1.5 people)."""
    top = max((v or 0 for values in series for v in values), default=0)
    return {"dtick": 1} if top <= 5 else {}


def period_axis(periods: Sequence[str], interval: str = "day") -> dict[str, Any]:
    """A date axis for one point per day, week or month: dates as ``2026-11-06`` (the
    pages' format), never times. Plotly's automatic ticks on a range of a day or two fall
    between midnights (``23:59:59.999``), so a short series gets one tick per period and a
    range of half a period either side of its points."""
    axis: dict[str, Any] = {
        "type": "date",
        "tickformat": "%Y-%m" if interval == "month" else "%Y-%m-%d",
        "hoverformat": "%Y-%m-%d",
    }
    if not periods:
        return axis
    if len(periods) <= FEW_PERIODS:
        first, last = period_start(periods[0], interval), period_start(periods[-1], interval)
        if interval == "month":
            axis["dtick"] = "M1"
            half = timedelta(days=15)
        else:
            axis["dtick"] = PERIOD_MS[interval]
            half = timedelta(milliseconds=PERIOD_MS[interval] / 2)
        axis["tick0"] = periods[0]
        axis["range"] = [f"{first - half:%Y-%m-%d %H:%M}", f"{last + half:%Y-%m-%d %H:%M}"]
    return axis


def _period_bar(
    name: str,
    periods: Sequence[str],
    values: Sequence[Any],
    color: str,
    interval: str = "day",
    **trace: Any,
) -> dict[str, Any]:
    """A bar a period, wide enough when it stands alone."""
    return _bar(name, periods, values, color, **one_bar(periods, interval), **trace)


def _period_bars_figure(
    name: str,
    periods: Sequence[str],
    values: Sequence[Any],
    color: str,
    interval: str = "day",
    yaxis: dict[str, Any] | None = None,
    **trace: Any,
) -> dict[str, Any]:
    """One series of bars on a date axis, without a legend: the daily panels."""
    return _figure(
        [_period_bar(name, periods, values, color, interval, **trace)],
        xaxis=period_axis(periods, interval),
        yaxis=count_axis(values) if yaxis is None else yaxis,
        showlegend=False,
    )


def overview_trend(daily: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    days = [d["day"] for d in daily]
    people = [d["people"] for d in daily]
    conversations = [d["conversations"] for d in daily]
    return _figure(
        [
            _line("Unique people", days, people, BLUE),
            _line("Conversations", days, conversations, TEAL),
        ],
        xaxis=period_axis(days),
        yaxis=count_axis(people, conversations),
    )


def overview_revenue(daily: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _period_bars_figure(
        "Revenue (EUR)",
        [d["day"] for d in daily],
        [d["revenue_eur"] for d in daily],
        AMBER,
        yaxis={"ticksuffix": " €"},
        hovertemplate="%{x|%Y-%m-%d}: %{y:,.2f} EUR<extra></extra>",
    )


def people_series(series: Sequence[Mapping[str, Any]], interval: str) -> dict[str, Any]:
    return _period_bars_figure(
        "Unique people",
        [s["period"] for s in series],
        [s["people"] for s in series],
        BLUE,
        interval,
        hovertemplate=f"{interval} of %{{x|%Y-%m-%d}}: %{{y:,}} people<extra></extra>",
    )


def retention_heatmap(report: Mapping[str, Any]) -> dict[str, Any]:
    cohorts = report["cohorts"]
    interval = report["interval"]
    # Only periods that begin within the range for the oldest cohort: later ones are blank.
    shown = retention_columns(report)
    columns = [f"{interval.capitalize()} {k}" for k in range(shown)]
    rows = [chart_text(f"{c['cohort']} · {c['size']:,}") for c in cohorts]
    end = datetime.fromisoformat(str(report["filters"]["end"]).rstrip("Z"))
    # Periods that have not begun by the range's end are blank, not "0% came back".
    z = [
        [
            None
            if r is None or period_start(c["cohort"], interval, k) >= end
            else round(r * 100, 1)
            for k, r in enumerate(c["rates"][:shown])
        ]
        for c in cohorts
    ]
    return _figure(
        [
            {
                "type": "heatmap",
                "x": columns,
                "y": rows,
                "z": z,
                "zmin": 0,
                "zmax": 100,
                "colorscale": [[0, "#f1f3ff"], [0.15, "#bac8ff"], [0.5, "#5c7cfa"], [1, "#2b3a9e"]],
                "text": [["" if v is None else f"{v:.1f}%" for v in row] for row in z],
                "texttemplate": "%{text}",
                "hovertemplate": "cohort %{y}<br>%{x}: %{z:.1f}% returned<extra></extra>",
                "hoverongaps": False,
                "xgap": 2,
                "ygap": 2,
                "colorbar": {"ticksuffix": "%", "thickness": 12},
            }
        ],
        yaxis={"autorange": "reversed", "type": "category", "showgrid": False, "ticks": ""},
        xaxis={"side": "top", "type": "category", "showgrid": False, "ticks": ""},
        margin={"l": 150, "t": 40},
    )


def funnel_chart(report: Mapping[str, Any]) -> dict[str, Any]:
    labels = [chart_text(event_label(s)) for s in report["steps"]]
    groups = report["groups"]
    if not groups:
        overall = report["overall"]["steps"]
        return _figure(
            [
                {
                    "type": "funnel",
                    "y": labels,
                    "x": [s["people"] for s in overall],
                    # The table's numbers: 12,287 (not Plotly's SI 12.287k) and the report's
                    # own share of step 1, formatted as the table formats it.
                    "text": [fmt_pct(s["conversion"]) for s in overall],
                    "texttemplate": "%{value:,}<br>%{text}",
                    "marker": {"color": BLUE},
                    "connector": {"fillcolor": "#e7ebff"},
                    "hovertemplate": "%{y}: %{x:,} people<extra></extra>",
                }
            ],
            margin={"l": 120},
            showlegend=False,
        )
    return _figure(
        [
            _bar(
                chart_text(g["group"]),
                labels,
                [s["people"] for s in g["steps"]],
                PALETTE[i % len(PALETTE)],
                hovertemplate="%{fullData.name}<br>%{x}: %{y:,} people<extra></extra>",
            )
            for i, g in enumerate(groups)
        ],
        barmode="group",
        yaxis={"exponentformat": "none"},
    )


def ab_chart(groups: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _figure(
        [
            {
                "type": "bar",
                "x": [chart_text(g["group"]) for g in groups],
                "y": [round((g["conversion"] or 0) * 100, 2) for g in groups],
                "marker": {"color": [GREY if g["group"] == "control" else BLUE for g in groups]},
                "text": [f"{(g['conversion'] or 0) * 100:.2f}%" for g in groups],
                "textposition": "outside",
                "hovertemplate": "%{x}: %{y:.2f}% converted<extra></extra>",
            }
        ],
        yaxis={"ticksuffix": "%", "rangemode": "tozero"},
        showlegend=False,
    )


def revenue_chart(series: Sequence[Mapping[str, Any]], interval: str = "day") -> dict[str, Any]:
    periods = [s["period"] for s in series]
    orders = [s["orders"] for s in series]
    return _figure(
        [
            _period_bar(
                "Revenue (EUR)",
                periods,
                [s["revenue_eur"] for s in series],
                AMBER,
                interval,
                hovertemplate="%{x|%Y-%m-%d}: %{y:,.2f} EUR<extra></extra>",
            ),
            _line(
                "Orders",
                periods,
                orders,
                BLUE,
                yaxis="y2",
                hovertemplate="%{x|%Y-%m-%d}: %{y:,} orders<extra></extra>",
            ),
        ],
        xaxis=period_axis(periods, interval),
        yaxis={"ticksuffix": " €", "title": {"text": "Revenue"}},
        yaxis2={
            **count_axis(orders),
            # Plotly syncs an overlaying axis to the first one's grid: "3.7 orders".
            "tickmode": "auto",
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
            "title": {"text": "Orders"},
        },
        margin={"r": 56},
    )


def popups_chart(versions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    names = [chart_text(v["popup_version"]) for v in versions]
    return _figure(
        [
            _bar("Shown", names, [v["displays"] for v in versions], "#bac8ff"),
            _bar("Opened", names, [v["opens"] for v in versions], BLUE),
        ],
        barmode="group",
        xaxis={"type": "category"},
    )


def feedback_chart(chatbots: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    names = [chart_text(c["chatbot_id"]) for c in chatbots]
    return _figure(
        [
            _bar("Likes", [c["likes"] for c in chatbots], names, TEAL, orientation="h"),
            _bar("Dislikes", [c["dislikes"] for c in chatbots], names, RED, orientation="h"),
        ],
        barmode="stack",
        yaxis={"type": "category", "autorange": "reversed"},
        margin={"l": 110},
    )


def questions_chart(questions: Sequence[Mapping[str, Any]], top: int = 10) -> dict[str, Any]:
    shown = list(questions[:top])
    return _figure(
        [
            {
                "type": "bar",
                "orientation": "h",
                "y": [chart_text(_clip(q["text"], 48)) for q in shown],
                "x": [q["count"] for q in shown],
                "marker": {"color": TEAL},
                "hovertemplate": "%{y}: %{x:,} times<extra></extra>",
            }
        ],
        yaxis={"type": "category", "autorange": "reversed", "automargin": True},
        showlegend=False,
        margin={"l": 260},
    )


def errors_chart(daily: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _period_bars_figure(
        "Errors", [d["day"] for d in daily], [d["errors"] for d in daily], RED
    )


DEFLECTION_STEPS = {
    "form_viewed": "Form viewed",
    "question": "Question typed",
    "answer_shown": "Answer shown",
    "feedback_or_click": "Feedback or click",
    "ticket_submitted": "Ticket submitted",
}


def deflection_chart(series: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per day: answered sessions split into deflected and deferred, and the tickets."""
    days = [d["day"] for d in series]
    return _figure(
        [
            _period_bar("Deflected", days, [d["deflected"] for d in series], TEAL),
            _period_bar("Deferred (ticket later)", days, [d["deferred"] for d in series], AMBER),
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Tickets",
                "x": days,
                "y": [d["tickets"] for d in series],
                "line": {"color": RED},
            },
        ],
        barmode="stack",
        xaxis=period_axis(days),
        yaxis={
            "rangemode": "tozero",
            **count_axis(
                [d["deflected"] + d["deferred"] for d in series], [d["tickets"] for d in series]
            ),
        },
    )


def deflection_funnel(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _figure(
        [
            {
                "type": "funnel",
                "y": [chart_text(DEFLECTION_STEPS.get(s["step"], s["step"])) for s in steps],
                "x": [s["sessions"] for s in steps],
                "marker": {"color": [BLUE, BLUE, TEAL, TEAL, RED]},
                # The table's numbers (16,759, not Plotly's 16.759k), as the funnel page.
                "text": [fmt_pct(s["of_sessions"]) for s in steps],
                "texttemplate": "%{value:,}<br>%{text}",
                "hovertemplate": "%{y}: %{x:,} sessions<extra></extra>",
            }
        ],
        showlegend=False,
    )


def custom_events_chart(daily: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return _period_bars_figure(
        "Custom events", [d["day"] for d in daily], [d["events"] for d in daily], PALETTE[1]
    )


def journey_chart(events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each event a dot: time across, event type down, one colour per site."""
    by_site: dict[str, list[Mapping[str, Any]]] = {}
    for event in events:
        by_site.setdefault(str(event["site_id"]), []).append(event)
    present = {str(ev["event"]) for ev in events}
    order = [e for e in EVENT_LABELS if e in present] + sorted(present - set(EVENT_LABELS))
    return _figure(
        [
            {
                "type": "scatter",
                "mode": "markers",
                "name": chart_text(site),
                "x": [str(e["ts"]).rstrip("Z") for e in rows],
                "y": [chart_text(event_label(str(e["event"]))) for e in rows],
                "marker": {"size": 9, "color": PALETTE[i % len(PALETTE)], "opacity": 0.85},
                "hovertemplate": "%{fullData.name}<br>%{y}<br>%{x|%Y-%m-%d %H:%M}<extra></extra>",
            }
            for i, (site, rows) in enumerate(sorted(by_site.items()))
        ],
        xaxis={"type": "date"},
        yaxis={
            "type": "category",
            "categoryorder": "array",
            "categoryarray": [chart_text(event_label(e)) for e in reversed(order)],
        },
        margin={"l": 110},
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
