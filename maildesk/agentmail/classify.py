"""Who wrote this mail, as far as agent mail goes, and what it asks for.

Owns `classify`: given the facts of one parsed message (the sender's real mailbox from the
addr-spec, never the display name: `real_sender` reads it from the raw header; all recipients;
the decoded text), the agents as plain data, the token secret and our support and note
addresses, it decides one of

- `AgentReply`     an active agent answered a notification: a recipient is an agent token
                   (`tokens.make_agent_address`) signed for this very sender; carries the
                   ticket, the notification's sequence, the commands, the text and `note`;
- `AgentForward`   an active, authenticated agent forwarded a customer's mail to a support
                   address to open a ticket (`#customer ADDRESS`, else the forwarded
                   mail's original sender);
- `AgentRefused`   it tried to be agent mail and must not count as such, with a reason
                   that is recorded (`REASONS`) and whether the sender may be answered;
- `NotAgentMail`   ordinary mail: the customer path handles it.

Trust rule: a reply counts as an agent's only when the sender is a configured, active agent
AND the token's signature matches that agent and that ticket. A forward has no token, so it
also needs the caller's DKIM / Authentication-Results verdict (`authenticated`) unless the
policy says otherwise. Command errors do not refuse the mail here: they ride along in
`errors`, and the caller answers the agent with `commands.refusal_text` and changes nothing.

Also owns `collision`: whether a reply answers an outdated notification and must be held.
Pure: no database, no settings objects, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from maildesk.agentmail.commands import Command, CommandError, parse_commands
from maildesk.agentmail.strip import AgentText, agent_words
from maildesk.message import decode_mime_words, unfold
from maildesk.threading.tokens import agent_token_base, parse_agent_address

BAD_TOKEN = "bad-token"
OTHER_AGENT = "token-for-another-agent"
INACTIVE_AGENT = "inactive-agent"
NOT_AN_AGENT = "sender-not-an-agent"
DISPLAY_NAME_SPOOF = "display-name-spoof"
UNAUTHENTICATED = "sender-not-authenticated"
AMBIGUOUS = "tokens-for-several-tickets"
NO_TICKET = "commands-without-ticket"
REASONS = (
    BAD_TOKEN,
    OTHER_AGENT,
    INACTIVE_AGENT,
    NOT_AN_AGENT,
    DISPLAY_NAME_SPOOF,
    UNAUTHENTICATED,
    AMBIGUOUS,
    NO_TICKET,
)

_NOT_FOR_REPLIES = {"customer": "#customer opens a ticket from a forwarded mail; it does nothing in a reply"}


@dataclass(frozen=True)
class AgentEntry:
    email: str
    active: bool = True
    signature: str = ""


@dataclass(frozen=True)
class MailFacts:
    sender: str  # the From addr-spec (real mailbox), not the display name
    subject: str = ""
    display_name: str = ""  # decoded display name of From, only used to recognise spoofs
    recipients: tuple[str, ...] = ()  # To, Cc and envelope recipients, addr-specs
    text: str = ""  # decoded text/plain body
    html: str = ""  # decoded text/html body, used when there is no text
    authenticated: bool | None = None  # DKIM / Authentication-Results for From: pass, fail, unknown
    forwarded_from: str = ""  # original sender of an attached message/rfc822, if the caller found one
    words: AgentText | None = None  # agent_words(text, html) without a signature, when computed already


@dataclass(frozen=True)
class AgentDesk:
    secret: str
    agents: tuple[AgentEntry, ...]
    support_addresses: tuple[str, ...]
    note_addresses: tuple[str, ...] = ()
    forward_needs_authentication: bool = True  # a forward carries no token: demand DKIM pass

    def agent(self, email: str) -> AgentEntry | None:
        email = email.strip().lower()
        return next((a for a in self.agents if a.email.strip().lower() == email), None)

    def ours(self, address: str) -> bool:
        address = address.strip().lower()
        return address in {a.strip().lower() for a in (*self.support_addresses, *self.note_addresses)}


@dataclass(frozen=True)
class AgentReply:
    agent: str
    ticket: int
    seq: int  # the notification's sequence: compare with `collision`
    commands: tuple[Command, ...]
    text: str  # the agent's words below the commands; empty when the mail is only commands
    note: bool  # stays internal: `#note`, or sent to a note address
    errors: tuple[CommandError, ...] = ()  # any error: change nothing, send nothing, answer the agent
    quoted: str = ""


@dataclass(frozen=True)
class AgentForward:
    agent: str
    customer: str  # the address the new ticket is for
    found_by: str  # "command" (#customer) or "forwarded-from" (the original sender)
    commands: tuple[Command, ...]
    text: str  # the agent's own words above the forwarded mail
    forwarded: str  # the forwarded mail as quoted in the body
    errors: tuple[CommandError, ...] = ()


@dataclass(frozen=True)
class AgentRefused:
    reason: str  # one of REASONS
    detail: str
    answer: str = ""  # an agent's address to tell what went wrong; "" to stay silent


@dataclass(frozen=True)
class NotAgentMail:
    pass


Outcome = AgentReply | AgentForward | AgentRefused | NotAgentMail

_EMBEDDED_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'@]+@[^\s<>()\[\],;:\"'@]+\.[^\s<>()\[\],;:\"'@]+")


def collision(seq_answered: int, latest_seq: int) -> bool:
    """True when the notification answered (made at `seq_answered`) is older than the
    ticket's latest customer message or agent reply (`latest_seq`): hold the reply."""
    return int(seq_answered) < int(latest_seq)


