"""Settings: one TOML file, secrets from the environment, validated at start.

Owns the shape of `maildesk.toml` and its defaults. Every error names the key and what is
wrong. No other module reads the environment or the config file. Settings are plain frozen
dataclasses passed explicitly; there is no global config.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError

from maildesk.domain import SUBJECT_TAG_FORMAT, TIERS
from maildesk.errors import ConfigError
from maildesk.sla.policy import SlaSettings, parse_sla

CONFIG_ENV = "MAILDESK_CONFIG"
DEFAULT_CONFIG_NAME = "maildesk.toml"


@dataclass(frozen=True)
class DeskSettings:
    name: str = "Support"
    data_dir: str = "maildesk-data"
    support_addresses: tuple[str, ...] = ("support@localhost",)
    support_domains: tuple[str, ...] = ()
    timezone: str = "UTC"
    locale: str = "en"  # the default locale (also spelled `default_locale`)
    default_locale: str = ""
    # The languages the desk writes in: a customer's locale is set from their mail only to
    # one of these (`maildesk.language`); `templates check` wants every template in each.
    locales: tuple[str, ...] = ("en", "de", "fr", "es")
    secret_env: str = "MAILDESK_SECRET"
    subject_tag: str = SUBJECT_TAG_FORMAT
    reopen_days: int = 14
    rules_file: str = ""
    templates_dir: str = ""
    retention_days: int = 0
    note_addresses: tuple[str, ...] = ()  # agent mail to these (or their tokens) stays an internal note
    agent_forward_needs_dkim: bool = True  # an agent's forward opens a ticket only when authenticated
    trusted_authserv_ids: tuple[str, ...] = ()  # Authentication-Results from these MXs count for forwards


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    url_env: str = "MAILDESK_DATABASE_URL"
    echo: bool = False


@dataclass(frozen=True)
class SmtpSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2525
    max_message_size: int = 26_214_400
    tls_cert: str = ""
    tls_key: str = ""
    require_starttls: bool = False


@dataclass(frozen=True)
class ImapSettings:
    name: str = "imap"
    host: str = ""
    port: int = 993
    security: str = "ssl"  # ssl | starttls | none
    username: str = ""
    password_env: str = ""
    password: str = ""  # filled from password_env at load; never written in the file
    folders: tuple[str, ...] = ("INBOX",)
    after: str = "keyword"  # keyword | move
    keyword: str = "$MaildeskSpooled"
    move_to: str = "maildesk-done"
    batch_size: int = 100
    poll_interval: float = 60.0
    idle: bool = True
    timeout: float = 30.0
    # Several nodes on one PostgreSQL: one node polls this mailbox under a lease it renews every
    # third of this; when it dies another node takes over within about this many seconds.
    lease_seconds: float = 30.0


@dataclass(frozen=True)
class OutboundSettings:
    relay_host: str = ""
    relay_port: int = 587
    security: str = "starttls"  # starttls | ssl | none
    username: str = ""
    password_env: str = "MAILDESK_RELAY_PASSWORD"
    password: str = ""
    maildir: str = ""  # empty: <data_dir>/outgoing
    from_name: str = ""
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""
    # The sender is woken when a row is queued (maildesk.wakeup); this is only the safety
    # net: how long it waits at most before it looks at the outbox anyway.
    safety_net_interval: float = 5.0


@dataclass(frozen=True)
class WorkerSettings:
    max_attempts: int = 3
    poll_interval: float = 0.5  # no longer used: the worker is woken when mail is spooled
    parse_processes: int = -1
    # How long the worker waits at most before it looks at the spool without a wake-up
    # (a lost one, or mail put there by a program that does not send one).
    safety_net_interval: float = 5.0


@dataclass(frozen=True)
class LimitSettings:
    per_recipient_hour: int = 5
    per_recipient_day: int = 20
    per_ticket_day: int = 10
    global_hour: int = 1000  # first-contact recipients only (issue 16)
    per_domain_hour: int = 50  # first-contact recipients of one domain
    # Internal mail (notifications) to an active agent: its own hourly cap, not counted
    # against the ticket's or the customers' budgets. 0 = no limit.
    per_agent_hour: int = 60
    # New tickets (issue 16): beyond these, a sender's (or a domain's first-contact senders')
    # mail is stored without a ticket and without an acknowledgement. 0 = no limit.
    new_tickets_per_sender_hour: int = 20
    new_tickets_per_domain_hour: int = 200


LOG_FORMATS = ("plain", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LogSettings:
    """`[log]`: how the daemon logs (reloadable: SIGHUP or a change of the file applies it)."""

    format: str = "plain"  # plain | json (one object a line)
    level: str = "info"  # debug | info | warning | error


@dataclass(frozen=True)
class MetricsSettings:
    """`[metrics]`: the Prometheus endpoint of the daemon. Empty `listen`: no endpoint."""

    listen: str = ""  # "127.0.0.1:9108", "[::1]:9108"

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to listen on, or None when the endpoint is off."""
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


