"""`maildesk report`: the KPIs of a period as terminal tables, JSON, CSV or one HTML file,
and `--digest-now` to mail the leads' digest at once.

Owns the command's options, parsing `--since`/`--until` and the table and CSV layouts. The
numbers are `services/kpis.py`'s, the HTML page and the digest `maildesk/report/`'s.
Must not: compute a KPI or build SQL.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from maildesk.commands.common import EX_CONFIG, ConfigOpt, err, open_desk, plain
from maildesk.commands.common import console as default_console

_AGO = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNIT = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class By(StrEnum):
    queue = "queue"
    tier = "tier"
    agent = "agent"
    priority = "priority"


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


def parse_moment(text: str, now: datetime, *, what: str) -> datetime:
    """`30d`, `12h`, `2w`, `90m` before `now`; or an ISO date (midnight UTC) or date-time (UTC when naive)."""
    match = _AGO.match(text)
    if match:
        return now - timedelta(**{_UNIT[match.group(2).lower()]: int(match.group(1))})
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r}: write 30d, 12h, 2w or a date like 2026-11-01", param_hint=what) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _hours(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds / 3600:.1f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


CSV_COLUMNS = (
    "group",
    "created",
    "resolved",
    "backlog",
    "unanswered",
    "first_response_business_median_h",
    "first_response_business_p90_h",
    "first_response_calendar_median_h",
    "first_response_calendar_p90_h",
    "resolution_business_median_h",
    "resolution_business_p90_h",
    "resolution_calendar_median_h",
    "resolution_calendar_p90_h",
    "fcr_rate",
    "reopen_rate",
    "repeat_rate",
    "escalation_rate",
    "csat_average",
    "csat_share_4_5",
    "survey_response_rate",
)


def _csv_row(name: str, k: Any) -> list[Any]:
    def h(v: float | None) -> str:
        return "" if v is None else f"{v / 3600:.4f}"

    def r(v: float | None) -> str:
        return "" if v is None else f"{v:.4f}"

    s = k.satisfaction
    return [
        name,
        k.created,
        k.resolved,
        k.backlog_total,
        k.unanswered,
        h(k.first_response_business.median),
        h(k.first_response_business.p90),
        h(k.first_response_calendar.median),
        h(k.first_response_calendar.p90),
        h(k.resolution_business.median),
        h(k.resolution_business.p90),
        h(k.resolution_calendar.median),
        h(k.resolution_calendar.p90),
        r(k.first_contact_resolution.rate),
        r(k.reopened.rate),
        r(k.repeat.rate),
        r(k.escalated.rate),
        "" if s is None else f"{s.average:.4f}",
        "" if s is None else r(s.share_4_5),
        "" if s is None else r(s.response_rate),
    ]


def to_csv(report: Any) -> str:
    """One row per group and a first row `(all)`; hours and rates as plain numbers, empty = no data."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerow(_csv_row("(all)", report.total))
    for name, kpis in report.groups.items():
        writer.writerow(_csv_row(name, kpis))
    return buf.getvalue()