def real_sender(raw: bytes) -> tuple[str, str]:
    """(display name, addr-spec) of the one mailbox in From, read from the raw header.

    The address is taken before RFC 2047 words are decoded, so an encoded display name
    such as `=?utf-8?q?Bob_=3Cceo=40bigcorp.com=3E?= <attacker@example.com>` yields
    attacker@example.com, never the address shown in the name. ("", "") when From is
    missing or names more than one mailbox.
    """
    values = BytesHeaderParser(policy=compat32).parsebytes(raw).get_all("From") or []
    if len(values) != 1:
        return "", ""
    pairs = [(name, addr) for name, addr in getaddresses([unfold(str(values[0]))]) if addr]
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        return "", ""
    name, addr = pairs[0]
    return unfold(decode_mime_words(name)), addr.strip().lower()


def spoofed_display_name(display_name: str, sender: str) -> str:
    """An address shown in the display name that is not the real mailbox, else ''."""
    sender = sender.strip().lower()
    for found in _EMBEDDED_ADDRESS.findall(display_name or ""):
        if found.strip(".").lower() != sender:
            return found.strip(".").lower()
    return ""


# --- forwards ------------------------------------------------------------------------------

_FORWARD_START = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht|original\s+message|"
    r"ursprüngliche\s+nachricht)\s*-{2,}|_{8,}|begin\s+forwarded\s+message\s*:|"
    r"anfang\s+der\s+weitergeleiteten\s+nachricht\s*:)\s*$",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^[\s>*]*(?:from|von|de)\s*\**\s*:\s*(.+)$", re.IGNORECASE)
_DATE_LINE = re.compile(r"^[\s>*]*(?:sent|date|to|subject|gesendet|datum|an|betreff)\s*\**\s*:", re.IGNORECASE)
_ANGLE = re.compile(r"<\s*(?:mailto:)?([^<>\s]+@[^<>\s]+)\s*>|\[mailto:([^\]\s]+@[^\]\s]+)\]", re.IGNORECASE)


_FORWARD_SUBJECT = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:fwd?|wg|tr|rv|i|vs|doorst)\s*:", re.IGNORECASE)
_FORWARD_ONLY = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded\s+message|weitergeleitete\s+nachricht)\s*-{2,}|begin\s+forwarded\s+message\s*:|"
    r"anfang\s+der\s+weitergeleiteten\s+nachricht\s*:)\s*$",
    re.IGNORECASE,
)


def _has_forward_start(text: str) -> bool:
    return any(_FORWARD_ONLY.match(line) for line in (text or "").splitlines())


def _address_in(value: str) -> str:
    match = _ANGLE.search(value)
    if match:
        return (match.group(1) or match.group(2)).strip().lower()
    found = _EMBEDDED_ADDRESS.search(value)
    return found.group(0).strip(".").lower() if found else ""