DIGESTS = ("off", "daily", "weekly")


@dataclass(frozen=True)
class ReportSettings:
    """`[report]`: the KPI digest mailed to leads (`maildesk report` needs no settings)."""

    digest: str = "off"  # off | daily | weekly
    digest_to: tuple[str, ...] = ()
    digest_by: str = "queue"  # queue | tier | agent | priority
    digest_hour: int = 7  # local hour (desk.timezone) the digest goes out; weekly: on Mondays


SURVEY_DELIVERY = ("inline", "separate")


@dataclass(frozen=True)
class SurveySettings:
    """`[survey]`: the resolution notice and the satisfaction survey (services/survey.py)."""

    notice: bool = True  # mail the customer the `resolved` notice when a ticket is resolved
    enabled: bool = True  # offer the 1-5 survey
    delivery: str = "inline"  # inline: inside the notice | separate: its own `survey` mail
    window_days: int = 28  # answers count this many days after the survey was sent
    low_rating: int = 2  # ratings up to this ask what went wrong and notify the assignee and lead
    keyword: str = "RATING"  # the word the links' prefilled body and the reply hint use


TEAM_TIERS = TIERS  # the tiers an agent may serve (maildesk.domain.Tier)
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class AgentSettings:
    """One `[[agent]]` table: a person who works tickets. Synced into the agents table at start."""

    email: str = ""
    name: str = ""
    tiers: tuple[str, ...] = ("L1",)
    queues: tuple[str, ...] = ()  # empty: every queue
    signature: str = ""
    active: bool = True


@dataclass(frozen=True)
class QueueSettings:
    """One `[[queue]]` table: a team's queue, optionally fed by its own support address."""

    name: str = ""
    address: str = ""  # mail to this support address starts in this queue (rules may still move it)
    description: str = ""


@dataclass(frozen=True)
class Settings:
    desk: DeskSettings = field(default_factory=DeskSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    imap: tuple[ImapSettings, ...] = ()
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    agents: tuple[AgentSettings, ...] = ()
    queues: tuple[QueueSettings, ...] = ()
    report: ReportSettings = field(default_factory=ReportSettings)
    survey: SurveySettings = field(default_factory=SurveySettings)
    sla: SlaSettings = field(default_factory=SlaSettings)  # [sla]: calendars and policies (sla/policy.py)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    source: str = "<embedded default>"
    base_dir: str = "."
    secret: str = ""
    # Where `secret` came from: "env" (desk.secret_env), "file" (<data_dir>/secret.key, SQLite),
    # "database" (PostgreSQL without secret_env: the App reads the secret shared by all nodes
    # from the database when it migrates; until then `secret` is this node's old secret.key,
    # or ""), "given" (set by code, e.g. tests).
    secret_from: str = "given"

    # Derived paths -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        path = Path(self.desk.data_dir)
        return path if path.is_absolute() else Path(self.base_dir) / path

    @property
    def spool_path(self) -> Path:
        return self.data_path / "spool"

    @property
    def outgoing_maildir(self) -> Path:
        if self.outbound.maildir:
            path = Path(self.outbound.maildir)
            return path if path.is_absolute() else Path(self.base_dir) / path
        return self.data_path / "outgoing"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_path / 'maildesk.db').resolve()}"

    @property
    def instance_id(self) -> str:
        """Stable id of this desk, written into our loop header on outgoing mail."""
        import hashlib

        return hashlib.sha256(("maildesk-loop:" + self.secret).encode()).hexdigest()[:20]

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def queue_for_address(self, address: str) -> str | None:
        """The `[[queue]]` whose `address` is this one (sub-addresses `local+x@` included)."""
        address = address.lower()
        local, _, domain = address.partition("@")
        base = local.split("+", 1)[0] + "@" + domain
        for queue in self.queues:
            if queue.address and queue.address in (address, base):
                return queue.name
        return None

    def is_support_address(self, address: str) -> bool:
        address = address.lower()
        base = address
        local, _, domain = address.partition("@")
        if "+" in local:
            base = local.split("+", 1)[0] + "@" + domain
        return (
            address in self.desk.support_addresses
            or base in self.desk.support_addresses
            or domain in self.desk.support_domains
        )


