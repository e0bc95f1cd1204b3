"""Local Maildir delivery is idempotent per outbox row (issue 16): a row found in `sending`
after a crash and delivered again leaves one copy, not two with the same Message-ID."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path
from typing import Any

from maildesk.message import parse_bytes
from maildesk.outbound.relay import deliver_maildir, deliver_maildir_many, maildir_name
from tests.support.mailgen import eml
from tests.support.outbox_kit import Clock, new_ticket, outbox_rows, sender_for


def _copies(folder: Path) -> list[str]:
    return sorted(p.name for sub in ("new", "cur") for p in (folder / sub).iterdir())


def test_a_second_delivery_of_the_same_row_writes_nothing(tmp_path: Path) -> None:
    raw = eml(message_id="<ack-1@desk.example>")
    first = deliver_maildir(raw, "support@desk.example", ["anna@x.example"], tmp_path / "out")
    again = deliver_maildir(raw, "support@desk.example", ["anna@x.example"], tmp_path / "out")
    assert first.ok and again.ok and "already in" in again.message
    assert _copies(tmp_path / "out") == [maildir_name(raw, ["anna@x.example"])]
    # a mail client read it: moved to cur/ with flags; still found
    (name,) = _copies(tmp_path / "out")
    os.rename(tmp_path / "out" / "new" / name, tmp_path / "out" / "cur" / f"{name}:2,S")
    assert deliver_maildir(raw, "support@desk.example", ["anna@x.example"], tmp_path / "out").ok
    assert _copies(tmp_path / "out") == [f"{name}:2,S"]
    assert list((tmp_path / "out" / "tmp").iterdir()) == []
    # another mail (another row: another Message-ID) is its own copy
    deliver_maildir(
        eml(message_id="<ack-2@desk.example>"), "support@desk.example", ["anna@x.example"], tmp_path / "out"
    )
    assert len(_copies(tmp_path / "out")) == 2


def test_row_left_in_sending_after_a_kill_is_not_delivered_twice(wired: Any, clock: Clock) -> None:
    new_ticket(wired, clock)
    sender = sender_for(wired, wired.settings, clock)
    item = sender._claim()  # the attempt is committed ...
    assert item is not None
    assert sender._deliver(item.raw, item.sender, item.recipients).ok  # ... the copy written ...
    # ... and the process is SIGKILLed before it records `sent`. After the lease:
    other = sender_for(wired, wired.settings, clock)
    clock.advance(other.lease.total_seconds() + 1)
    assert other.recover() == 1
    assert other.send_due()["sent"] == 1
    assert outbox_rows(wired)[0].state == "sent"
    box = mailbox.Maildir(str(wired.settings.outgoing_maildir), create=False)
    ids = [parse_bytes(box.get_bytes(k)).message_id for k in box.keys()]
    assert ids == [outbox_rows(wired)[0].message_id]


def test_a_group_delivery_writes_what_one_at_a_time_writes(tmp_path: Path) -> None:
    """`deliver_maildir_many` (the sender's Maildir path: one sync for a group) leaves the
    same files with the same bytes as one `deliver_maildir` each, and finds copies that are
    there already (a row delivered again after a crash, or twice in one group)."""
    mails = [
        (eml(message_id=f"<ack-{i}@desk.example>"), "support@desk.example", [f"c{i}@x.example", "cc@x.example"])
        for i in range(5)
    ]
    for raw, sender, recipients in mails:
        assert deliver_maildir(raw, sender, recipients, tmp_path / "one").ok
    results = deliver_maildir_many([*mails, mails[2]], tmp_path / "group")
    assert [r.ok for r in results] == [True] * 6
    assert [r.message.startswith("written to") for r in results] == [True] * 5 + [False]
    assert "already in" in results[5].message
    assert _copies(tmp_path / "group") == _copies(tmp_path / "one")
    for name in _copies(tmp_path / "one"):
        assert (tmp_path / "group" / "new" / name).read_bytes() == (tmp_path / "one" / "new" / name).read_bytes()
    assert list((tmp_path / "group" / "tmp").iterdir()) == []
    # a mail client read one: moved to cur/ with flags; both are still found
    name = maildir_name(mails[0][0], mails[0][2])
    os.rename(tmp_path / "group" / "new" / name, tmp_path / "group" / "cur" / f"{name}:2,S")
    again = deliver_maildir_many(mails[:2], tmp_path / "group")
    assert all(r.ok and "already in" in r.message for r in again)
    assert len(_copies(tmp_path / "group")) == 5


def test_the_sender_delivers_a_group_into_the_maildir_once_each(wired: Any, clock: Clock) -> None:
    for i in range(4):
        wired.spool.put(eml(sender=f"c{i}@customer.example", message_id=f"<m{i}@customer.example>"), "smtp")
    assert wired.process()["tickets_created"] == 4
    sender = sender_for(wired, wired.settings, clock)
    assert sender.send_due()["sent"] == 4
    rows = outbox_rows(wired)
    assert [r.state for r in rows] == ["sent"] * 4
    box = mailbox.Maildir(str(wired.settings.outgoing_maildir), create=False)
    assert sorted(parse_bytes(box.get_bytes(k)).message_id for k in box.keys()) == sorted(r.message_id for r in rows)