def print_tables(report: Any, out: Console | None = None) -> None:
    """The report as Rich tables on `out` (default: the terminal)."""
    console = out or default_console
    console.print(plain(f"{report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC, by {report.by}", "bold"))
    console.print(plain(f"business time: {report.calendar}", "dim"))
    main = Table(title="KPIs (times in hours: median / p90, business | calendar)")
    for col in (
        "",
        "created",
        "resolved",
        "backlog",
        "first response",
        "resolution",
        "FCR",
        "reopen",
        "repeat",
        "escalated",
        "CSAT",
        "4–5",
        "answered",
    ):
        main.add_column(col, justify="left" if not col else "right")
    for name, k in [("(all)", report.total), *report.groups.items()]:
        s = k.satisfaction
        main.add_row(
            plain(name),
            str(k.created),
            str(k.resolved),
            str(k.backlog_total),
            f"{_hours(k.first_response_business.median)}/{_hours(k.first_response_business.p90)} | "
            f"{_hours(k.first_response_calendar.median)}/{_hours(k.first_response_calendar.p90)}",
            f"{_hours(k.resolution_business.median)}/{_hours(k.resolution_business.p90)} | "
            f"{_hours(k.resolution_calendar.median)}/{_hours(k.resolution_calendar.p90)}",
            _pct(k.first_contact_resolution.rate),
            _pct(k.reopened.rate),
            _pct(k.repeat.rate),
            _pct(k.escalated.rate),
            "no data" if s is None else f"{s.average:.2f}",
            "" if s is None else _pct(s.share_4_5),
            "" if s is None else _pct(s.response_rate),
        )
    console.print(main)
    backlog = Table(title="Backlog by age (open now)")
    backlog.add_column("")
    labels = list(report.total.backlog)
    for label in labels:
        backlog.add_column(label, justify="right")
    for name, k in [("(all)", report.total), *report.groups.items()]:
        backlog.add_row(plain(name), *(str(k.backlog[b]) for b in labels))
    console.print(backlog)
    sla = Table(title="SLA compliance per target")
    for col in ("target", "measured", "breached", "compliance"):
        sla.add_column(col)
    for kind, r in (report.total.sla or {}).items():
        sla.add_row(kind, str(r.of), str(r.count), _pct(r.rate))
    if not report.total.sla:
        sla.add_row("no data", "", "", "")
    console.print(sla)
    tiers = Table(title="Escalation rate per tier")
    for col in ("tier", "handled", "escalated", "rate"):
        tiers.add_column(col)
    for tier, r in report.total.escalation_by_tier.items():
        tiers.add_row(tier, str(r.of), str(r.count), _pct(r.rate))
    console.print(tiers)
    agents = Table(title="Agents")
    for col in ("agent", "replies", "open now", "resolved", "first reply h (median/p90, business)"):
        agents.add_column(col)
    for a in report.agents:
        agents.add_row(
            plain(a.agent),
            str(a.replies),
            str(a.open_now),
            str(a.resolved),
            f"{_hours(a.first_reply_business.median)}/{_hours(a.first_reply_business.p90)}",
        )
    console.print(agents)
    tops = Table(title="Top tags and sender domains")
    for col in ("tag", "tickets", "domain", "tickets"):
        tops.add_column(col)
    for i in range(max(len(report.top_tags), len(report.top_domains))):
        tag = report.top_tags[i] if i < len(report.top_tags) else ("", "")
        dom = report.top_domains[i] if i < len(report.top_domains) else ("", "")
        tops.add_row(plain(tag[0]), str(tag[1]), plain(dom[0]), str(dom[1]))
    console.print(tops)


def report(
    config: ConfigOpt = None,
    since: Annotated[str, typer.Option("--since", help="Start: 30d, 12h, 2w before --until, or a date.")] = "30d",
    until: Annotated[
        str | None, typer.Option("--until", help="End (exclusive): a date or date-time; default now.")
    ] = None,
    by: Annotated[By, typer.Option("--by", help="Group by queue, tier, agent or priority.")] = By.queue,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="table, json, csv or html.")] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of the terminal.")
    ] = None,
    digest_now: Annotated[
        bool, typer.Option("--digest-now", help="Queue the leads' digest mail now and exit.")
    ] = False,
) -> None:
    """The KPIs of a period: created and resolved, backlog by age, response and resolution
    times, FCR, reopen and repeat rates, SLA compliance, escalations, satisfaction, agents.

    Example: `maildesk report --since 7d --by agent --format html -o week.html`
    """
    from maildesk.report.digest import send_digest
    from maildesk.report.html import ChartsUnavailable, render_html
    from maildesk.services.kpis import build_report, default_calendar

    with open_desk(config) as desk:
        now = desk.clock()
        if digest_now:
            cfg = desk.settings.report
            if not cfg.digest_to:
                err.print(plain("no [report] digest_to addresses are configured", "red"))
                raise typer.Exit(EX_CONFIG)
            with desk.store.session() as session:
                item = send_digest(
                    session, desk.deps.mailer, desk.settings, now, kind=cfg.digest if cfg.digest != "off" else "daily"
                )
            if item is None:
                default_console.print("the digest for this period was queued before")
            else:
                default_console.print(
                    plain(f"digest queued: outbox #{item.id} to {', '.join(item.recipients)} ({item.state})")
                )
            return
        end = parse_moment(until, now, what="--until") if until else now
        start = parse_moment(since, end, what="--since")
        if start >= end:
            raise typer.BadParameter("--since must be before --until", param_hint="--since")
        with desk.store.reader() as session:
            result = build_report(
                session, since=start, until=end, by=by.value, calendar=default_calendar(desk.settings)
            )
        if fmt is Format.table and output is None:
            print_tables(result)
            return
        if fmt is Format.json:
            text = json.dumps(result.to_dict(), indent=2, default=str) + "\n"
        elif fmt is Format.csv:
            text = to_csv(result)
        elif fmt is Format.html:
            try:
                text = render_html(result, title=f"{desk.settings.desk.name}: report")
            except ChartsUnavailable as exc:
                err.print(plain(str(exc), "red"))
                raise typer.Exit(EX_CONFIG) from exc
        else:
            buf = io.StringIO()
            print_tables(result, Console(file=buf, width=160, no_color=True))
            text = buf.getvalue()
        if output is None:
            typer.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
            default_console.print(plain(f"wrote {output}"))


__all__ = ["report", "parse_moment", "to_csv", "print_tables"]
