"""Is an agent's mail really from the agent's domain? (for forwards, which carry no token)

Owns `sender_authenticated`: a forward from agent `ann@example.com` counts when

- the topmost `Authentication-Results` header whose authserv-id is one of the configured
  trusted ids (`desk.trusted_authserv_ids`, the receiving MX that adds it) reports
  `dkim=pass` with `header.d` (or the domain of `header.i`) aligned with the agent's domain,
  or `dmarc=pass` with `header.from` aligned, or `spf=pass` with `smtp.mailfrom` aligned;
  headers with other authserv-ids (anyone can write one) and lower headers with the trusted
  id (a sender can put one below the MX's) do not count; or
- a DKIM signature on the message verifies (dkimpy) for a `d=` aligned with the agent's
  domain and signs From.

"Aligned" is relaxed, as in DMARC: the same domain or a parent of it (never a bare
top-level domain). The DNS look-up of the DKIM key is injectable (`dnsfunc`, dkimpy's
signature `dnsfunc(name, timeout=5) -> bytes`), so tests run with a generated key.
This module does no I/O of its own besides that look-up; no database, no settings objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

import dkim as dkimpy

from maildesk.message import unfold

DnsFunc = Callable[..., bytes | None]


@dataclass(frozen=True)
class AuthVerdict:
    passed: bool
    by: str  # "authentication-results", "dkim" or "" (nothing passed)
    detail: str


def _domain(value: str) -> str:
    value = value.strip().strip("<>").strip().lower().rstrip(".")
    return value.rpartition("@")[2] if "@" in value else value


def aligned(found: str, agent_domain: str) -> bool:
    """`found` (a d= / header.from domain) is the agent's domain or a parent of it."""
    found, agent_domain = _domain(found), _domain(agent_domain)
    if not found or "." not in found:
        return False
    return agent_domain == found or agent_domain.endswith("." + found)


_COMMENT = re.compile(r"\([^()]*\)")
_PROP = re.compile(r"([a-z][a-z0-9_-]*\.[a-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)
_METHOD = re.compile(r"^\s*([a-z][a-z0-9_-]*)(?:/\d+)?\s*=\s*([a-z]+)", re.IGNORECASE)


def _headers(raw: bytes, name: str) -> list[str]:
    return [unfold(str(v)) for v in BytesHeaderParser(policy=compat32).parsebytes(raw).get_all(name) or []]


def _authserv_id(value: str) -> str:
    head = _COMMENT.sub(" ", value).split(";", 1)[0].strip()
    return head.split()[0].lower() if head else ""


def authentication_results(raw: bytes, trusted_ids: Sequence[str], agent_domain: str) -> AuthVerdict | None:
    """The verdict of the topmost Authentication-Results header from a trusted authserv-id,
    or None when there is no such header (or no trusted ids are configured)."""
    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    if not trusted:
        return None
    header = next((h for h in _headers(raw, "Authentication-Results") if _authserv_id(h) in trusted), None)
    if header is None:
        return None
    serv = _authserv_id(header)
    results = _COMMENT.sub(" ", header).split(";")[1:]
    seen: list[str] = []
    for result in results:
        method = _METHOD.match(result)
        if not method:
            continue
        name, outcome = method.group(1).lower(), method.group(2).lower()
        props = {k.lower(): v.strip('"') for k, v in _PROP.findall(result)}
        seen.append(f"{name}={outcome}")
        if outcome != "pass":
            continue
        if name == "dkim":
            found = props.get("header.d") or _domain(props.get("header.i", ""))
        elif name == "dmarc":
            found = props.get("header.from", "")
        elif name == "spf":
            found = props.get("smtp.mailfrom", "")
        else:
            continue
        if aligned(found, agent_domain):
            return AuthVerdict(True, "authentication-results", f"{serv}: {name}=pass for {_domain(found)}")
    return AuthVerdict(False, "", f"{serv}: {', '.join(seen) or 'no results'}, none for {agent_domain}")


def dkim_signatures(raw: bytes, agent_domain: str, dnsfunc: DnsFunc | None = None) -> AuthVerdict | None:
    """A DKIM signature that verifies for a domain aligned with `agent_domain`; None when
    the message carries no DKIM-Signature at all."""
    count = len(_headers(raw, "DKIM-Signature"))
    if not count:
        return None
    failed: list[str] = []
    for idx in range(count):
        checker = dkimpy.DKIM(raw, timeout=5)
        try:
            ok = checker.verify(idx=idx, dnsfunc=dnsfunc) if dnsfunc else checker.verify(idx=idx)
        except (dkimpy.DKIMException, ValueError, UnicodeError, OSError) as exc:
            failed.append(f"signature {idx + 1}: {exc}")
            continue
        domain = (checker.domain or b"").decode("ascii", "replace")
        if not ok:
            failed.append(f"signature {idx + 1} (d={domain}) does not verify")
        elif not aligned(domain, agent_domain):
            failed.append(f"signature {idx + 1} verifies for {domain}, not {agent_domain}")
        else:
            return AuthVerdict(True, "dkim", f"DKIM signature verifies for {domain}")
    return AuthVerdict(False, "", "; ".join(failed))


def sender_authenticated(
    raw: bytes,
    sender: str,
    *,
    trusted_authserv_ids: Sequence[str] = (),
    dnsfunc: DnsFunc | None = None,
) -> AuthVerdict:
    """Whether mail from `sender` is authenticated for the sender's domain (see module doc)."""
    domain = _domain(sender)
    verdicts = []
    header = authentication_results(raw, trusted_authserv_ids, domain)
    if header is not None and header.passed:
        return header
    if header is not None:
        verdicts.append(header.detail)
    signed = dkim_signatures(raw, domain, dnsfunc)
    if signed is not None and signed.passed:
        return signed
    if signed is not None:
        verdicts.append(signed.detail)
    else:
        verdicts.append("no DKIM signature")
    return AuthVerdict(False, "", "; ".join(verdicts))


__all__ = ["AuthVerdict", "aligned", "authentication_results", "dkim_signatures", "sender_authenticated"]