_SECTIONS: dict[str, type] = {
    "desk": DeskSettings,
    "database": DatabaseSettings,
    "smtp": SmtpSettings,
    "outbound": OutboundSettings,
    "worker": WorkerSettings,
    "limits": LimitSettings,
    "report": ReportSettings,
    "survey": SurveySettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
}


_TABLE_ARRAYS: dict[str, tuple[str, type]] = {"agent": ("agents", AgentSettings), "queue": ("queues", QueueSettings)}


def _coerce(section: str, cls: type, data: dict[str, Any]) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{section}] must be a table, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known or key == "password":
            raise ConfigError(
                f"{section}.{key}: unknown key (known: {', '.join(sorted(k for k in known if k != 'password'))})"
            )
        default = known[key].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{section}.{key}: must be true or false, got {value!r}")
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{section}.{key}: must be an integer, got {value!r}")
            if value < min(0, default):  # a negative default (-1) means "automatic"
                raise ConfigError(f"{section}.{key}: must not be negative, got {value}")
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{section}.{key}: must be a number, got {value!r}")
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise ConfigError(f"{section}.{key}: must be a string, got {value!r}")
        elif isinstance(default, tuple) or known[key].default_factory is not None:  # type: ignore[misc]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{section}.{key}: must be a list of strings, got {value!r}")
            value = tuple(value)
        values[key] = value
    return cls(**values)


def _desk_locales(desk: DeskSettings) -> DeskSettings:
    """`default_locale` (or the older `locale`) and `locales`, checked and in Babel's spelling
    (`de-AT` → `de_AT`); the default is always among the locales (first when added)."""

    def norm(key: str, value: str) -> str:
        try:
            return str(Locale.parse(value.strip().replace("-", "_")))
        except (UnknownLocaleError, ValueError, TypeError) as exc:
            raise ConfigError(f"desk.{key}: unknown locale {value!r} (e.g. en, de, fr_CA)") from exc

    if desk.default_locale and desk.locale not in ("en", desk.default_locale):
        raise ConfigError("desk.default_locale and desk.locale: give one of them (they are the same setting)")
    default = norm("default_locale" if desk.default_locale else "locale", desk.default_locale or desk.locale)
    if not desk.locales:
        raise ConfigError("desk.locales: name at least one locale")
    locales = tuple(dict.fromkeys(norm("locales", loc) for loc in desk.locales))
    if default not in locales:
        locales = (default, *locales)
    return replace(desk, locale=default, default_locale=default, locales=locales)


