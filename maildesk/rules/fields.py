"""The condition fields a rule may test, and their values for one `RuleInput`.

Owns the field catalogue (name → kind) used by the loader to validate rules, and `Facts`,
a per-evaluation cache that extracts each field once and lower-cases it once, however many
rules test it. Every field yields a tuple of values; a multi-valued field (recipients,
attachments, tags, repeated headers) matches when any value matches.

Must not: parse mail, read the clock (time comes in `RuleInput.now`), or keep state beyond
one evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from maildesk.rules.model import RuleInput

if TYPE_CHECKING:
    from maildesk.rules.hours import BusinessHours

STR, BOOL, INT = "str", "bool", "int"


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower() if "@" in address else ""


def _ticket(getter: Callable[[Any], Any]) -> Callable[[RuleInput], tuple[Any, ...]]:
    def get(inp: RuleInput) -> tuple[Any, ...]:
        return () if inp.ticket is None else (getter(inp.ticket),)

    return get


_GETTERS: dict[str, tuple[str, Callable[[RuleInput], tuple[Any, ...]]]] = {
    "event": (STR, lambda i: (i.event,)),
    "from": (STR, lambda i: (i.sender,)),
    "from.name": (STR, lambda i: (i.sender_name,)),
    "from.domain": (STR, lambda i: (_domain(i.sender),)),
    "to": (STR, lambda i: i.recipients),
    "recipients": (STR, lambda i: i.recipients),
    "cc": (STR, lambda i: i.cc),
    "subject": (STR, lambda i: (i.subject,)),
    "body": (STR, lambda i: (i.body,)),
    "has_attachments": (BOOL, lambda i: (bool(i.attachments),)),
    "attachment.name": (STR, lambda i: tuple(name for name, _ in i.attachments)),
    "attachment.type": (STR, lambda i: tuple(ctype for _, ctype in i.attachments)),
    "customer.vip": (BOOL, lambda i: (i.customer.vip,)),
    "customer.tickets": (INT, lambda i: (i.customer.tickets,)),
    "customer.open_tickets": (INT, lambda i: (i.customer.open_tickets,)),
    "customer.email": (STR, lambda i: (i.customer.email,)),
    "customer.domain": (STR, lambda i: (i.customer.domain,)),
    "ticket.status": (STR, _ticket(lambda t: t.status)),
    "ticket.queue": (STR, _ticket(lambda t: t.queue)),
    "ticket.tier": (STR, _ticket(lambda t: t.tier)),
    "ticket.priority": (STR, _ticket(lambda t: t.priority)),
    "ticket.assignee": (STR, _ticket(lambda t: t.assignee)),
    "ticket.tags": (STR, lambda i: () if i.ticket is None else i.ticket.tags),
}

BUSINESS_HOURS = "business_hours"
HEADER_PREFIX = "header."

FIELD_NAMES: tuple[str, ...] = (*_GETTERS, BUSINESS_HOURS, "header.<Name>")


def field_kind(name: str) -> str | None:
    """The kind (str/bool/int) of a condition field, or None when there is no such field."""
    if name in _GETTERS:
        return _GETTERS[name][0]
    if name == BUSINESS_HOURS:
        return BOOL
    if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX):
        return STR
    return None


class Facts:
    """Field values of one input, extracted lazily and cached for one evaluation."""

    __slots__ = ("inp", "_hours", "_raw", "_lower", "_headers")

    def __init__(self, inp: RuleInput, hours: BusinessHours | None) -> None:
        self.inp = inp
        self._hours = hours
        self._raw: dict[str, tuple[Any, ...]] = {}
        self._lower: dict[str, tuple[str, ...]] = {}
        self._headers: dict[str, tuple[str, ...]] | None = None

    def values(self, name: str) -> tuple[Any, ...]:
        got = self._raw.get(name)
        if got is None:
            got = self._raw[name] = self._extract(name)
        return got

    def lowered(self, name: str) -> tuple[str, ...]:
        got = self._lower.get(name)
        if got is None:
            got = self._lower[name] = tuple(v.lower() for v in self.values(name))
        return got

    def _extract(self, name: str) -> tuple[Any, ...]:
        entry = _GETTERS.get(name)
        if entry is not None:
            return entry[1](self.inp)
        if name == BUSINESS_HOURS:
            return () if self._hours is None else (self._hours.is_open(self.inp.now),)
        if self._headers is None:
            index: dict[str, list[str]] = {}
            for key, value in self.inp.headers:
                index.setdefault(key.lower(), []).append(value)
            self._headers = {k: tuple(v) for k, v in index.items()}
        return self._headers.get(name[len(HEADER_PREFIX) :].lower(), ())
