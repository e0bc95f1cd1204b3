"""The Prometheus endpoint (`[metrics] listen`): what the daemon is doing, for a scraper.

Owns the metric names and the HTTP listener. Almost everything is read live at scrape time
by one custom collector (`DeskCollector`) from the state that already exists — the worker's
and intake's figures, the spool folders, the outbox rows in the database, the IMAP pollers —
so a figure is never wrong because another process (`maildesk inject`, `maildesk outbox
retry`, another node) changed the thing it counts. The one real instrument is the latency
histogram, which only the worker can observe.

Names (all prefixed `maildesk_`):
- `messages_received_total{source}`  spool entries this daemon's worker took to their end
  (stored, failed or quarantined), by who spooled them: smtp, imap, inject, import
- `smtp_replies_total{reply}`       SMTP DATA answers: accepted (250), tempfailed (451), and
  RCPT refusals (refused, 550)
- `spool_entries{state}`            entries per spool folder (incoming, active, failed,
  quarantine, discarded) and records still in the intake journal (journal)
- `spool_oldest_seconds`            how long the oldest unprocessed entry has waited
- `pipeline_latency_seconds`        histogram: spooled (the 250 / the IMAP fetch) → committed
- `outbox_rows{state}`              outgoing mail not sent: queued, sending, failed, held
- `outbox_sent_total`, `outbox_deferred_total`, `outbox_failed_total`  this daemon's sender
- `sla_warnings_total{kind}`, `sla_breaches_total{kind}`  acted on by this daemon's SLA sweep
- `imap_seconds_since_success{mailbox}`, `imap_connected{mailbox}`,
  `imap_pending{mailbox,folder}` (messages in the folder not yet fetched)
- `errors_total{stage}`             prepare, a pipeline stage, commit, database, smtp,
  outbox, sla, imap (connection and folder errors)
- `database_up`, `config_problems{part}` (rules, templates, config), `up`

Must not: decide anything, or change any state while a scrape reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

log = logging.getLogger("maildesk.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
SOURCES = ("smtp", "imap", "inject", "import")
SLA_KINDS = ("first_response", "next_response", "resolution")
SPOOL_STATES = ("incoming", "active", "failed", "quarantine", "discarded", "journal")


class DeskState(Protocol):
    """What the collector reads (the App provides it; tests may give a stand-in)."""

    def metric_facts(self) -> MetricFacts: ...


@dataclass
class MetricFacts:
    """A snapshot of the live state, gathered by the App for one scrape."""

    received: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    smtp: dict[str, int] = field(default_factory=dict)  # accepted, tempfailed, refused
    spool: dict[str, int] = field(default_factory=dict)
    spool_oldest_seconds: float | None = None
    outbox: dict[str, int] | None = None  # None: the database did not answer
    outbox_totals: dict[str, int] = field(default_factory=dict)  # sent, deferred, failed
    sla: dict[str, dict[str, int]] = field(default_factory=dict)  # warning|breach -> kind -> n
    imap: list[dict[str, Any]] = field(default_factory=list)  # MailboxPoller.status()
    problems: dict[str, int] = field(default_factory=dict)  # rules|templates|config -> count
    started_at: float = 0.0


class DeskCollector(Collector):
    """One scrape: one `metric_facts()` call, turned into metric families."""

    def __init__(self, facts: Callable[[], MetricFacts]) -> None:
        self._facts = facts

    def describe(self) -> list[Metric]:
        return []  # unchecked: the families depend on the live state

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        try:
            f = self._facts()
        except Exception:  # noqa: BLE001 - a scrape shows `up 0` rather than an HTTP 500
            log.exception("gathering the metrics failed")
            yield GaugeMetricFamily("maildesk_up", "1 when the daemon could gather its figures", value=0)
            return
        yield GaugeMetricFamily("maildesk_up", "1 when the daemon could gather its figures", value=1)

        received = CounterMetricFamily(
            "maildesk_messages_received",
            "Spool entries the worker took to their end (stored, failed or quarantined), by source",
            labels=["source"],
        )
        for source in sorted(set(SOURCES) | set(f.received)):
            received.add_metric([source], f.received.get(source, 0))
        yield received

        smtp = CounterMetricFamily("maildesk_smtp_replies", "SMTP answers by kind", labels=["reply"])
        for reply in ("accepted", "tempfailed", "refused"):
            smtp.add_metric([reply], f.smtp.get(reply, 0))
        yield smtp

        spool = GaugeMetricFamily("maildesk_spool_entries", "Spool entries per state folder", labels=["state"])
        for state in SPOOL_STATES:
            spool.add_metric([state], f.spool.get(state, 0))
        yield spool
        yield GaugeMetricFamily(
            "maildesk_spool_oldest_seconds",
            "Seconds the oldest unprocessed spool entry has waited (0: none)",
            value=f.spool_oldest_seconds or 0.0,
        )

        yield GaugeMetricFamily(
            "maildesk_database_up", "1 when the database answered this scrape", value=0 if f.outbox is None else 1
        )
        if f.outbox is not None:
            outbox = GaugeMetricFamily("maildesk_outbox_rows", "Outgoing mail not sent, per state", labels=["state"])
            for state, n in sorted(f.outbox.items()):
                outbox.add_metric([state], n)
            yield outbox
        for key, text in (
            ("sent", "Mails this daemon's sender delivered"),
            ("deferred", "Delivery attempts of this daemon's sender that will be retried"),
            ("failed", "Mails this daemon's sender gave up on"),
        ):
            yield CounterMetricFamily(f"maildesk_outbox_{key}", text, value=f.outbox_totals.get(key, 0))

        for action, name in (("warning", "maildesk_sla_warnings"), ("breach", "maildesk_sla_breaches")):
            family = CounterMetricFamily(name, f"SLA {action}s acted on by this daemon's sweep", labels=["kind"])
            for kind in sorted(set(f.sla.get(action, {})) | set(SLA_KINDS)):
                family.add_metric([kind], f.sla.get(action, {}).get(kind, 0))
            yield family

        since = GaugeMetricFamily(
            "maildesk_imap_seconds_since_success",
            "Seconds since the mailbox was last read successfully (since the start when never)",
            labels=["mailbox"],
        )
        connected = GaugeMetricFamily("maildesk_imap_connected", "1 when connected", labels=["mailbox"])
        pending = GaugeMetricFamily(
            "maildesk_imap_pending", "Messages in the folder not fetched yet", labels=["mailbox", "folder"]
        )
        for box in f.imap:
            last = box.get("last_success") or f.started_at
            since.add_metric([box["name"]], max(0.0, now - float(last)))
            connected.add_metric([box["name"]], 1 if box.get("connected") else 0)
            for folder, state in (box.get("folders") or {}).items():
                pending.add_metric([box["name"], folder], state.get("pending") or 0)
        yield since
        yield connected
        yield pending

        errors = CounterMetricFamily("maildesk_errors", "Errors by where they happened", labels=["stage"])
        for stage, n in sorted(f.errors.items()):
            errors.add_metric([stage], n)
        yield errors

        problems = GaugeMetricFamily(
            "maildesk_config_problems",
            "Problems in the last reload of an edited file (the last good version stays in force)",
            labels=["part"],
        )
        for part in ("config", "rules", "templates"):
            problems.add_metric([part], f.problems.get(part, 0))
        yield problems


class MetricsEndpoint:
    """The registry (collector + latency histogram) and, once started, its HTTP listener."""

    def __init__(self, facts: Callable[[], MetricFacts]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "maildesk_pipeline_latency_seconds",
            "Seconds from spooled (the SMTP 250, the IMAP fetch, inject) to committed in the database",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(DeskCollector(facts))
        self._server: Any = None
        self.listening: str | None = None
        self.error: str = ""

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def start(self, host: str, port: int) -> bool:
        """Listen on host:port. False (with `error` set and logged) when that is not possible:
        the daemon runs on without an endpoint and `status`/`health` say so."""
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            self.error = f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            log.error("metrics endpoint: %s", self.error)
            return False
        bound = self._server.server_address
        self.listening = f"[{bound[0]}]:{bound[1]}" if ":" in str(bound[0]) else f"{bound[0]}:{bound[1]}"
        log.info("metrics endpoint on http://%s/metrics", self.listening)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
