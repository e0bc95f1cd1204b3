"""`maildesk imap reconcile`: prove that nothing a mailbox holds was missed.

For each configured IMAP mailbox, lists what the server holds since a date (UID,
UIDVALIDITY, Message-ID; IMAP SEARCH SINCE) and compares it with the mail maildesk stored (by
Message-ID; mail without one by the synthetic id of its bytes, as the pipeline stores it).
What is not stored is reported as
- "waiting": above the progress recorded for the folder (same UIDVALIDITY) and not yet
  marked: the poller has simply not reached it yet;
- "missing": behind the recorded progress, or already marked as taken: a gap (e.g. a lost
  spool, or a message deleted from the spool by hand).
With `fetch`, every message not stored is spooled again for ingestion (the pipeline's
dedupe makes a second copy harmless). Read-only on the server: no flag is set, nothing moved.

Owns the comparison; the IMAP access is `maildesk.ingest.imap`'s, the look-ups the store's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from maildesk.config import Settings
from maildesk.ingest.imap import MailboxPoller, fetch_raw, recorded_progress, survey
from maildesk.message import normalize_message_id, synthetic_message_id
from maildesk.spool import Spool
from maildesk.store.db import Store
from maildesk.store.nodes import imap_progress, stored_message_ids


@dataclass
class Finding:
    mailbox: str
    folder: str
    uid: int
    uidvalidity: int
    message_id: str
    state: str  # missing | waiting
    taken: bool  # marked (keyword) or moved by maildesk on the server
    spooled_as: str = ""  # the spool entry id when fetched


@dataclass
class MailboxReport:
    mailbox: str
    on_server: int = 0
    stored: int = 0
    findings: list[Finding] = field(default_factory=list)
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "findings": [asdict(f) for f in self.findings]}


def _message_id(header: str) -> str:
    value = header.split(":", 1)[1] if ":" in header else header
    return normalize_message_id(value)


def reconcile(
    settings: Settings, store: Store, spool: Spool, since: date, *, fetch: bool = False
) -> list[MailboxReport]:
    """One report per configured mailbox (a mailbox that cannot be reached has `error`)."""
    shared = imap_progress(store)
    reports: list[MailboxReport] = []
    for mailbox in settings.imap:
        report = MailboxReport(mailbox.name)
        reports.append(report)
        poller = MailboxPoller(mailbox, spool, settings.data_path / "imap-state")
        try:
            remote = survey(poller, since)
            progress = recorded_progress(poller)  # this node's state file (SQLite)
            for (name, folder), value in shared.items():  # the nodes' shared progress (PostgreSQL)
                if name == mailbox.name:
                    progress[folder] = value
            report.on_server = len(remote)
            ids: dict[tuple[str, int], str] = {}
            raws: dict[tuple[str, int], bytes] = {}
            no_id: dict[str, list[int]] = {}
            for item in remote:
                mid = _message_id(item.message_id_header)
                if mid:
                    ids[(item.folder, item.uid)] = mid
                else:
                    no_id.setdefault(item.folder, []).append(item.uid)
            for folder, uids in no_id.items():  # stored under the synthetic id of their bytes
                for uid, raw in fetch_raw(poller, folder, uids).items():
                    ids[(folder, uid)] = synthetic_message_id(raw)
                    raws[(folder, uid)] = raw
            stored = stored_message_ids(store, list(ids.values()))
            for item in remote:
                found = ids.get((item.folder, item.uid))
                if found is None:
                    continue  # expunged while we looked
                if found in stored:
                    report.stored += 1
                    continue
                validity, last_uid = progress.get(item.folder, (0, 0))
                waiting = not item.taken and validity == item.uidvalidity and item.uid > last_uid
                report.findings.append(
                    Finding(
                        mailbox.name,
                        item.folder,
                        item.uid,
                        item.uidvalidity,
                        found,
                        "waiting" if waiting else "missing",
                        item.taken,
                    )
                )
            if fetch and report.findings:
                _spool_again(poller, spool, report, raws)
        except Exception as exc:  # noqa: BLE001 - one mailbox's trouble must not hide the others
            report.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            poller.disconnect()
    return reports


def _spool_again(
    poller: MailboxPoller, spool: Spool, report: MailboxReport, raws: dict[tuple[str, int], bytes]
) -> None:
    by_folder: dict[str, list[Finding]] = {}
    for finding in report.findings:
        by_folder.setdefault(finding.folder, []).append(finding)
    for folder, findings in by_folder.items():
        wanted = [f.uid for f in findings if (folder, f.uid) not in raws]
        fetched = fetch_raw(poller, folder, wanted) if wanted else {}
        for finding in findings:
            raw = raws.get((folder, finding.uid)) or fetched.get(finding.uid)
            if raw is None:
                continue
            finding.spooled_as = spool.put(
                raw,
                source=f"imap-reconcile:{finding.mailbox}/{folder}",
                envelope={
                    "uid": finding.uid,
                    "uidvalidity": finding.uidvalidity,
                    "folder": folder,
                    "mailbox": finding.mailbox,
                    "reconcile": True,
                },
            )
