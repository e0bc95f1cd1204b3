"""Composition root: builds maildesk from Settings and runs the daemon.

Owns start-up order and shutdown: intake starts before the database is needed (mail is
accepted into the spool even while the database is down), the worker recovers crashed
entries and waits for the database, SIGTERM stops intake first, then lets the worker finish
its current message. Nothing here makes decisions about mail.

Hand-offs wake, they do not poll (`maildesk.wakeup`): intake rings the worker after each
durable spool write, every commit that queued outbox rows rings the sender (the store's
commit hook), other processes reach the daemon through `<data_dir>/wake.sock`, and on
PostgreSQL the sender also LISTENs for other nodes' commits. The worker's and sender's
timeouts are only safety nets.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maildesk.clock import utcnow
from maildesk.config import Settings
from maildesk.errors import ConfigError, SpoolError
from maildesk.observe.metrics import MetricFacts, MetricsEndpoint
from maildesk.observe.systemd import Notifier
from maildesk.observe.watch import FileWatcher
from maildesk.pipeline.context import PipelineDeps
from maildesk.pipeline.order import PIPELINE
from maildesk.pipeline.stages.route import make_rules_holder
from maildesk.pipeline.worker import Worker
from maildesk.rules.holder import RulesHolder
from maildesk.sanitize import clean_html
from maildesk.services import notify as notices
from maildesk.services.sla import SlaContext
from maildesk.spool import Spool
from maildesk.spool.files import CLAIM_DRAIN_LIMIT
from maildesk.store.db import Store
from maildesk.wakeup import Signal, Wakeups

if TYPE_CHECKING:  # imported when used: a CLI command that opens the App starts no intake
    from maildesk.ingest.imap import MailboxPoller
    from maildesk.ingest.smtp import SmtpIntake
    from maildesk.outbound.sender import OutboxSender

log = logging.getLogger("maildesk.app")


# The collector's thresholds once the daemon has started (see `settle_collector`).
GC_THRESHOLDS = (20_000, 20, 20)


def settle_collector() -> None:
    """After start-up (modules, mappers, compiled templates, locale data, the parser
    processes): collect once, move what survived into the collector's permanent generation
    (`gc.freeze`: it is never scanned again, and children forked later share its pages), and
    collect the young generation every 20,000 allocations instead of 700. The worker makes
    and drops many small objects per message, freed by their reference counts; scanning
    them for cycles that far more often was about 3% of its CPU (issue 17, 4 alternating
    runs of 2,000 mails). Garbage in cycles is still collected, only in larger rounds.
    For the daemon's own process (`App.settle_gc`), not for library use: frozen objects that
    later die in a cycle are never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class App:
    """Everything one maildesk node needs, built from Settings."""

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.clock = clock
        settings.data_path.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(settings.spool_path).ensure()
        self.store = Store(settings.database_url, echo=settings.database.echo)
        self.wakeups = Wakeups(settings.data_path)
        self._drain_wakeup = Signal()  # rung when SMTP intake made a group durable in the journal
        self.store.on_outbox_commit(self.wakeups.outbox_queued)  # after each commit that queued mail
        self.deps = PipelineDeps(settings, rules=make_rules_holder(settings), clock=clock, sanitize_html=clean_html)
        notices.install(self.store.session_info, lambda: self.deps.mailer)  # ticket changes tell agents
        self.worker = Worker(self.spool, self.store, self.deps, stages=PIPELINE, clock=clock, wakeup=self.wakeups.spool)
        from maildesk.sla.sweep import Actor

        self._sla_scheduler: Any = None
        self._sla_armed: datetime | None = None
        self._sla_lock = threading.Lock()
        self.store.session_info["sla"] = SlaContext(
            settings.sla, act=Actor(lambda: self.deps.mailer), rearm=self.rearm_sla
        )
        self._migrated = False
        self.smtp: SmtpIntake | None = None
        self.pollers: list[MailboxPoller] = []
        self.started_at = time.time()
        # This node's name as a lease holder: host and data folder (one node per folder), so a
        # node restarted after a crash takes its own IMAP leases back at once.
        self.node_id = f"{os.uname().nodename[:60]}:{str(settings.data_path.resolve())[-130:]}"
        self.rules_reloaded_at: float | None = None
        self.sender: OutboxSender | None = None
        self.notifier = Notifier()
        self.metrics: MetricsEndpoint | None = None
        self.sla_acted: dict[str, dict[str, int]] = {"warning": {}, "breach": {}}  # by this daemon's sweep
        self.errors: dict[str, int] = {}  # errors outside the worker (sla, ...), for the metrics
        self.template_problems: list[str] = []  # from the last check of the templates
        self.config_errors: list[str] = []  # the last reload of the config file failed with these
        self.restart_needed: list[str] = []  # sections edited in the file that only a restart applies
        self.config_reloaded_at: float | None = None
        self.log_override: dict[str, str] = {}  # `run --log-format/--log-level`: a reload keeps them
        self._reload_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self._reload_requested = threading.Event()
        self._worker_up = threading.Event()  # warmed up, or waiting for the database
        # `maildesk run` (a process of its own) sets it: `settle_collector` once warmed up.
        self.settle_gc = False

    # Assembly --------------------------------------------------------------------------
    def migrate(self) -> None:
        if not self._migrated:
            self.store.migrate()
            self.share_secret()
            self.sync_agents()
            self._migrated = True

    def share_secret(self) -> None:
        """On PostgreSQL, sign with the secret every node of the database shares
        (`store/nodes.py`): read (or first stored) when the node migrates, before the worker,
        the sender or the parser processes use it. A node whose secret differs is refused
        (ConfigError, with both fingerprints)."""
        if self.store.is_sqlite:
            return
        from maildesk.store.nodes import shared_secret

        secret = shared_secret(self.store, local=self.settings.secret, local_from=self.settings.secret_from)
        if secret != self.settings.secret:
            self.settings = replace(self.settings, secret=secret)
            self.deps.use_settings(self.settings)
            self.worker.preparer.settings = self.settings

    def sync_agents(self) -> None:
        """Copy the `[[agent]]` tables into the agents table; agents no longer listed become
        inactive (their history stays). Nothing changes when the config lists no agents."""
        if not self.settings.agents:
            return
        from maildesk.store.models import Agent
        from maildesk.store.routing_queries import all_agents

        with self.store.session() as session:
            rows = {a.email.lower(): a for a in all_agents(session)}
            for conf in self.settings.agents:
                row = rows.pop(conf.email, None)
                if row is None:
                    row = Agent(email=conf.email)
                    session.add(row)
                row.name, row.tiers, row.queues = conf.name, list(conf.tiers), list(conf.queues)
                row.signature, row.active = conf.signature, conf.active
            for row in rows.values():
                row.active = False

    # Rules -----------------------------------------------------------------------------
    @property
    def rules(self) -> RulesHolder:
        """The RulesHolder in force (rules.ruleset, rules.errors, rules.path)."""
        return self.deps.rules

    def reload(self, parts: set[str] | None = None) -> list[str]:
        """Re-read edited files now (SIGHUP: all of them; the file watcher: what changed).

        `rules`: a broken file keeps the rules in force. `templates`: every template is
        checked; a broken site template is never used (its mail falls back to the built-in
        one, see `TemplateRenderer.render`). `config`: the file is parsed again; when it is
        valid the reloadable part (`[log]`) is applied and the sections that need a restart
        are named; when it is not, the running settings stay. Problems are logged, written to
        `status.json` at once (so `status` and `health` show them within a second) and
        returned (the rules' errors)."""
        parts = {"rules", "templates", "config"} if parts is None else parts
        errors: list[str] = []
        with self._reload_lock:
            if "config" in parts:
                self._reload_config()
            if "rules" in parts:
                errors = self._reload_rules()
            if "templates" in parts:
                self._check_templates()
        self.write_status()
        return errors

    def request_reload(self) -> None:
        """From a signal handler: the main loop reloads within a quarter of a second."""
        self._reload_requested.set()

    def _reload_rules(self) -> list[str]:
        holder = self.rules
        if holder.path is None:
            return []
        errors: list[str] = holder.reload()
        if errors:
            for line in errors:
                log.error("rules reload failed, previous rules stay in force: %s", line)
        else:
            log.info("rules reloaded from %s: %d rules", holder.path, len(holder.ruleset.rules))
        self.rules_reloaded_at = time.time()
        return errors

    def _check_templates(self) -> None:
        problems = [str(p) for p in self.deps.mailer.renderer.check()]
        for problem in problems:
            log.error("template problem (mail that needs it uses the built-in template): %s", problem)
        if not problems and self.template_problems:
            log.info("templates checked: no problems")
        self.template_problems = problems

    def _reload_config(self) -> None:
        from maildesk.config import load_settings
        from maildesk.errors import ConfigError

        source = self.settings.source
        if not Path(source).is_file():
            return  # the embedded default: nothing to re-read
        self.config_reloaded_at = time.time()
        try:
            fresh = load_settings(source)
        except ConfigError as exc:
            self.config_errors = [str(exc)]
            log.error("config reload failed, the running settings stay: %s", exc)
            return
        self.config_errors = []
        self.restart_needed = changed_sections(self.settings, fresh, reloadable=RELOADABLE_SECTIONS)
        if fresh.log != self.settings.log:
            self.settings = replace_settings_log(self.settings, fresh.log)
            self.apply_logging()
            log.info("log settings applied: format %s, level %s", fresh.log.format, fresh.log.level)
        if self.restart_needed:
            log.warning(
                "config changed in %s: restart maildesk to apply (the running settings stay)",
                ", ".join(self.restart_needed),
            )

    def apply_logging(self) -> None:
        """Configure logging from `[log]`, with the command line's choices on top."""
        from maildesk.logctx import configure

        fmt = self.log_override.get("format") or self.settings.log.format
        level = self.log_override.get("level") or self.settings.log.level
        configure(fmt, level)

    def _watcher(self) -> FileWatcher:
        paths: dict[str, Path] = {}
        if self.rules.path is not None:
            paths["rules"] = self.rules.path
        if self.settings.desk.templates_dir:
            paths["templates"] = self.settings.resolve(self.settings.desk.templates_dir)
        if Path(self.settings.source).is_file():
            paths["config"] = Path(self.settings.source)
        return FileWatcher(paths, lambda changed: self.reload(changed), interval=self.watch_interval)

    watch_interval = 1.0

    # Batch -----------------------------------------------------------------------------
    def process(self) -> dict[str, Any]:
        """Work through everything spooled and return the worker's figures."""
        self.migrate()
        self.worker.recover()
        stats = self.worker.drain()
        figures = stats.figures()
        since = figures.pop("database_unavailable_since")
        return {**figures, "database_unavailable": since is not None}

    # Daemon ----------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, smtp_port: int | None = None, ready: threading.Event | None = None) -> None:
        """Run until `stop` is set. Intake first, then the worker."""
        # The watcher's first look is taken before intake opens (it starts later): an edit
        # made once the daemon answers on its port is a change to it, however long the
        # rest of the start takes (an edit in that window was missed).
        watcher = self._watcher()
        self.worker.recover()
        self.wakeups.listen()  # before intake: `inject` may wake us from now on
        self._start_metrics()
        threads: list[threading.Thread] = []
        imap_stop = threading.Event()  # intake's threads: the IMAP pollers and the journal drainer
        if self.settings.smtp.enabled:
            from maildesk.ingest.smtp import SmtpIntake

            self.smtp = SmtpIntake(self.settings, self.spool, port=smtp_port, on_spooled=self._smtp_spooled)
            self.smtp.start()
            drainer = threading.Thread(target=self._drain_loop, args=(imap_stop,), name="spool-drain", daemon=True)
            drainer.start()
            threads.append(drainer)
            log.info("SMTP intake listening on %s:%s", self.smtp.hostname, self.smtp.port)
        for mailbox in self.settings.imap:
            from maildesk.ingest.imap import MailboxPoller

            poller = MailboxPoller(
                mailbox,
                self.spool,
                self.settings.data_path / "imap-state",
                on_spooled=self.wakeups.spooled,
                lease=self.mailbox_lease(mailbox.lease_seconds),
            )
            self.pollers.append(poller)
            t = threading.Thread(target=poller.run_forever, args=(imap_stop,), name=f"imap-{mailbox.name}", daemon=True)
            t.start()
            threads.append(t)
        worker_stop = threading.Event()
        worker_thread = threading.Thread(target=self._worker_loop, args=(worker_stop,), name="worker", daemon=True)
        worker_thread.start()
        sender_thread = threading.Thread(target=self._sender_loop, args=(worker_stop,), name="outbox", daemon=True)
        sender_thread.start()
        listener = self.store.outbox_listener(self.wakeups.outbox.notify)  # other nodes' mail (PostgreSQL)
        if listener is not None:
            listener.start()
        scheduler = self._scheduler()
        watcher.start()
        if ready is not None:
            ready.set()
        self._supervise(stop, worker_thread)
        log.info("stopping: intake first")
        self.notifier.stopping("stopping: intake first, then the current message")
        watcher.stop()
        scheduler.shutdown(wait=False)
        if self.smtp is not None:
            self.smtp.stop()
        imap_stop.set()
        for t in threads:
            t.join(timeout=30)
        worker_stop.set()
        self.wakeups.wake_all()  # end the waits now: they see worker_stop
        worker_thread.join(timeout=60)
        sender_thread.join(timeout=60)
        if listener is not None:
            listener.close()
        self.wakeups.close()
        if self.metrics is not None:
            self.metrics.stop()
        self.write_status()
        self.store.dispose()
        log.info("stopped")

    def _smtp_spooled(self) -> None:
        """A group of SMTP mail is durable in the intake journal: wake the drainer and the worker."""
        self._drain_wakeup.notify()
        self.wakeups.spooled()

    def _drain_loop(self, stop: threading.Event) -> None:
        """Turn the intake journal's records into incoming/ files on a thread of its own, as
        groups become durable. The worker's claim drains too when its listing of incoming/
        runs out (it always did: this thread only takes that writing and syncing off the
        worker's path, and its system calls run without the GIL while the worker works); a
        drain in either waits for one in the other (`Spool.drain_journal`'s lock)."""
        safety_net = self.settings.worker.safety_net_interval
        while not stop.is_set():
            self._drain_wakeup.wait(safety_net, stop)
            if stop.is_set():
                return
            try:
                drained = self.spool.drain_journal(limit=CLAIM_DRAIN_LIMIT)
            except SpoolError as exc:  # the records stay in the journal; the worker's claim tries too
                log.error("journal drain: %s", exc)
                stop.wait(1.0)
                continue
            except Exception:  # noqa: BLE001 - the thread never dies for one failure
                log.exception("journal drain failed")
                stop.wait(1.0)
                continue
            if drained:
                self.wakeups.spooled()  # the worker may have listed incoming/ before these were there

    def _supervise(self, stop: threading.Event, worker_thread: threading.Thread) -> None:
        """The main loop: status.json every second, reloads asked for by SIGHUP, and systemd's
        READY=1 (once intake accepts and the worker runs), STATUS= and WATCHDOG=1 (at half
        the watchdog interval, and only while the worker thread is alive)."""
        notifier = self.notifier
        ping_every = notifier.watchdog_interval
        last_ping = last_status = 0.0
        told_ready = False
        shown = ""
        while not stop.wait(0.25):
            now = time.monotonic()
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                notifier.reloading()
                self.reload()
                notifier.reloaded(self.one_line_status())
            if not told_ready and self._worker_up.is_set():
                told_ready = True
                shown = self.one_line_status()
                notifier.ready(shown)
                log.info("ready: %s", shown)
            if ping_every is not None and worker_thread.is_alive() and now - last_ping >= ping_every:
                notifier.watchdog()
                last_ping = now
            if now - last_status >= 1.0:
                self.write_status()
                last_status = now
                if told_ready:
                    line = self.one_line_status()
                    if line != shown:
                        notifier.status(line)
                        shown = line

    def one_line_status(self) -> str:
        """systemd's STATUS= line: where intake listens, what the worker did, what is wrong."""
        parts = []
        if self.smtp is not None:
            parts.append(f"SMTP on {self.smtp.hostname}:{self.smtp.port}")
        if self.pollers:
            parts.append(f"{len(self.pollers)} IMAP mailbox(es)")
        stats = self.worker.stats
        parts.append(f"{stats.processed} processed")
        if stats.db_unavailable_since is not None:
            parts.append("waiting for the database (mail is spooled)")
        problems = len(self.rules.errors) + len(self.template_problems) + len(self.config_errors)
        if problems:
            parts.append(f"{problems} problem(s) in edited files: maildesk status")
        return "; ".join(parts)

    def _start_metrics(self) -> None:
        address = self.settings.metrics.address
        if address is None:
            log.info('metrics endpoint off (set [metrics] listen = "127.0.0.1:9108" to serve /metrics)')
            return
        self.metrics = MetricsEndpoint(self.metric_facts)
        self.worker.stats.latency_observer = self.metrics.observe_latency
        self.metrics.start(*address)

    def metric_facts(self) -> MetricFacts:
        """The live state one scrape reads (`maildesk.observe.metrics`)."""
        from maildesk.store.outbox_queries import unsent_counts

        stats = self.worker.stats
        outbox: dict[str, int] | None = None
        if self._migrated:
            try:
                with self.store.reader() as session:
                    outbox = unsent_counts(session)
            except Exception as exc:  # noqa: BLE001 - the scrape says database_up 0
                log.debug("metrics: outbox counts failed: %s", exc)
        handler = self.smtp.handler if self.smtp is not None else None
        totals = self.sender.totals if self.sender is not None else None
        errors = dict(stats.errors)
        for stage, n in self.errors.items():
            errors[stage] = errors.get(stage, 0) + n
        imap = [p.status() for p in self.pollers]
        imap_errors = sum(int(box.get("errors") or 0) for box in imap)
        if imap_errors:
            errors["imap"] = errors.get("imap", 0) + imap_errors
        if handler is not None and handler.tempfailed:
            errors["smtp"] = errors.get("smtp", 0) + handler.tempfailed
        if totals is not None and (totals.deferred or totals.failed):
            errors["outbox"] = errors.get("outbox", 0) + totals.deferred + totals.failed
        return MetricFacts(
            received=dict(stats.received),
            errors=errors,
            smtp={
                "accepted": handler.accepted if handler else 0,
                "tempfailed": handler.tempfailed if handler else 0,
                "refused": handler.refused if handler else 0,
            },
            spool=self.spool.depths(drain=False),
            spool_oldest_seconds=spool_oldest_age(self.spool),
            outbox=outbox,
            outbox_totals={"sent": totals.sent, "deferred": totals.deferred, "failed": totals.failed}
            if totals is not None
            else {},
            sla={action: dict(kinds) for action, kinds in self.sla_acted.items()},
            imap=imap,
            problems={
                "rules": len(self.rules.errors),
                "templates": len(self.template_problems),
                "config": len(self.config_errors),
            },
            started_at=self.started_at,
        )

    def mailbox_lease(self, seconds: float) -> Any:
        """On PostgreSQL, the lease under which this node polls an IMAP mailbox (several
        nodes share the database; one polls each mailbox); None on SQLite (one node)."""
        if self.store.is_sqlite:
            return None
        from maildesk.store.nodes import StoreMailboxLease

        return StoreMailboxLease(self.store, self.node_id, seconds)

    def warm_up(self) -> None:
        """One-time work (mapper set-up, template compilation, locale data) done before the
        first message is claimed, so a crash or kill during start-up is never counted
        against a message's crash limit."""
        from maildesk.outbound.context import warm_locales
        from maildesk.store.queries import warm_up

        with self.store.reader() as session:
            warm_up(session)
        self._check_templates()
        warm_locales(self.settings.desk.locales)
        self.worker.preparer.warm()

    def _worker_loop(self, stop: threading.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                started = time.monotonic()
                self.migrate()
                self.warm_up()
                if self.settle_gc:
                    settle_collector()
                log.info("worker ready (migration and warm-up took %.0f ms)", (time.monotonic() - started) * 1000)
                self._worker_up.set()
                break
            except ConfigError as exc:  # e.g. this node's secret is not the one the other nodes share
                self.worker.stats.last_error = f"configuration: {exc}"
                log.error("cannot start processing: %s; mail is still spooled; retrying in %.1fs", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
            except Exception as exc:  # noqa: BLE001 - database down at start: keep spooling
                self._worker_up.set()  # running, and waiting for the database: intake takes mail
                self.worker.stats.db_unavailable_since = self.worker.stats.db_unavailable_since or time.time()
                self.worker.stats.last_error = f"database unavailable: {str(exc).splitlines()[0][:300]}"
                log.error("database not ready (%s); retrying in %.1fs", self.worker.stats.last_error, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        self.worker.run_forever(stop)

    def _scheduler(self) -> Any:
        """Timed work (APScheduler): the SLA sweep (at the next exact due time, re-armed by
        `rearm_sla`, and every 60 s as a safety net), hourly pruning of the automatic-mail
        log, and daily retention when `desk.retention_days` is set."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(
            self.prune_limit_log,
            "interval",
            hours=1,
            id="prune-limit-log",
            next_run_time=datetime.now(UTC) + timedelta(minutes=1),
            coalesce=True,
            max_instances=1,
        )
        scheduler.add_job(
            self.sla_sweep,
            "interval",
            seconds=60,
            id="sla-safety-net",
            next_run_time=datetime.now(UTC) + timedelta(seconds=5),
            coalesce=True,
            max_instances=1,
        )
        if self.settings.desk.retention_days > 0:
            scheduler.add_job(
                self.apply_retention,
                "interval",
                hours=24,
                id="retention",
                next_run_time=datetime.now(UTC) + timedelta(minutes=5),
                coalesce=True,
                max_instances=1,
            )
        if self.settings.report.digest != "off":  # the leads' KPI digest (maildesk/report/digest.py)
            from maildesk.report.digest import send_digest

            def digest() -> None:
                if self._migrated:
                    with self.store.session() as session:
                        send_digest(session, self.deps.mailer, self.settings, self.clock())

            weekly = {"day_of_week": "mon"} if self.settings.report.digest == "weekly" else {}
            scheduler.add_job(
                digest,
                "cron",
                hour=self.settings.report.digest_hour,
                timezone=self.settings.desk.timezone,
                id="report-digest",
                coalesce=True,
                max_instances=1,
                **weekly,
            )
        scheduler.start()
        self._sla_scheduler = scheduler
        return scheduler

    # SLA sweep ---------------------------------------------------------------------------
    def sla_sweep(self, now: datetime | None = None, *, dry_run: bool = False) -> Any:
        """Act on the SLA clocks due by `now` (default: the clock), then arm the next exact run."""
        if not self._migrated:
            return None
        from maildesk.sla.sweep import sweep
        from maildesk.store.sla_queries import next_due

        try:
            report = sweep(self.store, self.deps.mailer, now or self.clock(), dry_run=dry_run)
            with self.store.reader() as session:
                due = next_due(session)
        except Exception:  # noqa: BLE001 - timed work must not stop the daemon
            self.errors["sla"] = self.errors.get("sla", 0) + 1
            log.exception("SLA sweep failed; the safety net runs it again within a minute")
            return None
        if not dry_run:
            for action in report.actions:
                counts = self.sla_acted.get(str(action.get("action")))
                if counts is not None:
                    kind = str(action.get("kind", ""))
                    counts[kind] = counts.get(kind, 0) + 1
        with self._sla_lock:
            self._sla_armed = None
        if due is not None:
            self.rearm_sla(due)
        return report

    def rearm_sla(self, due: datetime) -> None:
        """Run the sweep at `due` (when earlier than the run already armed). Called after each
        sweep and whenever a clock changes in this process; the 60 s job is the safety net."""
        scheduler = self._sla_scheduler
        if scheduler is None:
            return
        with self._sla_lock:
            if self._sla_armed is not None and self._sla_armed <= due:
                return
            self._sla_armed = due
        run_at = max(due, datetime.now(UTC))
        try:
            scheduler.add_job(
                self.sla_sweep, "date", run_date=run_at, id="sla-next", replace_existing=True, max_instances=1
            )
        except Exception:  # noqa: BLE001 - scheduler shutting down
            log.debug("cannot arm the SLA sweep", exc_info=True)

    def prune_limit_log(self) -> None:
        """Hourly: drop automatic-mail log rows the limits no longer look at."""
        if not self._migrated:
            return
        from maildesk.store.outbox_queries import prune_automatic

        try:
            with self.store.session() as session:
                prune_automatic(session, self.clock())
        except Exception:  # noqa: BLE001 - timed work must not stop the daemon
            log.exception("pruning the automatic-mail log failed; it runs again in an hour")

    def apply_retention(self) -> dict[str, Any] | None:
        """Remove raw mail and attachments of tickets closed longer than the retention setting."""
        days = self.settings.desk.retention_days
        if days <= 0 or not self._migrated:
            return None
        from maildesk.services.customers import apply_retention

        try:
            with self.store.session() as session:
                report = apply_retention(session, days, self.clock())
        except Exception:  # noqa: BLE001 - timed work must not stop the daemon
            log.exception("retention failed; it runs again tomorrow")
            return None
        log.info("retention (%d days): %s", days, report)
        return report

    def _sender_loop(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._migrated:
            stop.wait(0.5)  # the worker migrates the schema first (and reads the shared secret)
        if not stop.is_set():
            from maildesk.outbound.sender import OutboxSender

            sender = OutboxSender(self.store, self.settings, clock=self.clock, wakeup=self.wakeups.outbox)
            self.sender = sender  # the metrics read its totals
            sender.run_forever(stop)

    # Status ----------------------------------------------------------------------------
    def status_snapshot(self) -> dict[str, Any]:
        stats = self.worker.stats
        return {
            "pid": os.getpid(),
            "updated_at": time.time(),
            "started_at": self.started_at,
            "smtp": {
                "listening": f"{self.smtp.hostname}:{self.smtp.port}" if self.smtp else None,
                "accepted": self.smtp.handler.accepted if self.smtp else 0,
                "refused": self.smtp.handler.refused if self.smtp else 0,
                "tempfailed": self.smtp.handler.tempfailed if self.smtp else 0,
            },
            "imap": [p.status() for p in self.pollers],
            "rules": {
                "file": str(self.rules.path) if self.rules.path else None,
                "rules": len(self.rules.ruleset.rules),
                "errors": list(self.rules.errors),
                "reloaded_at": self.rules_reloaded_at,
            },
            "worker": stats.figures(),
            "intake": {
                "last_tempfail": self.smtp.handler.last_tempfail if self.smtp else None,
            },
            "reload": {
                "config_errors": list(self.config_errors),
                "restart_needed": list(self.restart_needed),
                "config_reloaded_at": self.config_reloaded_at,
                "template_problems": list(self.template_problems),
            },
            "metrics": {
                "listen": self.settings.metrics.listen or None,
                "listening": self.metrics.listening if self.metrics else None,
                "error": self.metrics.error if self.metrics else "",
            },
            "waiting": {
                "spool_oldest_seconds": spool_oldest_age(self.spool),
                "wakeups": {
                    "spool": self.wakeups.spool.notified,
                    "outbox": self.wakeups.outbox.notified,
                    "socket": self.wakeups.listener.received if self.wakeups.listener else None,
                },
            },
        }

    def write_status(self) -> None:
        path = self.settings.data_path / "status.json"
        tmp = path.with_suffix(".tmp")
        with self._status_lock:  # the main loop and a reload (the file watcher) both write it
            try:
                tmp.write_text(json.dumps(self.status_snapshot(), indent=2, default=str))
                os.replace(tmp, path)
            except OSError as exc:
                log.warning("cannot write status file: %s", exc)


RELOADABLE_SECTIONS = frozenset({"log"})
_NOT_SECTIONS = frozenset({"source", "base_dir", "secret"})


def changed_sections(running: Settings, fresh: Settings, *, reloadable: frozenset[str]) -> list[str]:
    """The config sections that differ between the running settings and a fresh load and
    that only a restart applies (`[log]` applies at once)."""
    from dataclasses import fields

    return [
        f.name
        for f in fields(Settings)
        if f.name not in _NOT_SECTIONS
        and f.name not in reloadable
        and getattr(running, f.name) != getattr(fresh, f.name)
    ]


def replace_settings_log(settings: Settings, log_settings: Any) -> Settings:
    from dataclasses import replace

    return replace(settings, log=log_settings)


def spool_oldest_age(spool: Spool, now: float | None = None) -> float | None:
    """Seconds the oldest unprocessed spool entry (incoming/ or active/) has waited since
    it was received; None when there is none. Reads the names only (the id starts with
    the time it was spooled); records still in the SMTP journal are not counted (`status`
    drains the journal first)."""
    now = time.time() if now is None else now
    oldest: int | None = None
    for state in ("incoming", "active"):
        try:
            names = os.listdir(spool.dir(state))
        except OSError:
            continue
        for name in names:
            if name.endswith(".msg"):
                head = name.split("-", 1)[0]
                if head.isdigit() and (oldest is None or int(head) < oldest):
                    oldest = int(head)
    if oldest is None:
        return None
    return round(max(0.0, now - oldest / 1e9), 3)


def describers(store: Store | None = None, no_history: str = "no database given") -> list[Any]:
    """What `maildesk parse --json` adds to the parsed message: each stage's verdicts
    (threading looked up in `store`, read only, when given)."""
    from maildesk.pipeline.stages.screen import describe_screen
    from maildesk.pipeline.stages.thread import describe_threading

    def threading(msg: Any, settings: Settings) -> dict[str, Any]:
        return describe_threading(msg, settings, store, no_history)

    threading.__name__ = "describe_threading"
    return [describe_screen, threading]


def history_store(settings: Settings) -> tuple[Store | None, str]:
    """A Store to look threading up in for `maildesk parse`, or (None, why not). Never
    creates a database: a SQLite file that does not exist, a database never migrated or one
    that cannot be reached give None."""
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).exists():
            return None, "no database yet"
    try:
        store = Store(url)
    except Exception as exc:  # noqa: BLE001 - a missing driver or a bad URL: parse without history
        return None, f"database not usable: {str(exc).splitlines()[0][:200]}"
    try:
        if store.revision() is None:
            store.dispose()
            return None, "database not initialised"
    except Exception as exc:  # noqa: BLE001
        store.dispose()
        return None, f"database not reachable: {str(exc).splitlines()[0][:200]}"
    return store, ""


def read_daemon_status(settings: Settings) -> dict[str, Any] | None:
    path = Path(settings.data_path) / "status.json"
    if not path.exists():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except ValueError:
        return None
    pid = data.get("pid")
    alive = False
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
            alive = True
        except OSError:
            alive = False
    data["running"] = alive and time.time() - float(data.get("updated_at", 0)) < 30
    return data
