"""Running maildesk as a service: `maildesk --version`, `maildesk health`, `maildesk db upgrade`
and `maildesk db backup FILE`, plus the database facts `maildesk status` shows.

Thin like `cli.py`: gather facts (status.json, spool depths, the database, free disk space),
judge them with `judge` (plain data in, a verdict out), print. `register(app)` adds the
commands and the `--version` option to the main Typer app.

Exit codes of `health`, for supervisors and monitoring: 0 healthy, 1 degraded (the desk works,
something needs a look), 2 down (mail is not being processed).

Must not: change anything in the database except through `db upgrade`, or decide about mail.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer

from maildesk.commands.common import EX_CONFIG, EX_TEMPFAIL, ConfigOpt, JsonOpt, console, err
from maildesk.config import Settings
from maildesk.errors import ConfigError, MaildeskError

HEALTHY, DEGRADED, DOWN = 0, 1, 2
STATES = {HEALTHY: "healthy", DEGRADED: "degraded", DOWN: "down"}
NOT_INITIALISED = "not initialised yet: `maildesk run`, `maildesk process` or `maildesk db upgrade` creates the schema"


def package_version() -> str:
    try:
        return version("maildesk")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _version_option(value: bool) -> None:
    if value:
        print(f"maildesk {package_version()}")
        raise typer.Exit()


def main_options(
    show_version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_version_option, help="Print the version and exit."),
    ] = False,
) -> None:
    pass


# Facts ----------------------------------------------------------------------------------
def _settings(config: Path | None) -> Settings:
    from maildesk.config import load_settings

    try:
        return load_settings(config)
    except ConfigError as exc:
        err.print(f"config error: {exc}", markup=False, style="red")
        raise typer.Exit(EX_CONFIG) from exc


def _store(settings: Settings) -> Any:
    from maildesk.store.db import Store

    try:
        return Store(settings.database_url)
    except ConfigError as exc:  # e.g. PostgreSQL configured without its driver
        err.print(f"config error: {exc}", markup=False, style="red")
        raise typer.Exit(EX_CONFIG) from exc


def database_facts(settings: Settings) -> dict[str, Any]:
    """Whether the database answers, its schema revision and (once initialised) its counts.

    Never raises: a fresh data folder gives `initialised: False` with a note, an unreachable
    database (or a missing driver) gives `reachable: False` with the error."""
    from maildesk.store import queries
    from maildesk.store.db import Store

    try:
        store = Store(settings.database_url)
    except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL configured without its driver
        return {"reachable": False, "error": str(exc).splitlines()[0][:300]}
    try:
        store.check()
        revision, head = store.revision(), store.head_revision()
        data: dict[str, Any] = {"backend": store.backend, "reachable": True, "initialised": revision is not None}
        data.update(revision=revision, head=head)
        if revision is None:
            data["note"] = NOT_INITIALISED
            return data
        with store.reader() as session:
            data.update(queries.counts(session))
            data["held"] = held_automatic(session)
            data["outbox_oldest_due_seconds"] = outbox_oldest_due(session)
        return data
    except Exception as exc:  # noqa: BLE001
        return {"reachable": False, "error": str(exc).splitlines()[0][:300]}
    finally:
        store.dispose()


def outbox_oldest_due(session: Any) -> float | None:
    """Seconds the oldest due outbox row has waited to be sent (None: nothing due)."""
    from maildesk.clock import utcnow
    from maildesk.store import outbox_queries

    due, now = outbox_queries.next_due(session), utcnow()
    if due is None:
        return None
    if due.tzinfo is None:  # SQLite keeps no offset; times are stored in UTC
        due = due.replace(tzinfo=now.tzinfo)
    age = (now - due).total_seconds()
    return round(age, 3) if age >= 0 else None


def held_automatic(session: Any) -> dict[str, dict[str, int]]:
    """Automatic mail held by the limits, and mail stored without a new ticket by the
    new-ticket limits, in the last hour and day, per limit (`status`)."""
    from datetime import timedelta

    from maildesk.clock import utcnow
    from maildesk.rules.limits import summarize_holds
    from maildesk.store import outbox_queries

    now = utcnow()
    since = now - timedelta(days=1)
    held = outbox_queries.held_automatic(session, since) + outbox_queries.held_new_tickets(session, since)
    return summarize_holds(held, now)


def _spool_facts(settings: Settings) -> dict[str, Any]:
    from maildesk.app import spool_oldest_age
    from maildesk.spool.files import Spool

    spool = Spool(settings.spool_path).ensure()
    usage = shutil.disk_usage(settings.spool_path)
    depths = spool.depths()  # drains the journal first, so the age below sees its records
    return {
        "depths": depths,
        "oldest_seconds": spool_oldest_age(spool),
        "disk_free": usage.free,
        "disk_total": usage.total,
    }


@dataclass
class Verdict:
    code: int = HEALTHY
    found: list[tuple[int, str]] = field(default_factory=list)

    def add(self, code: int, reason: str) -> None:
        self.code = max(self.code, code)
        self.found.append((code, reason))

    @property
    def state(self) -> str:
        return STATES[self.code]

    @property
    def reasons(self) -> list[str]:
        """Each finding as `state: reason`, the worst first."""
        ordered = sorted(self.found, key=lambda item: -item[0])
        return [f"{STATES[code]}: {reason}" for code, reason in ordered]

    def line(self) -> str:
        if not self.found:
            return "healthy: daemon running, database reachable, nothing parked"
        return "; ".join(self.reasons)


TEMPFAIL_RECENT = 600.0  # seconds: a 451 this recent is still news for `status` and `health`


def intake_state(
    daemon: dict[str, Any] | None,
    database: dict[str, Any],
    spool: dict[str, Any],
    max_message_size: int,
    now: float | None = None,
) -> tuple[bool, str]:
    """(accepting, why) — whether intake takes mail now and, in words, why it answers 451
    (SMTP) / exits 75 (`inject`) when it does not. Plain data in, no I/O.

    451 comes from the spool, never from the database: with the database unreachable, mail
    is still accepted into the spool and waits there (said so here)."""
    import time

    now = time.time() if now is None else now
    free = spool.get("disk_free")
    if free is not None and max_message_size > 0 and free < max_message_size:
        return False, (
            f"answers 451: the spool file system has {free // 1024} KiB free, less than one message of the size "
            f"limit ({max_message_size // 1024} KiB, smtp.max_message_size); free space or move desk.data_dir"
        )
    last = ((daemon or {}).get("intake") or {}).get("last_tempfail")
    if daemon and daemon.get("running") and last and now - float(last.get("at", 0)) < TEMPFAIL_RECENT:
        ago = max(0, int(now - float(last["at"])))
        return False, f"answered 451 {ago} s ago: {last.get('reason')}"
    if not database.get("reachable"):
        return True, (
            "accepting into the spool; the database is unreachable, so mail waits there until it answers "
            f"({database.get('error', 'no answer')})"
        )
    if daemon is None or not daemon.get("running"):
        return True, "no daemon: `maildesk inject` still spools; SMTP is not listening"
    return True, "accepting"


def judge(
    daemon: dict[str, Any] | None,
    database: dict[str, Any],
    spool: dict[str, Any],
    min_free_percent: float,
    max_message_size: int = 0,
) -> Verdict:
    """The health verdict from the facts (plain data; no I/O)."""
    v = Verdict()
    accepting, why = intake_state(daemon, database, spool, max_message_size)
    if not accepting:
        v.add(DOWN if why.startswith("answers 451") else DEGRADED, f"intake {why}")
    if not database.get("reachable"):
        v.add(DOWN, f"database unreachable ({database.get('error', 'no answer')})")
    if daemon is None:
        v.add(DOWN, "daemon not running (no status.json: it never ran in this data folder)")
    elif not daemon.get("running"):
        v.add(DOWN, "daemon not running (status.json is stale or its process is gone)")
    else:
        worker = daemon.get("worker") or {}
        if worker.get("database_unavailable_since"):
            v.add(DEGRADED, f"the daemon cannot use the database ({worker.get('last_error') or 'unavailable'})")
        rule_errors = (daemon.get("rules") or {}).get("errors") or []
        if rule_errors:
            v.add(DEGRADED, f"rules file has errors, the previous rules stay in force ({rule_errors[0]})")
        reload = daemon.get("reload") or {}
        if reload.get("config_errors"):
            v.add(DEGRADED, f"config file has errors, the running settings stay ({reload['config_errors'][0]})")
        if reload.get("template_problems"):
            v.add(
                DEGRADED,
                f"{len(reload['template_problems'])} template problem(s), mail falls back to the built-in "
                f"templates ({reload['template_problems'][0]})",
            )
        metrics_error = (daemon.get("metrics") or {}).get("error")
        if metrics_error:
            v.add(DEGRADED, f"metrics endpoint not serving: {metrics_error}")
    if database.get("reachable") and not database.get("initialised"):
        v.add(DEGRADED, "database not initialised yet")
    elif database.get("reachable") and database.get("revision") != database.get("head"):
        v.add(
            DEGRADED,
            f"schema at {database.get('revision')}, expected {database.get('head')}: run `maildesk db upgrade`",
        )
    failed_out = (database.get("outbox") or {}).get("failed", 0)
    if failed_out:
        v.add(DEGRADED, f"{failed_out} outgoing mail failed in the outbox")
    depths = spool.get("depths", {})
    parked = {state: depths.get(state, 0) for state in ("failed", "quarantine") if depths.get(state, 0)}
    if parked:
        what = ", ".join(f"{n} {state}" for state, n in parked.items())
        v.add(DEGRADED, f"spool entries need a look ({what}): `maildesk spool list`")
    total = spool.get("disk_total") or 0
    free_percent = 100.0 * spool.get("disk_free", 0) / total if total else 100.0
    if free_percent < min_free_percent:
        v.add(DEGRADED, f"spool file system nearly full ({free_percent:.1f}% free)")
    return v


# Commands -------------------------------------------------------------------------------
def health(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    min_free_percent: Annotated[
        float,
        typer.Option("--min-free-percent", help="Degraded when the spool file system has less free space.", min=0),
    ] = 5.0,
) -> None:
    """Is the desk well? One line and an exit code: 0 healthy, 1 degraded, 2 down.

    Down: the database is unreachable, the daemon is not running (per status.json), or the
    spool file system has less room than one message of the size limit (intake answers 451).
    Degraded: failed or quarantined spool entries, intake answered 451 in the last ten
    minutes, a rules, template or config edit with errors, the daemon cannot use the
    database, failed outgoing mail, the spool file system nearly full, the metrics endpoint
    cannot listen.
    Example (a systemd or Docker health check): `maildesk health --config /srv/maildesk/maildesk.toml`
    """
    from maildesk.app import read_daemon_status

    settings = _settings(config)
    daemon = read_daemon_status(settings)
    database = database_facts(settings)
    spool = _spool_facts(settings)
    verdict = judge(daemon, database, spool, min_free_percent, settings.smtp.max_message_size)
    if as_json:
        waiting = {
            "spool_oldest_seconds": spool.get("oldest_seconds"),
            "outbox_oldest_due_seconds": database.get("outbox_oldest_due_seconds"),
        }
        print(
            json.dumps({"status": verdict.state, "code": verdict.code, "reasons": verdict.reasons, "waiting": waiting})
        )
    else:
        print(verdict.line())
    raise typer.Exit(verdict.code)


def db_upgrade(config: ConfigOpt = None) -> None:
    """Bring the database schema to this version's newest revision and print it.

    Example (after installing a new version, before restarting): `maildesk db upgrade`
    """
    from maildesk.app import App

    settings = _settings(config)
    _store(settings).dispose()  # a clear exit when the driver is missing
    desk = App(settings)
    try:
        desk.migrate()
        revision = desk.store.revision()
    except Exception as exc:  # noqa: BLE001
        err.print(f"cannot upgrade: {str(exc).splitlines()[0]}", markup=False, style="red")
        raise typer.Exit(EX_TEMPFAIL) from exc
    finally:
        desk.store.dispose()
    console.print(f"database ({desk.store.backend}) at revision {revision}", markup=False, highlight=False)


def db_backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup.")],
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE when it exists.")] = False,
) -> None:
    """Copy the whole database to FILE while the desk keeps running.

    SQLite: a consistent copy through SQLite's online backup API (a database file; restore
    by putting it in place of maildesk.db with the daemon stopped). PostgreSQL: `pg_dump
    --format=custom` (restore with `pg_restore`). Example: `maildesk db backup /backup/desk-$(date +%F).db`
    """
    settings = _settings(config)
    if file.exists() and not force:
        err.print(f"{file} exists; give --force to overwrite it", markup=False, style="red")
        raise typer.Exit(1)
    store = _store(settings)
    try:
        store.backup(file)
    except MaildeskError as exc:
        err.print(f"cannot back up: {exc}", markup=False, style="red")
        raise typer.Exit(1) from exc
    except Exception as exc:  # noqa: BLE001
        err.print(f"cannot back up: {str(exc).splitlines()[0]}", markup=False, style="red")
        raise typer.Exit(EX_TEMPFAIL) from exc
    finally:
        store.dispose()
    console.print(f"backed up the {store.backend} database to {file}", markup=False, highlight=False)


db_app = typer.Typer(
    help="The database: schema upgrades and backups. Example: `maildesk db backup /backup/desk.db`",
    no_args_is_help=True,
)
db_app.command("upgrade")(db_upgrade)
db_app.command("backup")(db_backup)


def render_unit(executable: str, config: str, user: str = "maildesk") -> str:
    """The shipped systemd unit (`maildesk/defaults/maildesk.service`) with paths filled in."""
    from importlib import resources

    text = resources.files("maildesk").joinpath("defaults", "maildesk.service").read_text(encoding="utf-8")
    text = text.replace("@MAILDESK@", executable).replace("@CONFIG@", config)
    return text.replace("User=maildesk", f"User={user}").replace("Group=maildesk", f"Group={user}")


def _installed_executable() -> str:
    import shutil as sh
    import sys

    beside = Path(sys.executable).parent / "maildesk"  # the virtual environment's own script
    if beside.is_file():
        return str(beside)
    found = sh.which("maildesk")
    return str(Path(found).resolve()) if found else f"{sys.executable} -m maildesk"


def systemd_unit(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The config file the service runs with (an absolute path).")
    ] = Path("/etc/maildesk/maildesk.toml"),
    user: Annotated[str, typer.Option("--user", help="The account the service runs as.")] = "maildesk",
) -> None:
    """Print a systemd unit for this installation (Type=notify, watchdog, reload, hardening).

    ExecStart is this installation's `maildesk`. Example:
    `maildesk systemd-unit --config /etc/maildesk/maildesk.toml > /etc/systemd/system/maildesk.service`
    """
    print(render_unit(_installed_executable(), str(config.absolute()), user), end="")