def _validate(settings: Settings) -> Settings:
    desk = settings.desk
    addrs = tuple(a.strip().lower() for a in desk.support_addresses)
    for a in addrs:
        if "@" not in a or a.startswith("@") or a.endswith("@"):
            raise ConfigError(f"desk.support_addresses: {a!r} is not an email address")
    if not addrs and not desk.support_domains:
        raise ConfigError("desk.support_addresses: at least one support address or domain is needed")
    if "{number}" not in desk.subject_tag:
        raise ConfigError("desk.subject_tag: must contain {number}")
    for key in ("new_tickets_per_sender_hour", "new_tickets_per_domain_hour", "per_agent_hour"):
        if getattr(settings.limits, key) < 0:
            raise ConfigError(f"limits.{key}: must be 0 (no limit) or more")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(desk.timezone)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"desk.timezone: unknown time zone {desk.timezone!r}") from exc
    desk = _desk_locales(desk)
    desk = replace(
        desk,
        support_addresses=addrs,
        support_domains=tuple(d.lower().lstrip("@") for d in desk.support_domains),
        note_addresses=tuple(a.strip().lower() for a in desk.note_addresses),
        trusted_authserv_ids=tuple(a.strip().lower() for a in desk.trusted_authserv_ids if a.strip()),
    )
    smtp = settings.smtp
    if not 0 < smtp.port < 65536:
        raise ConfigError(f"smtp.port: must be 1-65535, got {smtp.port}")
    if bool(smtp.tls_cert) != bool(smtp.tls_key):
        raise ConfigError("smtp.tls_cert and smtp.tls_key: give both or neither")
    for key in ("tls_cert", "tls_key"):
        value = getattr(smtp, key)
        if value and not settings.resolve(value).is_file():
            raise ConfigError(f"smtp.{key}: file not found: {value}")
    for key, value in (
        ("worker.safety_net_interval", settings.worker.safety_net_interval),
        ("outbound.safety_net_interval", settings.outbound.safety_net_interval),
    ):
        if not value > 0:
            raise ConfigError(f"{key}: must be a number of seconds above 0, got {value}")
    survey = settings.survey
    if survey.delivery not in SURVEY_DELIVERY:
        raise ConfigError(f"survey.delivery: must be inline or separate, got {survey.delivery!r}")
    if survey.low_rating > 4:
        raise ConfigError(f"survey.low_rating: must be 0 (off) to 4, got {survey.low_rating}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,19}", survey.keyword):
        raise ConfigError(f"survey.keyword: one word of letters and digits, got {survey.keyword!r}")
    out = settings.outbound
    if out.security not in {"starttls", "ssl", "none"}:
        raise ConfigError(f"outbound.security: must be starttls, ssl or none, got {out.security!r}")
    if out.relay_host and not 0 < out.relay_port < 65536:
        raise ConfigError(f"outbound.relay_port: must be 1-65535, got {out.relay_port}")
    if out.password_env and os.environ.get(out.password_env):
        out = replace(out, password=os.environ[out.password_env])
    elif out.relay_host and out.username:  # the relay logs in: without a password every mail would fail
        raise ConfigError(
            f"outbound.password_env: environment variable {out.password_env or '(unset)'} is empty"
            f" (outbound.username {out.username!r} logs in to {out.relay_host})"
        )
    if out.dkim_key_file and not settings.resolve(out.dkim_key_file).is_file():
        raise ConfigError(f"outbound.dkim_key_file: file not found: {out.dkim_key_file}")
    if settings.worker.parse_processes < -1 or settings.worker.parse_processes > 64:
        raise ConfigError(
            f"worker.parse_processes: must be -1 (automatic) or 0-64, got {settings.worker.parse_processes}"
        )
    db = settings.database
    if db.url_env and os.environ.get(db.url_env):
        db = replace(db, url=os.environ[db.url_env])
    if db.url and not db.url.startswith(("sqlite:", "postgresql")):
        raise ConfigError(f"database.url: must be sqlite:///PATH or postgresql+psycopg://…, got {db.url!r}")
    imaps = []
    names = set()
    for i, imap in enumerate(settings.imap):
        where = f"imap[{i}]"
        if not imap.host:
            raise ConfigError(f"{where}.host: required")
        if imap.security not in {"ssl", "starttls", "none"}:
            raise ConfigError(f"{where}.security: must be ssl, starttls or none, got {imap.security!r}")
        if imap.after not in {"keyword", "move"}:
            raise ConfigError(f"{where}.after: must be keyword or move, got {imap.after!r}")
        if not imap.username:
            raise ConfigError(f"{where}.username: required")
        password = os.environ.get(imap.password_env, "") if imap.password_env else ""
        if not password:
            raise ConfigError(f"{where}.password_env: environment variable {imap.password_env or '(unset)'} is empty")
        if imap.name in names:
            raise ConfigError(f"{where}.name: duplicate mailbox name {imap.name!r}")
        if imap.batch_size < 1:
            raise ConfigError(f"{where}.batch_size: must be at least 1")
        if not 1 <= imap.lease_seconds <= 3600:
            raise ConfigError(f"{where}.lease_seconds: must be between 1 and 3600, got {imap.lease_seconds}")
        names.add(imap.name)
        imaps.append(replace(imap, password=password))
    secret = os.environ.get(desk.secret_env, "") if desk.secret_env else ""
    settings = replace(settings, desk=desk, outbound=out, database=db, imap=tuple(imaps))
    settings = replace(settings, queues=_validate_queues(settings), agents=_validate_agents(settings))
    settings = replace(settings, report=_validate_report(settings.report))
    settings = replace(settings, log=_validate_log(settings.log))
    _validate_metrics(settings.metrics)
    if secret:
        return replace(settings, secret=secret, secret_from="env")
    if settings.database_url.startswith("postgresql"):
        # Several nodes may share this database: the secret is the one kept there (store/nodes.py).
        path = settings.data_path / "secret.key"
        local = path.read_text().strip() if path.is_file() else ""
        return replace(settings, secret=local, secret_from="database")
    return replace(settings, secret=_secret_from_data_dir(settings), secret_from="file")


