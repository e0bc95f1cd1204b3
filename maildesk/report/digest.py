"""The KPI digest mailed to leads: the headline figures in the text, the HTML report attached.

Owns `digest_period` (daily: the 24 hours before `now`; weekly: the 7 days before) and
`send_digest`: one outbox row per period (idempotency key `report-digest:<kind>:<until>`, so
a restart or a second node never sends a period twice), composed here and queued through
`outbound.outbox.enqueue` with the Mailer's sender address, DKIM signer and loop mark — the
digest belongs to no ticket. Without matplotlib the mail goes out without the attachment and
says so. `[report] digest = "off"` (the default) sends nothing unless forced.
Must not: compute a KPI, decide who is a lead (`[report] digest_to` says), read the clock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from maildesk.config import Settings
from maildesk.outbound import outbox
from maildesk.outbound.compose import OutgoingMail
from maildesk.report.html import INSTALL_HINT, ChartsUnavailable, durations, percent, rate, render_html
from maildesk.services.kpis import Report, build_report, default_calendar
from maildesk.store import Session
from maildesk.store.models import OutboxItem

log = logging.getLogger("maildesk.report")
PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def digest_period(kind: str, now: datetime) -> tuple[datetime, datetime]:
    """[since, until) of a `daily` or `weekly` digest sent at `now` (to the minute)."""
    until = now.replace(second=0, microsecond=0)
    return until - PERIODS[kind], until


def headline(report: Report) -> str:
    """The digest's text: the figures a lead reads first."""
    t = report.total
    s = t.satisfaction
    sla = "no data" if not t.sla else ", ".join(f"{k} {percent(r.rate)}" for k, r in t.sla.items())
    lines = [
        f"Period: {report.since:%Y-%m-%d %H:%M} – {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        f"Created: {t.created}    Resolved: {t.resolved}    Backlog now: {t.backlog_total}",
        f"First response, median / p90 (business): {durations(t.first_response_business)}",
        f"Resolution, median / p90 (business): {durations(t.resolution_business)}",
        f"First contact resolution: {rate(t.first_contact_resolution)}",
        f"Reopened: {rate(t.reopened)}    Escalated: {rate(t.escalated)}    Repeat: {rate(t.repeat)}",
        f"SLA compliance: {sla}",
        "Satisfaction: no data"
        if s is None
        else f"Satisfaction: {s.average:.2f} average, {percent(s.share_4_5)} rated 4-5,"
        f" {percent(s.response_rate)} answered",
        "",
        f"By {report.by}:",
        *(
            f"  {name}: {k.created} created, {k.resolved} resolved, {k.backlog_total} open"
            for name, k in report.groups.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def send_digest(
    session: Session, mailer: Any, settings: Settings, now: datetime, *, kind: str | None = None
) -> OutboxItem | None:
    """Queue the digest for the period ending `now`; None when it was queued before (or no
    one is configured to get it). `kind` overrides `[report] digest` (`--digest-now`)."""
    cfg = settings.report
    kind = kind or cfg.digest
    if kind == "off" or not cfg.digest_to:
        return None
    since, until = digest_period(kind, now)
    report = build_report(session, since=since, until=until, by=cfg.digest_by, calendar=default_calendar(settings))
    text = headline(report)
    attachments: tuple[tuple[str, str, bytes], ...] = ()
    try:
        page = render_html(report, title=f"{settings.desk.name}: {kind} report")
        attachments = ((f"report-{until:%Y-%m-%d}.html", "text/html", page.encode("utf-8")),)
    except ChartsUnavailable:
        text += f"\n(The HTML report is not attached: {INSTALL_HINT} on the desk's host.)\n"
    key = f"report-digest:{kind}:{until:%Y-%m-%dT%H:%M}"
    sender = mailer.support_address()
    mail = OutgoingMail(
        from_addr=sender,
        from_name=settings.outbound.from_name or settings.desk.name,
        to=cfg.digest_to[:1],
        cc=cfg.digest_to[1:],
        subject=f"{settings.desk.name}: {kind} report {until:%Y-%m-%d}",
        text=text,
        message_id=f"digest.{outbox.nonce_for(key)}@{sender.rpartition('@')[2]}",
        automatic=True,
        loop_value=mailer.loop_value,
        attachments=attachments,
    )
    facts = outbox.MessageFacts(kind="auto", text=text, internal=True)
    return outbox.enqueue(
        session,
        key=key,
        ticket_number=None,
        mail=mail,
        template="report_digest",
        automatic=True,
        now=now,
        policy=mailer.policy,
        signer=mailer.signer,
        facts=facts,
    )


__all__ = ["PERIODS", "digest_period", "headline", "send_digest"]