def forwarded_sender(text: str) -> str:
    """The original sender named in the first forwarded header block of `text`, or ''.

    Recognises Gmail ("---------- Forwarded message ---------"), Apple Mail ("Begin
    forwarded message:"), Outlook (a `From:` line followed by `Sent:`/`To:`/`Subject:`,
    with or without a rule or "-----Original Message-----") in English and German.
    """
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    after_start = -99
    for i, line in enumerate(lines):
        if _FORWARD_START.match(line):
            after_start = i
            continue
        match = _FROM_LINE.match(line)
        if not match:
            continue
        near_start = i - after_start <= 4
        header_follows = any(_DATE_LINE.match(lines[j]) for j in range(i + 1, min(len(lines), i + 6)))
        if near_start or header_follows:
            address = _address_in(match.group(1))
            if address:
                return address
    return ""


# --- the decision --------------------------------------------------------------------------


def _tokens(desk: AgentDesk, recipients: Iterable[str]) -> list[str]:
    """Recipients shaped like agent tokens made from one of our addresses."""
    return [r for r in recipients if desk.ours(agent_token_base(r) or "")]


def _valid_for_other(desk: AgentDesk, token: str, sender: str) -> bool:
    return any(
        parse_agent_address(desk.secret, token, a.email) is not None
        for a in desk.agents
        if a.email.strip().lower() != sender
    )


def _refuse_stranger(facts: MailFacts, desk: AgentDesk, sender: str, what: str) -> AgentRefused:
    shown = spoofed_display_name(facts.display_name, sender)
    if shown:
        return AgentRefused(DISPLAY_NAME_SPOOF, f"display name shows {shown}, real sender is {sender}")
    return AgentRefused(NOT_AN_AGENT, f"{sender or 'no sender'} is not an agent {what}")


def _reply(facts: MailFacts, desk: AgentDesk, sender: str, tokens: list[str]) -> AgentRefused | AgentReply:
    agent = desk.agent(sender)
    if agent is None:
        return _refuse_stranger(facts, desk, sender, "but replied to an agent token")
    if not agent.active:
        return AgentRefused(INACTIVE_AGENT, f"{sender} is not an active agent")
    if facts.authenticated is False:
        return AgentRefused(UNAUTHENTICATED, f"mail from {sender} failed sender authentication")
    valid = {t: parse_agent_address(desk.secret, t, sender) for t in tokens}
    good = {t: v for t, v in valid.items() if v is not None}
    if not good:
        if any(_valid_for_other(desk, t, sender) for t in tokens):
            return AgentRefused(OTHER_AGENT, f"the token is for another agent, not {sender}", answer=sender)
        return AgentRefused(BAD_TOKEN, "no recipient carries a valid token for this sender", answer=sender)
    tickets = {v[0] for v in good.values()}
    if len(tickets) > 1:
        numbers = ", ".join(f"#{n}" for n in sorted(tickets))
        return AgentRefused(AMBIGUOUS, f"reply names several tickets ({numbers})", answer=sender)
    token, (ticket, seq) = max(good.items(), key=lambda item: item[1][1])
    words = agent_words(facts.text, facts.html, agent.signature)
    parsed = parse_commands(words.text)
    errors = list(parsed.errors)
    for command in parsed.commands:
        if command.name in _NOT_FOR_REPLIES:
            errors.append(
                CommandError(command.line, f"#{command.name} {command.argument}", _NOT_FOR_REPLIES[command.name])
            )
        if command.name == "merge" and int(command.argument) == ticket:
            errors.append(CommandError(command.line, f"#merge {command.argument}", "a ticket cannot merge into itself"))
    to_note = (agent_token_base(token) or "") in {a.strip().lower() for a in desk.note_addresses}
    return AgentReply(
        agent=agent.email.strip().lower(),
        ticket=ticket,
        seq=seq,
        commands=parsed.commands,
        text=parsed.text,
        note=parsed.note or to_note,
        errors=tuple(sorted(errors, key=lambda e: e.line)),
        quoted=words.quoted,
    )