def _validate_log(log: LogSettings) -> LogSettings:
    fmt, level = log.format.strip().lower(), log.level.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"log.format: must be {' or '.join(LOG_FORMATS)}, got {log.format!r}")
    if level not in LOG_LEVELS:
        raise ConfigError(f"log.level: must be {', '.join(LOG_LEVELS)}, got {log.level!r}")
    return replace(log, format=fmt, level=level)


def _validate_metrics(metrics: MetricsSettings) -> None:
    if not metrics.listen:
        return
    host, sep, port = metrics.listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f'metrics.listen: must be HOST:PORT (e.g. "127.0.0.1:9108") or empty (off), got {metrics.listen!r}'
        )
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(
            f'metrics.listen: write an IPv6 address in brackets, e.g. "[::1]:9108", got {metrics.listen!r}'
        )


def _validate_report(report: ReportSettings) -> ReportSettings:
    if report.digest not in DIGESTS:
        raise ConfigError(f"report.digest: must be {', '.join(DIGESTS)}, got {report.digest!r}")
    if report.digest_by not in ("queue", "tier", "agent", "priority"):
        raise ConfigError(f"report.digest_by: must be queue, tier, agent or priority, got {report.digest_by!r}")
    if report.digest_hour > 23:
        raise ConfigError(f"report.digest_hour: must be 0-23, got {report.digest_hour}")
    to = tuple(a.strip().lower() for a in report.digest_to)
    for address in to:
        if not _EMAIL.match(address):
            raise ConfigError(f"report.digest_to: {address!r} is not an email address")
    if report.digest != "off" and not to:
        raise ConfigError(f"report.digest_to: the {report.digest} digest needs at least one address")
    return replace(report, digest_to=to)


def _validate_queues(settings: Settings) -> tuple[QueueSettings, ...]:
    out: list[QueueSettings] = []
    seen: set[str] = set()
    for i, queue in enumerate(settings.queues):
        where = f"queue[{i}]"
        if not _QUEUE_NAME.match(queue.name):
            raise ConfigError(f"{where}.name: required; letters, digits, '_', '.', '-' (got {queue.name!r})")
        if queue.name in seen:
            raise ConfigError(f"{where}.name: duplicate queue name {queue.name!r}")
        seen.add(queue.name)
        address = queue.address.strip().lower()
        if address:
            if not _EMAIL.match(address):
                raise ConfigError(f"{where}.address: {queue.address!r} is not an email address")
            if not settings.is_support_address(address):
                raise ConfigError(f"{where}.address: {address} is not one of desk.support_addresses or support_domains")
            if any(q.address == address for q in out):
                raise ConfigError(f"{where}.address: {address} already feeds another queue")
        out.append(replace(queue, address=address))
    return tuple(out)


