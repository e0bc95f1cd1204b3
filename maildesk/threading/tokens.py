"""Signed tokens that tie our outgoing mail to a ticket.

Owns the Message-IDs we put on outgoing mail (`md.<ticket>.<nonce>.<sig>@domain`) and the
per-ticket reply address (`support+t<ticket>-<sig>@domain`). Both carry a truncated
HMAC-SHA256 over what they claim, so a reply can be trusted to name its ticket and a forged
or guessed token is refused. Agent reply addresses (`support+a<ticket>.<seq>-<sig>@domain`)
are also bound to one agent's address and carry the notification's sequence number, so a
token forwarded to someone else is worthless and a late answer can be recognised.
Comparison is constant-time. The secret is passed in by the caller; this module keeps no
state, reads no settings and looks nothing up.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets

SIG_LEN = 10  # base32 characters: 50 bits, plenty against online guessing
_SIG_BYTES = 5 * -(-SIG_LEN // 8)  # the whole 5-byte groups of the digest that hold SIG_LEN characters
_SIG = "[a-z2-7]{" + str(SIG_LEN) + "}"
_MID_RE = re.compile(r"^md\.(\d{1,12})\.([a-z0-9]{1,40})\.(" + _SIG + r")@([^@\s<>]+)$", re.IGNORECASE)
_ADDR_RE = re.compile(r"^([^@\s+]+)\+t(\d{1,12})-(" + _SIG + r")@([^@\s<>]+)$", re.IGNORECASE)
_NONCE_RE = re.compile(r"^[a-z0-9]{1,40}$")


def _sign(secret: str, message: str) -> str:
    if not secret:
        raise ValueError("an empty secret cannot sign anything")
    # Base32 turns each 5 bytes into 8 characters on their own, so the first SIG_LEN
    # characters come from the first _SIG_BYTES of the digest: encoding only those gives the
    # same signature for half the work (a test compares it with the whole digest's).
    digest = hmac.digest(secret.encode("utf-8"), message.encode("utf-8"), "sha256")
    return base64.b32encode(digest[:_SIG_BYTES]).decode("ascii").lower()[:SIG_LEN]


def _valid(secret: str, message: str, signature: str) -> bool:
    if not secret:  # not known yet (a PostgreSQL node before it read the shared one): nothing verifies
        return False
    return hmac.compare_digest(_sign(secret, message), signature.lower())


def make_message_id(secret: str, ticket_number: int, domain: str, nonce: str | None = None) -> str:
    """A signed Message-ID naming `ticket_number`, without angle brackets."""
    nonce = (nonce or secrets.token_hex(8)).lower()
    if not _NONCE_RE.match(nonce):
        raise ValueError("nonce must be 1-40 letters or digits")
    domain = domain.strip().lower()
    if not domain or any(c in domain for c in "@<> \t\r\n"):
        raise ValueError(f"bad Message-ID domain {domain!r}")
    number = int(ticket_number)
    sig = _sign(secret, f"mid:{number}:{nonce}")
    return f"md.{number}.{nonce}.{sig}@{domain}"


def parse_message_id(secret: str, message_id: str) -> int | None:
    """The ticket number in one of our Message-IDs, only if its signature is valid."""
    match = _MID_RE.match((message_id or "").strip().strip("<>").strip())
    if not match:
        return None
    number, nonce, sig = int(match.group(1)), match.group(2).lower(), match.group(3)
    return number if _valid(secret, f"mid:{number}:{nonce}", sig) else None


def looks_like_our_message_id(message_id: str) -> bool:
    """True when the id has our shape (signed or not): used to report forgeries."""
    return bool(_MID_RE.match((message_id or "").strip().strip("<>").strip()))


def _base(support_address: str) -> tuple[str, str]:
    """(local part without any +tag, domain) of a support address, lower-case."""
    local, at, domain = support_address.strip().lower().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"bad support address {support_address!r}")
    return local.split("+", 1)[0], domain


def make_reply_address(secret: str, support_address: str, ticket_number: int) -> str:
    """The per-ticket reply address, e.g. `support+t42-<sig>@example.com`."""
    local, domain = _base(support_address)
    number = int(ticket_number)
    sig = _sign(secret, f"addr:{local}@{domain}:{number}")
    return f"{local}+t{number}-{sig}@{domain}"


def parse_reply_address(secret: str, address: str) -> int | None:
    """The ticket number in a reply address, only if signed for that very address."""
    match = _ADDR_RE.match((address or "").strip().strip("<>").strip().lower())
    if not match:
        return None
    local, number, sig, domain = match.group(1), int(match.group(2)), match.group(3), match.group(4)
    return number if _valid(secret, f"addr:{local}@{domain}:{number}", sig) else None


# Agent tokens: the reply address on mail the desk sends to staff (notifications, `notify:`
# mails), e.g. `support+a42.7-<sig>@example.com`. The signature covers the base address,
# the ticket, the agent's address and the notification's sequence number, so the token is
# worth something only to that agent, for that ticket, and says how old the notification is.
_AGENT_ADDR_RE = re.compile(r"^([^@\s+]+)\+a(\d{1,12})\.(\d{1,20})-(" + _SIG + r")@([^@\s<>]+)$", re.IGNORECASE)


def _agent_message(local: str, domain: str, number: int, agent_email: str, seq: int) -> str:
    return f"agent:{local}@{domain}:{number}:{agent_email}:{seq}"


def _clean_agent(agent_email: str) -> str:
    email = (agent_email or "").strip().strip("<>").strip().lower()
    if email.count("@") != 1 or any(c in email for c in " \t\r\n<>,;:"):
        raise ValueError(f"bad agent address {agent_email!r}")
    return email


def make_agent_address(
    secret: str, support_address: str, ticket_number: int, agent_email: str, issued_at_seq: int
) -> str:
    """The reply address for one agent on one ticket, e.g. `support+a42.7-<sig>@example.com`.

    `issued_at_seq` is the ticket's sequence (its message or event count, or a timestamp)
    when the notification was made; `parse_agent_address` gives it back so a reply to an
    outdated notification can be held.
    """
    local, domain = _base(support_address)
    number, seq = int(ticket_number), int(issued_at_seq)
    if number < 0 or seq < 0:
        raise ValueError("ticket number and sequence must not be negative")
    sig = _sign(secret, _agent_message(local, domain, number, _clean_agent(agent_email), seq))
    return f"{local}+a{number}.{seq}-{sig}@{domain}"


def _signed_parts(
    pattern: re.Pattern[str], address: str, sender_email: str
) -> tuple[str, int, int, str, str, str] | None:
    """(local, number, second number, signature, domain, clean sender) of an address shaped like
    an agent or survey token (`local+<letter><number>.<number>-<sig>@domain`), or None."""
    match = pattern.match((address or "").strip().strip("<>").strip().lower())
    if not match:
        return None
    try:
        sender = _clean_agent(sender_email)
    except ValueError:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3)), match.group(4), match.group(5), sender


def parse_agent_address(secret: str, address: str, sender_email: str) -> tuple[int, int] | None:
    """(ticket, sequence) of an agent token, only if signed for this address and this sender."""
    parts = _signed_parts(_AGENT_ADDR_RE, address, sender_email)
    if parts is None:
        return None
    local, number, seq, sig, domain, sender = parts
    return (number, seq) if _valid(secret, _agent_message(local, domain, number, sender, seq), sig) else None


def agent_token_base(address: str) -> str | None:
    """The address an agent token was made from (`support@example.com`), for any token of
    that shape, signed or not; None when the address is not shaped like an agent token."""
    match = _AGENT_ADDR_RE.match((address or "").strip().strip("<>").strip().lower())
    return f"{match.group(1)}@{match.group(5)}" if match else None


# Survey tokens: the addresses behind the 1-5 links of a satisfaction survey, e.g.
# `support+s42.5-<sig>@example.com`. The signature covers the base address, the ticket, the
# rating and the customer's address, so a link answers for that customer on that ticket
# only: an agent or anyone else who clicks it (or forwards it) is recognised and refused.
_SURVEY_ADDR_RE = re.compile(r"^([^@\s+]+)\+s(\d{1,12})\.([1-5])-(" + _SIG + r")@([^@\s<>]+)$", re.IGNORECASE)


def _survey_message(local: str, domain: str, number: int, rating: int, customer_email: str) -> str:
    return f"survey:{local}@{domain}:{number}:{rating}:{customer_email}"


def make_survey_address(secret: str, support_address: str, ticket_number: int, rating: int, customer_email: str) -> str:
    """The address of one survey link, e.g. `support+s42.5-<sig>@example.com`."""
    local, domain = _base(support_address)
    number, score = int(ticket_number), int(rating)
    if number < 0 or not 1 <= score <= 5:
        raise ValueError("the ticket number must not be negative and the rating must be 1-5")
    sig = _sign(secret, _survey_message(local, domain, number, score, _clean_agent(customer_email)))
    return f"{local}+s{number}.{score}-{sig}@{domain}"


def survey_token_shape(address: str) -> tuple[str, int, int] | None:
    """(base address, ticket, rating) of an address shaped like a survey token, signed or not."""
    match = _SURVEY_ADDR_RE.match((address or "").strip().strip("<>").strip().lower())
    if not match:
        return None
    return f"{match.group(1)}@{match.group(5)}", int(match.group(2)), int(match.group(3))


def parse_survey_address(secret: str, address: str, sender_email: str) -> tuple[int, int] | None:
    """(ticket, rating) of a survey token, only if signed for this address and this sender."""
    parts = _signed_parts(_SURVEY_ADDR_RE, address, sender_email)
    if parts is None:
        return None
    local, number, rating, sig, domain, sender = parts
    return (number, rating) if _valid(secret, _survey_message(local, domain, number, rating, sender), sig) else None
