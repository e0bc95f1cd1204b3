"""The HTML report: one self-contained file (no script, no network) with the KPI tables and
charts — volume and first-response trends, SLA compliance, satisfaction distribution,
backlog by age.

Owns the page template (`report/templates/report.html.j2`, Jinja2 with autoescape: every
customer-provided string — subjects, tags, queue and agent names — is escaped) and the
charts, drawn by matplotlib (the `report` extra) into inline SVG. Without matplotlib,
`render_html` raises `ChartsUnavailable` naming the extra to install.
Must not: compute a KPI (services/kpis.py), read the database or the clock.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from maildesk.errors import MaildeskError
from maildesk.services.kpis import BACKLOG_LABELS, SLA_KINDS, Durations, Rate, Report

TEMPLATES = Path(__file__).parent / "templates"
INSTALL_HINT = "pip install 'maildesk[report]'"


class ChartsUnavailable(MaildeskError):
    """matplotlib (the `report` extra) is not installed."""


def _figure_to_svg(draw: Callable[[Any], None], width: float = 7.0, height: float = 3.0) -> Markup:
    try:
        from matplotlib.figure import Figure  # the one module that owns matplotlib
    except ModuleNotFoundError as exc:
        raise ChartsUnavailable(f"the HTML report's charts need matplotlib: {INSTALL_HINT}") from exc
    fig = Figure(figsize=(width, height), dpi=96, layout="constrained")
    ax = fig.add_subplot()
    draw(ax)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    return Markup(svg[svg.index("<svg") :])  # noqa: S704 - matplotlib's own SVG, not input text


def _counts(ax: Any) -> None:
    """A count axis gets whole-number ticks (not 0.2 tickets)."""
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} data in this period", ha="center", va="center", fontsize=12, color="#666")
    ax.set_axis_off()


def charts(report: Report) -> dict[str, Markup]:
    """The five charts as inline SVG."""
    days = [p.day[5:] for p in report.trend]
    step = max(1, len(days) // 12)

    def volume(ax: Any) -> None:
        x = range(len(days))
        ax.bar([i - 0.2 for i in x], [p.created for p in report.trend], width=0.4, label="created", color="#4C78A8")
        ax.bar([i + 0.2 for i in x], [p.resolved for p in report.trend], width=0.4, label="resolved", color="#54A24B")
        ax.set_xticks(list(x)[::step], days[::step], rotation=45, fontsize=8)
        ax.set_ylabel("tickets")
        _counts(ax)
        ax.legend(
            loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, frameon=False, fontsize=8
        )  # above: never over a bar

    def response(ax: Any) -> None:
        values = [
            (i, p.first_response_business_median / 3600)
            for i, p in enumerate(report.trend)
            if p.first_response_business_median is not None
        ]
        if not values:
            return _no_data(ax, "first response")
        ax.plot([i for i, _ in values], [v for _, v in values], marker="o", color="#F58518")
        ax.set_xticks(list(range(len(days)))[::step], days[::step], rotation=45, fontsize=8)
        ax.set_xlim(-0.5, len(days) - 0.5)
        ax.set_ylabel("median first response (business h)")

    def sla(ax: Any) -> None:
        if not report.total.sla:
            return _no_data(ax, "SLA")
        kinds = [k for k in SLA_KINDS if k in report.total.sla]
        values = [100 * (report.total.sla[k].rate or 0) for k in kinds]
        ax.bar([k.replace("_", " ") for k in kinds], values, color="#54A24B")
        ax.set_ylim(0, 100)
        ax.set_ylabel("compliance %")

    def satisfaction(ax: Any) -> None:
        s = report.total.satisfaction
        if s is None:
            return _no_data(ax, "satisfaction")
        colours = ["#E45756", "#F58518", "#EECA3B", "#72B7B2", "#54A24B"]
        ax.bar([str(r) for r in range(1, 6)], [s.distribution[str(r)] for r in range(1, 6)], color=colours)
        ax.set_xlabel("rating")
        ax.set_ylabel("answers")
        _counts(ax)

    def backlog(ax: Any) -> None:
        ax.bar(list(BACKLOG_LABELS), [report.total.backlog[b] for b in BACKLOG_LABELS], color="#B279A2")
        ax.set_xlabel("age")
        ax.set_ylabel("open tickets")
        _counts(ax)

    return {
        "volume": _figure_to_svg(volume),
        "response": _figure_to_svg(response),
        "sla": _figure_to_svg(sla, 4.5),
        "satisfaction": _figure_to_svg(satisfaction, 4.5),
        "backlog": _figure_to_svg(backlog, 4.5),
    }


def hours(value: float | None) -> str:
    return "–" if value is None else f"{value / 3600:.1f} h"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def durations(d: Durations) -> str:
    return "–" if not d.n else f"{hours(d.median)} / {hours(d.p90)}"


def rate(r: Rate) -> str:
    return "–" if r.rate is None else f"{percent(r.rate)} ({r.count}/{r.of})"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(hours=hours, percent=percent, durations=durations, rate=rate)
    return env


def render_html(report: Report, *, title: str = "Support report") -> str:
    """The whole report page; raises ChartsUnavailable without matplotlib."""
    rows = [("All", report.total), *report.groups.items()]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            report=report,
            rows=rows,
            charts=charts(report),
            title=title,
            backlog_labels=BACKLOG_LABELS,
            sla_kinds=SLA_KINDS,
        )
    )


__all__ = ["ChartsUnavailable", "INSTALL_HINT", "charts", "render_html", "hours", "percent", "durations", "rate"]