def may_be_forward_or_commands(text: str, subject: str, forwarded: bool) -> bool:
    """False when `_forward` can only answer NotAgentMail: commands and notes are lines that
    start with '#' (the agent's words are cut from the text, so a '#' would be in it), and a
    forward shows in the subject, the text or an attached message. Lets a customer's mail
    (no token, to our address: `_forward`) go without the agent split, in the preparation
    children and here. HTML-only mail is split (its text comes from the HTML)."""
    if not (text or "").strip():
        return True
    return "#" in text or forwarded or bool(_FORWARD_SUBJECT.match(subject or "")) or _has_forward_start(text)


def _forward(facts: MailFacts, desk: AgentDesk, sender: str) -> Outcome:
    if facts.words is None and not may_be_forward_or_commands(facts.text, facts.subject, bool(facts.forwarded_from)):
        return NotAgentMail()
    agent = desk.agent(sender)
    signature = agent.signature if agent else ""
    words = facts.words if facts.words is not None and not signature else agent_words(facts.text, facts.html, signature)
    parsed = parse_commands(words.text)
    customer_cmd = parsed.named("customer")
    original = facts.forwarded_from.strip().lower()
    if not original and (_FORWARD_SUBJECT.match(facts.subject or "") or _has_forward_start(facts.text)):
        original = forwarded_sender(facts.text or words.quoted)
    if not (parsed.commands or parsed.errors or parsed.note or original):
        return NotAgentMail()  # an agent (or anyone) writing in like a customer
    if agent is None:
        if not (parsed.commands or parsed.errors or parsed.note):
            return NotAgentMail()  # a customer forwarding someone else's mail
        return _refuse_stranger(facts, desk, sender, "but sent agent commands")
    if not agent.active:
        return AgentRefused(INACTIVE_AGENT, f"{sender} is not an active agent")
    if facts.authenticated is False or (desk.forward_needs_authentication and facts.authenticated is not True):
        detail = f"a forward from {sender} needs a DKIM or trusted Authentication-Results pass for its domain"
        # the configured agent address hears of it (rate limited): a genuine agent whose mail
        # is not signed learns why no ticket was opened; a forger gets nothing
        return AgentRefused(UNAUTHENTICATED, detail, answer=agent.email.strip().lower())
    if not customer_cmd and not original:
        return AgentRefused(NO_TICKET, "commands need a reply to a notification, or a forward", answer=sender)
    customer = customer_cmd[0].argument if customer_cmd else original
    errors = list(parsed.errors)
    if desk.agent(customer) is not None or desk.ours(customer) or agent_token_base(customer) is not None:
        line = customer_cmd[0].line if customer_cmd else 0
        errors.append(CommandError(line, f"#customer {customer}", f"{customer} is one of ours, not a customer"))
    if parsed.note:
        errors.append(CommandError(0, "#note", "#note needs a ticket: reply to a notification"))
    for command in parsed.commands:
        if command.name in ("send", "merge"):
            errors.append(CommandError(command.line, f"#{command.name}", f"#{command.name} needs an existing ticket"))
    return AgentForward(
        agent=agent.email.strip().lower(),
        customer=customer,
        found_by="command" if customer_cmd else "forwarded-from",
        commands=tuple(c for c in parsed.commands if c.name != "customer"),
        text=parsed.text,
        forwarded=words.quoted,
        errors=tuple(sorted(errors, key=lambda e: e.line)),
    )


def classify(facts: MailFacts, desk: AgentDesk) -> Outcome:
    """Decide whether this mail is an agent's reply, an agent's forward, refused, or neither."""
    sender = (facts.sender or "").strip().strip("<>").strip().lower()
    recipients = tuple(r.strip().strip("<>").strip().lower() for r in facts.recipients)
    tokens = _tokens(desk, recipients)
    if tokens:
        return _reply(facts, desk, sender, tokens)
    if any(desk.ours(r) for r in recipients):
        return _forward(facts, desk, sender)
    return NotAgentMail()


__all__ = [
    "AgentDesk",
    "AgentEntry",
    "AgentForward",
    "AgentRefused",
    "AgentReply",
    "MailFacts",
    "NotAgentMail",
    "Outcome",
    "classify",
    "collision",
    "forwarded_sender",
    "may_be_forward_or_commands",
    "real_sender",
    "spoofed_display_name",
]
