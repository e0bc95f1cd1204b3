"""The curated context a mail template sees.

Owns what templates may know: small frozen input dataclasses the caller fills from the store
(`CustomerInput`, `TicketInput`, …) and `build_context`, which turns them into plain dicts of
strings, numbers and timezone-aware datetimes, with times already formatted in the
recipient's time zone and locale and a sensible first name for the greeting.

It must not: accept or expose ORM objects (they would leak everything reachable from them),
mark any text as HTML-safe (customer text is always escaped in HTML), import jinja2, or read
the clock (`now` is passed in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import DateTimePattern, format_skeleton, format_time, format_timedelta, match_skeleton, parse_pattern

from maildesk.agentmail.commands import HELP_TEXT
from maildesk.agentmail.strip import marker_line
from maildesk.sanitize import escape_header_text
from maildesk.threading.subject import format_tag, reply_subject, strip_prefixes

DEFAULT_TAG_FORMAT = "[#{number}]"
SURVEY_SCORES = (5, 4, 3, 2, 1)
# Built-in templates written to an agent (the recipient is the agent, not the customer).
AGENT_FACING = frozenset({"sla_warning", "sla_breach", "agent_notification", "bounce_notice", "refused_reply"})


# ---------------------------------------------------------------------------------------
# Inputs: the lead builds these from the store; nothing else reaches a template.


@dataclass(frozen=True)
class TicketRef:
    """Another ticket of the same customer, for the history section."""

    number: int
    subject: str
    status: str
    created_at: datetime | None = None
    ended_at: datetime | None = None  # resolved or closed at (the history of an agent notification)


@dataclass(frozen=True)
class CustomerInput:
    email: str
    name: str = ""
    locale: str = ""  # "" means the desk default
    timezone: str = ""  # IANA name; "" means the desk default
    vip: bool = False
    open_tickets: tuple[TicketRef, ...] = ()  # other open tickets, newest first
    past_ticket_count: int = 0
    last_satisfaction: int | None = None  # 1..5 from the last survey answer


@dataclass(frozen=True)
class TicketInput:
    number: int
    subject: str
    status: str = "new"  # new | open | pending | resolved | closed
    queue: str = ""
    tier: str = "L1"
    priority: str = "normal"
    created_at: datetime | None = None
    first_response_due: datetime | None = None
    next_update_due: datetime | None = None
    resolution_due: datetime | None = None
    assignee_name: str = ""
    fields: tuple[tuple[str, str], ...] = ()  # extra routed fields shown to agents (label, value)
    asked: tuple[str, ...] = ()  # fields a rule's `ask:` asked for and did not get yet (names)
    merged_into: TicketRef | None = None  # the ticket this one was merged into


@dataclass(frozen=True)
class AgentInput:
    name: str
    email: str = ""
    signature: str = ""  # plain text; escaped in HTML like everything else
    locale: str = ""
    timezone: str = ""


@dataclass(frozen=True)
class MessageInput:
    """The message a mail is about: the customer's mail, or the agent's reply text."""

    text: str  # visible text (quotes and signature already split off by the caller)
    sender_name: str = ""
    sender_email: str = ""
    received_at: datetime | None = None
    attachment_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class HoursInput:
    """The desk's business hours (its default SLA calendar): `week[0]` is Monday's spans,
    each `(start, end)` in seconds after local midnight in `timezone`."""

    timezone: str
    week: tuple[tuple[tuple[int, int], ...], ...]


@dataclass(frozen=True)
class CompanyInput:
    name: str
    support_address: str
    website: str = ""
    hours: HoursInput | None = None  # None: no business hours to show (calendar time)


@dataclass(frozen=True)
class SlaInput:
    kind: str  # first_response | next_update | resolution
    due_at: datetime
    breached_at: datetime | None = None
    escalate_to: str = ""  # next tier or manager, for sla_breach


@dataclass(frozen=True)
class SurveyInput:
    """The survey's answers: `keyword` for a reply ("RATING 5", or just "5"); `links` the
    signed address of each rating (`threading.tokens.make_survey_address`), which become
    `mailto:` links with `subject` and the rating line prefilled."""

    keyword: str = "RATING"  # the customer replies e.g. "RATING 5"
    links: tuple[tuple[int, str], ...] = ()  # (rating, signed address)
    subject: str = ""  # the prefilled subject of every link


@dataclass(frozen=True)
class BounceInput:
    address: str
    reason: str = ""  # the DSN's diagnostic, e.g. "550 5.1.1 user unknown"
    at: datetime | None = None


@dataclass(frozen=True)
class RefusalInput:
    code: str  # unknown_sender | bad_token | ticket_closed | no_ticket | other
    detail: str = ""
    agent_subject: str = ""  # subject of the refused mail


@dataclass(frozen=True)
class FollowupInput:
    waiting_since: datetime
    close_after_days: int = 7


@dataclass(frozen=True)
class AttachmentRef:
    name: str
    size: int = 0  # bytes


@dataclass(frozen=True)
class NoticeInput:
    """What an agent notification is about (`services/notify.py` fills it).

    `event`: new | reply | assigned | escalated | note. `marker` is the line above which the
    agent answers (`agentmail.strip.marker_line`), `commands` the command list (two lines).
    `by` made the change, `note` is the hand-off note or the agent's note, `history` the
    customer's earlier tickets (status: how each ended), `attachments` of the customer's mail.
    """

    event: str
    marker: str
    commands: str = ""
    by: str = ""
    note: str = ""
    history: tuple[TicketRef, ...] = ()
    attachments: tuple[AttachmentRef, ...] = ()


Person = CustomerInput | AgentInput


# ---------------------------------------------------------------------------------------
# First names


_TITLES = frozenset(
    "dr dr. prof prof. mr mr. mrs mrs. ms ms. miss mx mx. sir dame herr frau hr hr. fr fr. "
    "dipl dipl. dipl.-ing. ing ing. mag mag. dr.-ing. dr.med. m m. mme mme. mlle mlle. monsieur madame "
    "sr sr. sra sra. srta srta. dott dott. dott.ssa sig sig. sig.ra ir ir. drs drs. univ.-prof. prof.dr.".split()
)
_SUFFIXES = frozenset("jr jr. sr sr. ii iii iv phd ph.d. md m.d. mba msc bsc".split())
_ROLE_WORDS = frozenset(
    "support team info admin administrator service services customer customers noreply no-reply "
    "donotreply billing sales contact office mail hello hallo help helpdesk webmaster postmaster "
    "accounts accounting invoice invoices orders order shop store the kundenservice kunde buchhaltung "
    "verwaltung donotreply do-not-reply mailer-daemon root it hr marketing news newsletter "
    "notifications notification".split()
)
_QUOTES = "\"'`“”„‘’«»‹›"
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")
_VIA = re.compile(r"\s+(via|über|par|per)\s+.*$", re.IGNORECASE)
_LETTERS = re.compile(r"^[^\W\d_]+(?:[-'’][^\W\d_]+)*$")


def _smart_case(word: str) -> str:
    """`ANNA-LENA` → `Anna-Lena`; leaves mixed case (`McKenzie`) and uncased scripts alone."""
    if not (word.isupper() or word.islower()):
        return word
    return re.sub(r"[^\W\d_]+", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), word)


def _first_from_address(address: str) -> str:
    local = address.rpartition("@")[0] if "@" in address else address
    local = local.split("+", 1)[0].strip().strip(_QUOTES).lower()
    if local in _ROLE_WORDS or re.sub(r"[._-]+", "", local) in _ROLE_WORDS:
        return ""
    parts = [p for p in re.split(r"[._-]+", local) if p]
    while parts and (parts[0] in _TITLES or parts[0] + "." in _TITLES):
        parts = parts[1:]
    # One token ("jsmith", "anna", "info") cannot be told apart from initials or a role.
    if len(parts) < 2:
        return ""
    first = parts[0]
    if len(first) < 2 or not first.isalpha() or first in _ROLE_WORDS or parts[1] in _ROLE_WORDS:
        return ""
    return _smart_case(first)


def guess_first_name(name: str, address: str = "") -> str:
    """A first name to greet someone by, or "" when no honest guess is possible.

    `Schmidt, Anna` → Anna; `Dr. Anna Schmidt` → Anna; `"ANNA SCHMIDT"` → Anna; `SCHMIDT Anna`
    → Anna; `J. Smith` → ""; only an address: `anna.schmidt@x.de` → Anna, `jsmith@x.de` → "".
    """
    text = escape_header_text(name).strip(_QUOTES + " ")
    text = _VIA.sub("", _BRACKETED.sub(" ", text)).strip(_QUOTES + " ")
    if not text or "@" in text:
        return _first_from_address(text if "@" in text else address)
    if "," in text:
        last, _, rest = text.partition(",")
        rest_tokens = rest.split()
        if rest_tokens and rest_tokens[0].lower() not in _SUFFIXES:
            text = rest.strip()
        else:
            text = last.strip()
    tokens = [t.strip(_QUOTES + ",;:") for t in text.split()]
    tokens = [t for t in tokens if t]
    while tokens and tokens[0].lower() in _TITLES:
        tokens = tokens[1:]
    if not tokens:
        return _first_from_address(address)
    # "SCHMIDT Anna": surname in capitals first, given name in mixed case after it.
    if len(tokens) >= 2 and tokens[0].isupper() and len(tokens[0]) > 1 and _LETTERS.match(tokens[0]):
        mixed = [t for t in tokens[1:] if not t.isupper() and not t.islower() and _LETTERS.match(t)]
        if mixed:
            return mixed[0]
    first = tokens[0].rstrip(".")
    if len(first) < 2 or not _LETTERS.match(first) or first.lower() in _ROLE_WORDS:
        return "" if len(tokens) > 1 or not address else _first_from_address(address)
    return _smart_case(first)


# ---------------------------------------------------------------------------------------
# Formatting


_LOCALE_MEMO: dict[tuple[str, str], str] = {}


def normalize_locale(value: str, default: str = "en") -> str:
    """`de-AT` → `de_AT`; anything babel does not know becomes `default`. Remembered (bounded)."""
    key = (value, default)
    known = _LOCALE_MEMO.get(key)
    if known is None:
        if len(_LOCALE_MEMO) >= 1024:
            _LOCALE_MEMO.clear()
        known = _LOCALE_MEMO[key] = _normalize_locale(value, default)
    return known


def _normalize_locale(value: str, default: str) -> str:
    value = (value or "").strip().replace("-", "_")
    if not value or not re.fullmatch(r"[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8}){0,2}", value):
        return default
    try:
        return str(Locale.parse(value))
    except (UnknownLocaleError, ValueError):
        return default


def zone(name: str, default: str = "UTC") -> ZoneInfo:
    """The named IANA zone, or `default` (then UTC) when unknown."""
    for candidate in (name, default, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    return ZoneInfo("UTC")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# Formatting memos. Each is keyed by every input its value depends on (a datetime is equal
# to another only for the same instant, and naive ones are read as UTC either way), so a
# value can never reach another reader, locale or zone; they are bounded (cleared when full).
_MEMO_LIMIT = 4096
_WHEN_PATTERNS: dict[str, tuple[Locale, DateTimePattern, DateTimePattern, str] | None] = {}
_WHEN_MEMO: dict[tuple[Any, ...], str] = {}
_SHOWS_SECONDS: dict[str, bool] = {}


def _when_patterns(locale: str) -> tuple[Locale, DateTimePattern, DateTimePattern, str] | None:
    """What `format_skeleton("yMMMEd")`, `format_time("short")` and the medium date-time
    pattern resolve to for `locale` (None: let babel's own functions deal with it)."""
    if locale not in _WHEN_PATTERNS:
        try:
            loc = Locale.parse(locale)
            skeletons = loc.datetime_skeletons
            skeleton = "yMMMEd" if "yMMMEd" in skeletons else (match_skeleton("yMMMEd", skeletons) or "yMMMEd")
            date_pattern = parse_pattern(skeletons[skeleton])
            time_pattern = parse_pattern(loc.time_formats["short"])
            combined = str(loc.datetime_formats.get("medium", "{1} {0}"))
            _WHEN_PATTERNS[locale] = (loc, date_pattern, time_pattern, combined)
        except Exception:  # noqa: BLE001 - the plain babel calls below raise what they raise
            _WHEN_PATTERNS[locale] = None
    return _WHEN_PATTERNS[locale]


def warm_locales(locales: tuple[str, ...] | list[str]) -> None:
    """Load babel's data for the desk's locales now (start-up), not for the first mail in
    each language: the first look-up of a locale reads and unpickles its data file."""
    for locale in locales:
        if _when_patterns(locale) is not None:
            format_when(datetime(2026, 1, 1, tzinfo=UTC), locale, "UTC")


def _shows_seconds(locale: str) -> bool:
    """Whether `format_when`'s text for `locale` can show seconds or less (a pattern field
    `s`, `S` or `A` outside quoted text; True when babel's own functions format it)."""
    known = _SHOWS_SECONDS.get(locale)
    if known is None:
        patterns = _when_patterns(locale)
        if patterns is None:
            known = True
        else:
            fields = "".join(re.sub(r"'[^']*'", "", p.pattern) for p in patterns[1:3])
            known = any(c in fields for c in "sSA")
        _SHOWS_SECONDS[locale] = known
    return known


def format_when(value: datetime | None, locale: str, tz: str) -> str:
    """`Wed, Mar 5, 2025, 3:00 PM CET` in the reader's zone and language ("" for None).

    The text shows the minute, not the second: every instant of one local minute (at one
    offset from UTC: a clock set back reads the same minute twice) shares one memo entry,
    so the acknowledgements of a busy minute format their "received" time once, not each
    (the babel formatting was the largest part of building their context)."""
    if value is None:
        return ""
    if _shows_seconds(locale):
        key: tuple[Any, ...] = (value, locale, tz)
    else:
        local = _aware(value).astimezone(zone(tz))
        key = (local.replace(second=0, microsecond=0, tzinfo=None), local.utcoffset(), locale, tz)
    text = _WHEN_MEMO.get(key)
    if text is None:
        text = _format_when(value, locale, tz)
        if len(_WHEN_MEMO) >= _MEMO_LIMIT:
            _WHEN_MEMO.clear()
        _WHEN_MEMO[key] = text
    return text


def _format_when(value: datetime, locale: str, tz: str) -> str:
    local = _aware(value).astimezone(zone(tz))
    patterns = _when_patterns(locale)
    if patterns is None:
        date_part = format_skeleton("yMMMEd", local, locale=locale)
        time_part = format_time(local, "short", locale=locale)
        pattern = str(Locale.parse(locale).datetime_formats.get("medium", "{1} {0}"))
    else:  # what format_skeleton and format_time do, with the patterns looked up once
        loc, date_pattern, time_pattern, pattern = patterns
        date_part = date_pattern.apply(local, loc)
        time_part = time_pattern.apply(local.timetz(), loc, reference_date=local.date())
    return f"{pattern.replace('{1}', date_part).replace('{0}', time_part)} {local.tzname() or ''}".strip()


def format_relative(value: datetime | None, now: datetime, locale: str) -> str:
    """`in 2 hours` / `vor 3 Tagen` relative to `now` ("" for None)."""
    if value is None:
        return ""
    delta: timedelta = _aware(value) - _aware(now)
    return format_timedelta(delta, add_direction=True, threshold=1.1, locale=locale)


def _squeeze(text: str) -> str:
    return re.sub(r"[ \t]+", " ", re.sub(r"\n{3,}", "\n\n", text.replace("\r\n", "\n"))).strip()


def excerpt(text: str, limit: int) -> str:
    """The first `limit` characters of `text`, cut at a word, with an ellipsis when cut."""
    text = text or ""
    # Squeezing a prefix of the text gives a prefix of the squeezed text (only runs of
    # blanks shrink; a run or a CR LF cut at the end is stripped), so a long mail needs
    # only its head squeezed once that is longer than `limit`.
    head = 2 * limit + 256
    squeezed = _squeeze(text[:head]) if len(text) > head else ""
    text = squeezed if len(squeezed) > limit else _squeeze(text)
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:\n") + "…"


# ---------------------------------------------------------------------------------------
# The context: one small function per section, composed by `build_context`


@dataclass(frozen=True)
class _Reader:
    """The reader's language and time zone, and `now`: how every time in the context is written."""

    locale: str
    timezone: str
    now: datetime

    @classmethod
    def of(cls, person: Person, now: datetime, default_locale: str, default_timezone: str) -> _Reader:
        locale = normalize_locale(person.locale, normalize_locale(default_locale))
        return cls(locale, zone(person.timezone, default_timezone).key, now)

    def when(self, value: datetime | None) -> str:
        return format_when(value, self.locale, self.timezone)

    def relative(self, value: datetime | None) -> str:
        return format_relative(value, self.now, self.locale)


def _person(person: Person) -> dict[str, Any]:
    name = escape_header_text(person.name)
    email = escape_header_text(person.email).lower()
    return {
        "name": name,
        "email": email,
        "first_name": guess_first_name(name, email),
        "display_name": name or email,
    }


def _company(company: CompanyInput, reader: _Reader) -> dict[str, Any]:
    text, rows = business_hours(company.hours, reader.locale, reader.timezone, reader.now)
    return {
        "name": escape_header_text(company.name),
        "support_address": escape_header_text(company.support_address).lower(),
        "website": escape_header_text(company.website),
        "business_hours": text,
        "business_hours_days": rows,
    }


_HOURS_MEMO: dict[tuple[HoursInput, str, str, date], tuple[str, tuple[tuple[str, str], ...]]] = {}


def business_hours(hours: HoursInput | None, locale: str, tz: str, now: datetime) -> tuple[str, list[dict[str, str]]]:
    """The desk's hours for a reader: day names and times in their language, times in their
    zone (`Mon–Fri 3:00 AM–11:00 AM EST` for a New Yorker of a Berlin desk). Converted on
    the week of `now`, so the offset is the one in force; ("", []) without hours.
    Remembered per (hours, locale, zone, week); every call gets its own list and dicts."""
    if hours is None or not any(hours.week):
        return "", []
    local_now = _aware(now).astimezone(zone(hours.timezone))
    monday = local_now.date() - timedelta(days=local_now.weekday())
    key = (hours, locale, tz, monday)
    known = _HOURS_MEMO.get(key)
    if known is None:
        text, rows = _business_hours(hours, locale, tz, monday)
        known = (text, tuple((r["days"], r["hours"]) for r in rows))
        if len(_HOURS_MEMO) >= _MEMO_LIMIT:
            _HOURS_MEMO.clear()
        _HOURS_MEMO[key] = known
    return known[0], [{"days": days, "hours": text} for days, text in known[1]]


def _business_hours(hours: HoursInput, locale: str, tz: str, monday: date) -> tuple[str, list[dict[str, str]]]:
    desk_zone, reader_zone = zone(hours.timezone), zone(tz)
    per_day: list[list[str]] = [[] for _ in range(7)]
    zone_name = ""
    for index, spans in enumerate(hours.week[:7]):
        midnight = datetime.combine(monday + timedelta(days=index), time(0), tzinfo=desk_zone)
        for start, end in spans:
            begin = (midnight + timedelta(seconds=start)).astimezone(reader_zone)
            finish = (midnight + timedelta(seconds=end)).astimezone(reader_zone)
            text = f"{format_time(begin, 'short', locale=locale)}–{format_time(finish, 'short', locale=locale)}"
            per_day[begin.weekday()].append(text)
            zone_name = zone_name or begin.tzname() or ""
    names = Locale.parse(locale).days["format"]["abbreviated"]
    rows: list[dict[str, str]] = []
    run: list[int] = []
    for day in range(8):
        if run and (day == 7 or per_day[day] != per_day[run[0]]):
            if per_day[run[0]]:
                first, last = names[run[0]], names[run[-1]]
                days = first if len(run) == 1 else (f"{first}, {last}" if len(run) == 2 else f"{first}–{last}")
                rows.append({"days": str(days), "hours": ", ".join(per_day[run[0]])})
            run = []
        if day < 7:
            run.append(day)
    text = "; ".join(f"{r['days']} {r['hours']}" for r in rows)
    return (f"{text} ({zone_name})" if zone_name else text), rows


def _ticket_ref(ref: TicketRef, reader: _Reader, tag_format: str) -> dict[str, Any]:
    return {
        "number": ref.number,
        "tag": format_tag(tag_format, ref.number),
        "subject": escape_header_text(ref.subject),
        "status": ref.status,
        "created": reader.when(ref.created_at),
        "ended": reader.when(ref.ended_at),
    }


def _customer(customer: CustomerInput, reader: _Reader, tag_format: str, person: dict[str, Any]) -> dict[str, Any]:
    return {
        **person,
        "vip": bool(customer.vip),
        "open_tickets": [_ticket_ref(t, reader, tag_format) for t in customer.open_tickets],
        "open_ticket_count": len(customer.open_tickets),
        "past_ticket_count": customer.past_ticket_count,
        "is_returning": customer.past_ticket_count > 0 or bool(customer.open_tickets),
        "last_satisfaction": customer.last_satisfaction,
    }


def _ticket(ticket: TicketInput, reader: _Reader, tag_format: str, reopen_days: int) -> dict[str, Any]:
    subject = escape_header_text(ticket.subject)
    return {
        "number": ticket.number,
        "tag": format_tag(tag_format, ticket.number),
        "subject": strip_prefixes(subject, tag_format) or subject,
        "reply_subject": escape_header_text(reply_subject(subject, tag_format, ticket.number)),
        "status": ticket.status,
        "queue": ticket.queue,
        "tier": ticket.tier,
        "priority": ticket.priority,
        "assignee_name": escape_header_text(ticket.assignee_name),
        "created": reader.when(ticket.created_at),
        "created_at": ticket.created_at,
        "first_response_due": reader.when(ticket.first_response_due),
        "first_response_due_in": reader.relative(ticket.first_response_due),
        "first_response_due_at": ticket.first_response_due,
        "next_update_due": reader.when(ticket.next_update_due),
        "next_update_due_at": ticket.next_update_due,
        "resolution_due": reader.when(ticket.resolution_due),
        "resolution_due_in": reader.relative(ticket.resolution_due),
        "resolution_due_at": ticket.resolution_due,
        "reopen_days": reopen_days,
        "fields": [{"label": escape_header_text(k), "value": escape_header_text(v)} for k, v in ticket.fields],
        "asked": [{"name": n, "label": escape_header_text(n.replace("_", " "))} for n in ticket.asked],
        "merged_into": None
        if ticket.merged_into is None
        else {
            "number": ticket.merged_into.number,
            "tag": format_tag(tag_format, ticket.merged_into.number),
            "subject": escape_header_text(strip_prefixes(ticket.merged_into.subject, tag_format)),
        },
    }


def _agent(agent: AgentInput) -> dict[str, Any]:
    return {**_person(agent), "signature": (agent.signature or "").replace("\r\n", "\n").strip()}


def _message(message: MessageInput, reader: _Reader, excerpt_chars: int) -> dict[str, Any]:
    text = (message.text or "").replace("\r\n", "\n").strip()
    return {
        "text": text,
        "excerpt": excerpt(text, excerpt_chars),
        "sender_name": escape_header_text(message.sender_name),
        "sender_email": escape_header_text(message.sender_email).lower(),
        "received": reader.when(message.received_at),
        "attachment_names": [escape_header_text(n) for n in message.attachment_names],
    }


def _sla(sla: SlaInput, reader: _Reader) -> dict[str, Any]:
    return {
        "kind": sla.kind,
        "due": reader.when(sla.due_at),
        "due_in": reader.relative(sla.due_at),
        "due_at": sla.due_at,
        "breached": reader.when(sla.breached_at),
        "breached_ago": reader.relative(sla.breached_at),
        "escalate_to": escape_header_text(sla.escalate_to),
    }


def _mailto(address: str, subject: str, body: str) -> str:
    """A `mailto:` URL; everything after the address is percent-encoded (RFC 6068)."""
    query = f"subject={quote(subject, safe='')}&body={quote(body, safe='')}"
    return f"mailto:{quote(address, safe='@+')}?{query}"


def _survey(survey: SurveyInput) -> dict[str, Any]:
    keyword = re.sub(r"[^A-Za-z0-9]", "", survey.keyword).upper() or "RATING"
    links = dict(survey.links)
    subject = escape_header_text(survey.subject)
    scores = []
    for s in SURVEY_SCORES:
        reply = f"{keyword} {s}"
        address = escape_header_text(links.get(s, "")).lower()
        mailto = _mailto(address, subject, reply + "\r\n\r\n") if address else ""
        scores.append({"score": s, "reply": reply, "address": address, "mailto": mailto})
    return {"keyword": keyword, "scores": scores, "has_links": bool(links)}


def _bounce(bounce: BounceInput, reader: _Reader) -> dict[str, Any]:
    return {
        "address": escape_header_text(bounce.address).lower(),
        "reason": escape_header_text(bounce.reason),
        "when": reader.when(bounce.at),
    }


def _refusal(refusal: RefusalInput) -> dict[str, Any]:
    return {
        "code": refusal.code,
        "detail": escape_header_text(refusal.detail),
        "agent_subject": escape_header_text(refusal.agent_subject),
    }


def human_size(size: int) -> str:
    """`512 bytes`, `12 KB`, `3.4 MB`."""
    if size < 1024:
        return f"{size} bytes"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def _notice(notice: NoticeInput, reader: _Reader, tag_format: str) -> dict[str, Any]:
    return {
        "event": notice.event,
        "marker": notice.marker,
        "commands": notice.commands.replace("\r\n", "\n").strip(),
        "by": escape_header_text(notice.by),
        "note": (notice.note or "").replace("\r\n", "\n").strip(),
        "history": [_ticket_ref(t, reader, tag_format) for t in notice.history],
        "attachments": [{"name": escape_header_text(a.name), "size": human_size(a.size)} for a in notice.attachments],
    }


def _followup(followup: FollowupInput, reader: _Reader) -> dict[str, Any]:
    waited = _aware(reader.now) - _aware(followup.waiting_since)
    return {
        "waiting_since": reader.when(followup.waiting_since),
        "waiting_days": max(0, waited.days),
        "close_after_days": followup.close_after_days,
    }


def build_context(
    *,
    now: datetime,
    company: CompanyInput,
    customer: CustomerInput,
    ticket: TicketInput | None = None,
    agent: AgentInput | None = None,
    message: MessageInput | None = None,
    recipient: Person | None = None,
    sla: SlaInput | None = None,
    survey: SurveyInput | None = None,
    bounce: BounceInput | None = None,
    refusal: RefusalInput | None = None,
    followup: FollowupInput | None = None,
    notice: NoticeInput | None = None,
    default_locale: str = "en",
    default_timezone: str = "UTC",
    tag_format: str = DEFAULT_TAG_FORMAT,
    excerpt_chars: int = 400,
    reopen_days: int = 14,
) -> dict[str, Any]:
    """The template context: plain dicts only; absent sections are None.

    `recipient` is who reads the mail (default: the customer); its locale and time zone
    decide the language and how every time is written. Pass the same locale to
    `TemplateRenderer.render`.
    """
    person: Person = recipient if recipient is not None else customer
    reader = _Reader.of(person, now, default_locale, default_timezone)
    customer_person = _person(customer)
    return {
        "locale": reader.locale,
        "timezone": reader.timezone,
        "now": _aware(now),
        "now_text": reader.when(now),
        "company": _company(company, reader),
        "customer": _customer(customer, reader, tag_format, customer_person),
        "recipient": customer_person if person is customer else _person(person),
        "ticket": None if ticket is None else _ticket(ticket, reader, tag_format, reopen_days),
        "agent": None if agent is None else _agent(agent),
        "message": None if message is None else _message(message, reader, excerpt_chars),
        "sla": None if sla is None else _sla(sla, reader),
        "survey": None if survey is None else _survey(survey),
        "bounce": None if bounce is None else _bounce(bounce, reader),
        "refusal": None if refusal is None else _refusal(refusal),
        "followup": None if followup is None else _followup(followup, reader),
        "notice": None if notice is None else _notice(notice, reader, tag_format),
    }


def sample_context(locale: str = "en", *, template: str = "", now: datetime | None = None) -> dict[str, Any]:
    """A full context with made-up data for `templates check` and `templates preview --sample`.

    Every section is filled, so one sample renders every built-in template; for the
    agent-facing ones (`AGENT_FACING`) the reader is the agent.
    """
    now = now or datetime(2025, 3, 5, 9, 30, tzinfo=UTC)
    customer = CustomerInput(
        email="anna.schmidt@example.org",
        name="Schmidt, Anna",
        locale=locale,
        timezone="Europe/Berlin",
        open_tickets=(TicketRef(38, "Invoice address wrong", "pending", now - timedelta(days=9)),),
        past_ticket_count=3,
        last_satisfaction=4,
    )
    agent = AgentInput(
        name="Jonas Weber",
        email="jonas@example.com",
        signature="Jonas Weber\nSupport team, Example Ltd.",
        locale=locale,
        timezone="Europe/Berlin",
    )
    return build_context(
        now=now,
        company=CompanyInput(
            "Example Ltd.",
            "support@example.com",
            "https://example.com",
            HoursInput("Europe/Berlin", ((((9 * 3600, 17 * 3600),),) * 5) + ((), ())),
        ),
        customer=customer,
        ticket=TicketInput(
            number=42,
            subject="Printer on fire",
            status="open",
            queue="hardware",
            tier="L1",
            priority="high",
            created_at=now - timedelta(hours=2),
            first_response_due=now + timedelta(hours=2),
            next_update_due=now + timedelta(hours=26),
            resolution_due=now + timedelta(days=3),
            assignee_name="Jonas Weber",
            fields=(("Product", "LaserJet 5"), ("Contract", "Gold")),
            asked=("order_number",),
            merged_into=TicketRef(41, "Printer smoking", "open", now - timedelta(days=1)),
        ),
        agent=agent,
        message=MessageInput(
            text="Hello,\n\nmy printer started smoking this morning <b>and</b> now it is on fire.\n"
            "What should I do? {{ 7*7 }}\n\nAnna",
            sender_name="Anna Schmidt",
            sender_email="anna.schmidt@example.org",
            received_at=now - timedelta(hours=2),
            attachment_names=("photo.jpg",),
        ),
        sla=SlaInput("first_response", now + timedelta(minutes=30), now - timedelta(minutes=5), "L2 (Maria Rossi)"),
        survey=SurveyInput(
            "RATING",
            tuple((r, f"support+s42.{r}-abcdefghij@example.com") for r in SURVEY_SCORES),
            "Re: [#42] Printer on fire",
        ),
        bounce=BounceInput("anna.schmidt@example.org", "550 5.1.1 <anna.schmidt@example.org>: user unknown", now),
        refusal=RefusalInput(
            "unknown_sender",
            "The reply came from jonas.weber@gmail.com, not your agent address.",
            "Re: [#42] Printer on fire",
        ),
        followup=FollowupInput(now - timedelta(days=4), 7),
        notice=NoticeInput(
            event="new",
            marker=marker_line(locale),
            commands=HELP_TEXT,
            by="maria@example.com",
            note="Needs a technician on site.",
            history=(TicketRef(17, "Toner smudges", "resolved", now - timedelta(days=60), now - timedelta(days=58)),),
            attachments=(AttachmentRef("photo.jpg", 234567),),
        ),
        recipient=agent if template in AGENT_FACING else None,
        default_locale=locale,
    )