def _validate_agents(settings: Settings) -> tuple[AgentSettings, ...]:
    queues = {q.name for q in settings.queues}
    out: list[AgentSettings] = []
    seen: set[str] = set()
    for i, agent in enumerate(settings.agents):
        where = f"agent[{i}]"
        email = agent.email.strip().lower()
        if not _EMAIL.match(email):
            raise ConfigError(f"{where}.email: required, one email address (got {agent.email!r})")
        if email in seen:
            raise ConfigError(f"{where}.email: duplicate agent {email}")
        seen.add(email)
        tiers = tuple(t.upper() for t in agent.tiers)
        for tier in tiers:
            if tier not in TEAM_TIERS:
                raise ConfigError(f"{where}.tiers: unknown tier {tier!r}; use {', '.join(TEAM_TIERS)}")
        if not tiers:
            raise ConfigError(f"{where}.tiers: at least one of {', '.join(TEAM_TIERS)}")
        for name in agent.queues:
            if queues and name not in queues and name != "default":
                raise ConfigError(
                    f"{where}.queues: unknown queue {name!r} (the [[queue]] tables name: {', '.join(sorted(queues))})"
                )
        out.append(replace(agent, email=email, tiers=tiers))
    return tuple(out)


_EMAIL = re.compile(r"^[^\s@<>,;\"]+@[^\s@<>,;\"]+\.[^\s@<>,;\"]+$")


def _secret_from_data_dir(settings: Settings) -> str:
    """The signing secret kept in the data folder, created once with mode 0600.

    Several processes may start at once on a fresh folder (an MTA running `maildesk inject`
    for each of many messages): the secret is written to a file of its own and then linked
    into place, which succeeds for exactly one of them, so nobody ever reads a half-written
    key and everybody ends up with the same one."""
    path = settings.data_path / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".secret.key.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # atomic: fails when another process was first
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"desk.secret_env: the secret file {path} is empty; remove it to have a new one made")
    return value


def parse_settings(data: dict[str, Any], source: str = "<dict>", base_dir: str = ".") -> Settings:
    """Build validated Settings from a TOML-shaped dict."""
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "imap":
            if not isinstance(value, list):
                raise ConfigError("imap: must be an array of tables ([[imap]])")
            values["imap"] = tuple(_coerce(f"imap[{i}]", ImapSettings, v) for i, v in enumerate(value))
        elif key in _TABLE_ARRAYS:
            field_name, cls = _TABLE_ARRAYS[key]
            if not isinstance(value, list):
                raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
            values[field_name] = tuple(_coerce(f"{key}[{i}]", cls, v) for i, v in enumerate(value))
        elif key in _SECTIONS:
            values[key] = _coerce(key, _SECTIONS[key], value)
        elif key == "sla":
            continue  # parsed below, with the desk's time zone as the calendars' default
        else:
            raise ConfigError(
                f"{key}: unknown section (known: {', '.join(sorted([*_SECTIONS, 'imap', 'sla', *_TABLE_ARRAYS]))})"
            )
    settings = _validate(Settings(**values, source=source, base_dir=base_dir))
    if "sla" in data:
        settings = replace(settings, sla=parse_sla(data["sla"], default_timezone=settings.desk.timezone))
    return settings


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load settings: explicit path, else $MAILDESK_CONFIG, else ./maildesk.toml, else defaults."""
    chosen = path or os.environ.get(CONFIG_ENV)
    if not chosen and Path(DEFAULT_CONFIG_NAME).is_file():
        chosen = DEFAULT_CONFIG_NAME
    if not chosen:
        return parse_settings({}, source="<embedded default>", base_dir=os.getcwd())
    file = Path(chosen)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8: {exc}") from exc
    return parse_settings(data, source=str(file), base_dir=str(file.resolve().parent))
