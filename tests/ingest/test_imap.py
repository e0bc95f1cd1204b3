"""IMAP intake against a real private Dovecot: nothing lost, nothing taken twice by design."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from maildesk.config import ImapSettings
from maildesk.ingest.imap import Backoff, MailboxPoller
from maildesk.spool.files import Spool
from tests.support import dovecot as dovecot_support
from tests.support.dovecot import DovecotServer, free_port
from tests.support.wait import wait_for

KEYWORD = "$MaildeskSpooled"


def make_mail(n: int, body: bytes = b"", size: int = 0) -> bytes:
    text = body or f"Hello, this is customer mail number {n}.\r\nIt has two lines.\r\n".encode()
    if size:
        text += (b"x" * 76 + b"\r\n") * (size // 78)
    return (
        f"From: Customer {n} <c{n}@example.org>\r\n"
        f"To: support@example.com\r\n"
        f"Subject: Question {n}\r\n"
        f"Message-ID: <m{n}-{random.getrandbits(40)}@example.org>\r\n"
        f"Date: Sat, 22 Nov 2025 10:00:00 +0000\r\n"
        f"\r\n"
    ).encode() + text


def settings_for(server: DovecotServer, **changes: Any) -> ImapSettings:
    base = ImapSettings(
        name="support",
        host=server.host,
        port=server.port,
        security="none",
        username=server.user,
        timeout=10.0,
    )
    return dataclasses.replace(base, password=server.password, **changes)


def spooled(spool: Spool) -> list[tuple[dict[str, Any], bytes]]:
    return [Spool.read(e) for e in spool.entries("incoming")]


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool").ensure()


@pytest.fixture
def pollers() -> Iterator[Callable[..., MailboxPoller]]:
    """Build pollers that are logged out after the test, whatever happened."""
    made: list[MailboxPoller] = []

    def make(*args: Any, **kwargs: Any) -> MailboxPoller:
        made.append(MailboxPoller(*args, **kwargs))
        return made[-1]

    yield make
    for poller in made:
        poller.disconnect()


def run_in_thread(poller: MailboxPoller) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=poller.run_forever, args=(stop,), daemon=True)
    thread.start()
    return thread, stop


def test_missing_dovecot_is_a_clear_failure_not_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dovecot_support, "DOVECOT_CANDIDATES", ("no-such-dovecot-binary",))
    with pytest.raises(dovecot_support.DovecotUnavailable, match="apt-get install -y dovecot-imapd"):
        dovecot_support.DovecotServer()
    with pytest.raises(pytest.fail.Exception, match="run the project's test command"):
        next(dovecot_support.dovecot_server())


# Basic intake -----------------------------------------------------------------------------
def test_inbox_mail_is_spooled_once_with_exact_bytes_and_marked(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    raws = [
        make_mail(1),
        make_mail(2, body="Grüße, non-UTF-8 bytes: caf\xe9\r\n".encode("latin-1")),
        make_mail(3, size=20_000),
    ]
    uids = [dovecot.append("INBOX", raw) for raw in raws]
    poller = pollers(settings_for(dovecot), spool, tmp_path / "state")

    report = poller.run_once()

    assert (report.fetched, report.spooled, report.marked, report.errors) == (3, 3, 3, ())
    entries = spooled(spool)
    assert sorted(raw for _, raw in entries) == sorted(raws)
    by_uid = {meta["envelope"]["uid"]: (meta, raw) for meta, raw in entries}
    assert sorted(by_uid) == uids
    meta, raw = by_uid[uids[1]]
    assert raw == raws[1]
    assert meta["source"] == "imap:support/INBOX"
    assert meta["envelope"] == {
        "uid": uids[1],
        "uidvalidity": dovecot.uidvalidity("INBOX"),
        "folder": "INBOX",
        "mailbox": "support",
    }
    flags = dovecot.flags("INBOX")
    assert all(KEYWORD in flags[uid] for uid in uids)
    assert not any("\\Seen" in flags[uid] for uid in uids), "the poller must never set \\Seen"

    again = poller.run_once()
    assert (again.fetched, again.spooled, again.marked) == (0, 0, 0)
    assert len(spooled(spool)) == 3

    late = make_mail(4)
    late_uid = dovecot.append("INBOX", late)
    third = poller.run_once()
    assert (third.fetched, third.spooled, third.marked) == (1, 1, 1)
    assert [raw for meta, raw in spooled(spool) if meta["envelope"]["uid"] == late_uid] == [late]

    status = poller.status()
    inbox = status["folders"]["INBOX"]
    assert (inbox["last_uid"], inbox["fetched"], inbox["pending"], inbox["last_error"]) == (late_uid, 4, 0, "")
    assert inbox["uidvalidity"] == dovecot.uidvalidity("INBOX")
    assert status["connected"] is True and status["last_error"] == "" and status["last_success"] is not None
    saved = json.loads((tmp_path / "state" / "imap-support.json").read_text())
    assert saved["folders"]["INBOX"] == {"uidvalidity": inbox["uidvalidity"], "last_uid": late_uid, "fetched": 4}
    poller.disconnect()


def test_mail_already_read_in_another_client_is_still_taken(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    seen = [make_mail(i) for i in range(3)]
    for raw in seen:
        dovecot.append("INBOX", raw, flags=["\\Seen"])
    unseen = make_mail(9)
    dovecot.append("INBOX", unseen)

    report = pollers(settings_for(dovecot), spool, tmp_path / "state").run_once()

    assert report.spooled == 4
    assert sorted(raw for _, raw in spooled(spool)) == sorted([*seen, unseen])


def test_lost_state_file_does_not_respool_keyword_marked_mail(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    for i in range(5):
        dovecot.append("INBOX", make_mail(i))
    state = tmp_path / "state"
    assert pollers(settings_for(dovecot), spool, state).run_once().spooled == 5
    (state / "imap-support.json").write_text("{ not json")  # a lost or damaged state file
    dovecot.append("INBOX", make_mail(6))

    report = pollers(settings_for(dovecot), spool, state).run_once()

    assert (report.spooled, report.errors) == (1, ())
    assert len(spooled(spool)) == 6


def test_move_mode_moves_after_spooling_and_creates_the_folder(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    raws = [make_mail(i) for i in range(4)]
    for raw in raws:
        dovecot.append("INBOX", raw, flags=["\\Seen"] if raw is raws[0] else ())
    settings = settings_for(dovecot, after="move", move_to="Processed")
    poller = pollers(settings, spool, tmp_path / "state")

    report = poller.run_once()

    assert (report.spooled, report.marked, report.errors) == (4, 4, ())
    assert dovecot.uids("INBOX") == []
    assert sorted(dovecot.bodies("Processed").values()) == sorted(raws)
    assert sorted(raw for _, raw in spooled(spool)) == sorted(raws)
    dovecot.append("INBOX", make_mail(10))
    assert poller.run_once().spooled == 1
    assert len(dovecot.uids("Processed")) == 5
    assert poller.run_once().spooled == 0
    poller.disconnect()


def test_move_mode_without_the_move_capability_copies_and_expunges(
    pollers: Callable[..., MailboxPoller], spool: Spool, tmp_path: Path
) -> None:
    # Advertise no MOVE (an older server): the poller must fall back to COPY + \Deleted + UID EXPUNGE.
    caps = "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE UIDPLUS NAMESPACE"
    server = DovecotServer(extra_config=f"imap_capability = {caps}\n").start()
    try:
        client = server.connect()
        assert not client.has_capability("MOVE")
        client.logout()
        keep = make_mail(99)
        keep_uid = server.append("INBOX", keep)
        server.set_flags("INBOX", [keep_uid], ["\\Deleted"])  # another client's pending deletion
        server._drop_client()
        raws = [make_mail(i) for i in range(3)]
        for raw in raws:
            server.append("INBOX", raw)
        settings = settings_for(server, after="move", move_to="Done")

        report = pollers(settings, spool, tmp_path / "state").run_once()

        assert (report.spooled, report.marked, report.errors) == (4, 4, ())
        # UID EXPUNGE removed only what was taken and moved: nothing else disappeared silently.
        assert sorted(server.bodies("Done").values()) == sorted([*raws, keep])
        assert server.uids("INBOX") == []
    finally:
        server.cleanup()


# TLS -------------------------------------------------------------------------------------
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_connections_verify_the_certificate(
    pollers: Callable[..., MailboxPoller], spool: Spool, tmp_path: Path, security: str
) -> None:
    server = DovecotServer(tls=True).start()
    try:
        raw = make_mail(1)
        server.append("INBOX", raw)
        port = server.tls_port if security == "ssl" else server.port
        settings = settings_for(server, security=security, port=port)

        untrusted = pollers(settings, spool, tmp_path / "state-1").run_once()
        assert untrusted.spooled == 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.errors[0]

        context = ssl.create_default_context(cafile=str(server.cafile))
        report = pollers(settings, spool, tmp_path / "state-2", ssl_context=context).run_once()
        assert (report.spooled, report.errors) == (1, ())
        assert [r for _, r in spooled(spool)] == [raw]
    finally:
        server.cleanup()


# Batches, folders, UIDVALIDITY ----------------------------------------------------------------
class WatchingSpool(Spool):
    """A real spool that records the saved progress each time a message is put."""

    def __init__(self, root: Path, state_file: Path) -> None:
        super().__init__(root)
        self.state_file = state_file
        self.saved_last_uid: list[int] = []

    def put(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> str:
        saved = (
            json.loads(self.state_file.read_text())["folders"]["INBOX"]["last_uid"] if self.state_file.exists() else 0
        )
        self.saved_last_uid.append(saved)
        return super().put(raw, source, envelope)


def test_batches_of_100_take_250_messages_and_save_progress_after_each(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, tmp_path: Path
) -> None:
    raws = [make_mail(i) for i in range(250)]
    dovecot.append_many("INBOX", raws)
    state = tmp_path / "state"
    spool = WatchingSpool(tmp_path / "spool", state / "imap-support.json")
    spool.ensure()

    report = pollers(settings_for(dovecot, batch_size=100), spool, state).run_once()

    assert (report.fetched, report.spooled, report.marked) == (250, 250, 250)
    assert sorted(raw for _, raw in spooled(spool)) == sorted(raws)
    # Progress is written after each marked batch: 0 during batch 1, 100 during 2, 200 during 3.
    assert sorted(set(spool.saved_last_uid)) == [0, 100, 200]
    assert spool.saved_last_uid.count(100) == 100 and spool.saved_last_uid.count(200) == 50
    assert all(KEYWORD in f for f in dovecot.flags("INBOX").values())


def test_uidvalidity_change_rescans_without_respooling_marked_mail(
    pollers: Callable[..., MailboxPoller],
    dovecot: DovecotServer,
    spool: Spool,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.create_folder("Support")
    old = [make_mail(i) for i in range(5)]
    for raw in old:
        dovecot.append("Support", raw)
    settings = settings_for(dovecot, folders=("Support",))
    poller = pollers(settings, spool, tmp_path / "state")
    assert poller.run_once().spooled == 5
    poller.disconnect()
    before = dovecot.uidvalidity("Support")
    flags = dovecot.flags("Support")
    bodies = dovecot.bodies("Support")

    # The folder is recreated (e.g. a server migration): new UIDVALIDITY, UIDs restart at 1.
    dovecot.delete_folder("Support")
    dovecot.create_folder("Support")
    new = [make_mail(100), make_mail(101)]
    for raw in new:  # new mail first: UIDs 1 and 2, below the old last_uid of 5
        dovecot.append("Support", raw)
    for uid, raw in bodies.items():  # then the old mail, with its flags (our keyword)
        dovecot.append("Support", raw, flags=[f for f in flags[uid] if f != "\\Recent"])
    after = dovecot.uidvalidity("Support")
    assert after != before

    with caplog.at_level(logging.ERROR, logger="maildesk.ingest.imap"):
        report = poller.run_once()

    assert (report.spooled, report.errors) == (2, ())
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)
    assert sorted(raw for _, raw in spooled(spool)) == sorted([*old, *new])
    assert poller.status()["folders"]["Support"]["uidvalidity"] == after
    assert poller.status()["folders"]["Support"]["last_uid"] == 7
    poller.disconnect()


def test_several_folders_and_a_missing_one(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    dovecot.create_folder("Sales")
    dovecot.create_folder("Factures été")
    dovecot.append("INBOX", make_mail(1))
    dovecot.append("Sales", make_mail(2))
    dovecot.append("Sales", make_mail(3))
    dovecot.append("Factures été", make_mail(4))
    settings = settings_for(dovecot, folders=("INBOX", "Nope", "Sales", "Factures été"))
    poller = pollers(settings, spool, tmp_path / "state")

    report = poller.run_once()

    assert report.spooled == 4
    assert len(report.errors) == 1 and "'Nope'" in report.errors[0]
    sources = sorted(meta["source"] for meta, _ in spooled(spool))
    assert sources == ["imap:support/Factures été", "imap:support/INBOX", "imap:support/Sales", "imap:support/Sales"]
    status = poller.status()
    assert status["folders"]["Sales"]["fetched"] == 2
    assert "Nope" in status["folders"]["Nope"]["last_error"]
    assert status["folders"]["INBOX"]["last_error"] == ""
    poller.disconnect()


def test_unwritable_state_folder_is_a_clear_error_and_nothing_is_lost(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    raw = make_mail(1)
    dovecot.append("INBOX", raw)
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be")

    report = pollers(settings_for(dovecot), spool, blocker).run_once()

    # Progress cannot be recorded, so nothing is taken (nor marked) until it can.
    assert report.spooled == 0 and len(report.errors) == 1
    assert "cannot write IMAP state file" in report.errors[0]
    assert KEYWORD not in dovecot.flags("INBOX")[1]
    blocker.unlink()
    again = pollers(settings_for(dovecot), spool, blocker).run_once()
    assert (again.spooled, again.errors) == (1, ())
    assert [r for _, r in spooled(spool)] == [raw]


# Failures and reconnecting -------------------------------------------------------------------
def test_wrong_password_is_reported_clearly_and_backs_off(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings_for(dovecot), password="wrong")
    poller = pollers(settings, spool, tmp_path / "state")

    report = poller.run_once()

    assert report.spooled == 0 and len(report.errors) == 1
    assert "login failed" in report.errors[0] and "support@example.com" in report.errors[0]
    status = poller.status()
    assert status["connected"] is False and "login failed" in status["last_error"]

    # run_forever keeps trying, but never in a tight loop: it waits at least 1 s after a refused
    # login. (Dovecot also delays repeated failed logins by 4.5 s; growth is tested below.)
    now = [0.0]
    waited = [0.0]
    stop = threading.Event()

    def fake_sleep(seconds: float) -> None:
        waited[0] += seconds
        now[0] += seconds
        if waited[0] >= 1.0:
            stop.set()

    looping = pollers(settings, spool, tmp_path / "state", clock=lambda: now[0], sleep=fake_sleep)
    looping.run_forever(stop)
    assert looping.backoff.failures == 1 and waited[0] == pytest.approx(1.0)
    assert "login failed" in looping.status()["last_error"]


def test_run_forever_backs_off_exponentially_while_the_server_is_down(
    pollers: Callable[..., MailboxPoller], spool: Spool, tmp_path: Path
) -> None:
    settings = ImapSettings(
        name="x", host="127.0.0.1", port=free_port(), security="none", username="u", password="p", timeout=2
    )
    now = [0.0]
    waits: dict[int, float] = {}
    stop = threading.Event()

    def fake_sleep(seconds: float) -> None:
        failures = poller.backoff.failures
        waits[failures] = waits.get(failures, 0.0) + seconds
        now[0] += seconds
        if now[0] > 1800:
            stop.set()

    poller = pollers(settings, spool, tmp_path / "state", clock=lambda: now[0], sleep=fake_sleep)
    poller.run_forever(stop)
    assert waits[1] == pytest.approx(1.0)
    for attempt in range(2, 9):  # 2, 4, … 256 s, each less up to 25 % jitter
        nominal = 2.0 ** (attempt - 1)
        assert 0.75 * nominal <= waits[attempt] <= nominal
    assert all(0.75 * 300 <= waits[a] <= 300 for a in range(10, poller.backoff.failures))  # capped at 5 min
    assert 12 <= poller.backoff.failures <= 15
    assert "cannot connect" in poller.status()["last_error"]
    assert poller.status()["errors"] == poller.backoff.failures  # each failed connection counted (metrics)


def test_backoff_doubles_with_jitter_and_caps_at_five_minutes() -> None:
    backoff = Backoff(rng=random.Random(7))
    delays = [backoff.next() for _ in range(12)]
    for i, delay in enumerate(delays):
        nominal = min(300.0, 2.0**i)
        assert max(1.0, 0.75 * nominal) <= delay <= nominal
    backoff.reset()
    assert backoff.next() == 1.0


def test_no_server_listening_is_an_error_not_a_crash(
    pollers: Callable[..., MailboxPoller], spool: Spool, tmp_path: Path
) -> None:
    settings = ImapSettings(
        name="x", host="127.0.0.1", port=free_port(), security="none", username="u", password="p", timeout=2
    )
    report = pollers(settings, spool, tmp_path / "state").run_once()
    assert report.spooled == 0
    assert "cannot connect" in report.errors[0] and "refused" in report.errors[0].lower()


class DroppingSpool(Spool):
    """Stops the server right after the Nth put: the drop hits in the middle of a batch."""

    def __init__(self, root: Path, server: DovecotServer, after: int) -> None:
        super().__init__(root)
        self.server = server
        self.after = after
        self.puts = 0

    def put(self, raw: bytes, source: str, envelope: dict[str, Any] | None = None) -> str:
        entry = super().put(raw, source, envelope)
        self.puts += 1
        if self.puts == self.after:
            self.server.stop()
        return entry


def test_server_drop_mid_batch_reconnects_with_backoff_and_loses_nothing(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raws = [make_mail(i) for i in range(120)]
    dovecot.append_many("INBOX", raws)
    spool = DroppingSpool(tmp_path / "spool", dovecot, after=130)
    spool.ensure()
    settings = settings_for(dovecot, batch_size=50, poll_interval=0.2)
    poller = pollers(settings, spool, tmp_path / "state", backoff=Backoff(first=0.1, cap=0.4))
    caplog.set_level(logging.INFO, logger="maildesk.ingest.imap")
    thread, stop = run_in_thread(poller)
    try:
        wait_for(lambda: poller.status()["folders"]["INBOX"]["fetched"] == 120, timeout=15, message="first 120 fetched")
        late = [make_mail(1000 + i) for i in range(30)]
        dovecot.append_many("INBOX", late)  # 10 of these are spooled, then the server stops mid-batch
        wait_for(
            lambda: spool.puts >= 130 and not poller.status()["connected"], timeout=15, message="the drop mid-batch"
        )
        assert "connection lost" in poller.status()["last_error"] or "cannot connect" in poller.status()["last_error"]
        wait_for(  # a few refused reconnects
            lambda: any("retry 3 in" in r.getMessage() for r in list(caplog.records)),
            timeout=15,
            message="three failed attempts logged",
        )
        dovecot.start()
        wait_for(lambda: all(KEYWORD in f for f in dovecot.flags("INBOX").values()), timeout=20, message="all marked")
        wait_for(lambda: poller.status()["connected"], timeout=15, message="reconnected")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    taken = [raw for _, raw in spooled(spool)]
    assert set(taken) == set(raws + late), "every message reached the spool"
    # The interrupted batch (the 30 late messages, fetched together) was spooled but could not
    # be marked, so it is spooled again after the restart: the pipeline drops those copies by
    # Message-ID. Nothing spooled and marked before the drop comes again.
    duplicates = [raw for raw in set(taken) if taken.count(raw) > 1]
    assert set(duplicates) <= set(late)
    assert all(taken.count(raw) == 1 for raw in raws)
    messages = [r.getMessage() for r in caplog.records]
    assert any("retry 1 in" in m for m in messages)
    assert any("recovered after" in m for m in messages)


def test_idle_wakes_up_on_new_mail(
    pollers: Callable[..., MailboxPoller],
    dovecot: DovecotServer,
    spool: Spool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imapclient import IMAPClient

    start_idle = IMAPClient.idle
    idling = threading.Event()

    def idle_and_tell(client: IMAPClient) -> Any:
        result = start_idle(client)  # returns once the server has confirmed IDLE
        idling.set()
        return result

    monkeypatch.setattr(IMAPClient, "idle", idle_and_tell)
    settings = settings_for(dovecot, poll_interval=120.0, idle=True)
    poller = pollers(settings, spool, tmp_path / "state")
    thread, stop = run_in_thread(poller)
    try:
        wait_for(lambda: poller.status()["last_success"] is not None, timeout=15, message="the first poll")
        wait_for(idling.is_set, timeout=15, message="IDLE started")  # next poll in two minutes
        dovecot.append("INBOX", make_mail(1))
        # well before the next poll (two minutes); the latency is a figure of bench/imap_bench.py
        wait_for(lambda: len(spooled(spool)) == 1, timeout=5, message="the mail spooled during IDLE")
        dovecot.append("INBOX", make_mail(2))
        wait_for(lambda: len(spooled(spool)) == 2, timeout=5, message="the second mail spooled")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive(), "stop must end IDLE promptly"


def test_mail_arriving_just_before_idle_starts_is_not_left_for_the_next_poll(
    pollers: Callable[..., MailboxPoller],
    dovecot: DovecotServer,
    spool: Spool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Deliver a message in the gap between the poller's look at the folder and IDLE.
    from imapclient import IMAPClient

    start_idle = IMAPClient.idle
    gap_mail: list[int] = []

    def idle_after_a_delivery(client: IMAPClient) -> Any:
        if not gap_mail:
            gap_mail.append(1)
            dovecot.append("INBOX", make_mail(1))
        return start_idle(client)

    monkeypatch.setattr(IMAPClient, "idle", idle_after_a_delivery)
    settings = settings_for(dovecot, poll_interval=120.0, idle=True)
    poller = pollers(settings, spool, tmp_path / "state")
    thread, stop = run_in_thread(poller)
    try:
        wait_for(lambda: len(spooled(spool)) == 1, timeout=5, message="the gap mail")  # not after the two-minute poll
    finally:
        stop.set()
        thread.join(5)


def test_idle_with_a_missing_first_folder_falls_back_to_polling(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    settings = settings_for(dovecot, folders=("Nope", "INBOX"), poll_interval=0.3, idle=True)
    poller = pollers(settings, spool, tmp_path / "state")
    logins_before = dovecot.log_tail(10_000).count("Login: user=")
    thread, stop = run_in_thread(poller)
    try:
        dovecot.append("INBOX", make_mail(1))
        wait_for(lambda: len(spooled(spool)) == 1, timeout=5, message="the mail spooled")
        polls = {poller.status()["folders"]["INBOX"]["last_success"]}

        def three_more_polls() -> bool:
            polls.add(poller.status()["folders"]["INBOX"]["last_success"])
            return len(polls) > 3

        wait_for(three_more_polls, timeout=15, message="three more polls of INBOX")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert "Nope" in poller.status()["folders"]["Nope"]["last_error"]
    # One session for the poller, one for the test's own appends: no reconnect loop.
    assert dovecot.log_tail(10_000).count("Login: user=") - logins_before <= 2


def test_without_idle_it_polls_at_the_interval(
    pollers: Callable[..., MailboxPoller], dovecot: DovecotServer, spool: Spool, tmp_path: Path
) -> None:
    settings = settings_for(dovecot, poll_interval=0.3, idle=False)
    poller = pollers(settings, spool, tmp_path / "state")
    thread, stop = run_in_thread(poller)
    try:
        wait_for(lambda: poller.status()["last_success"] is not None, timeout=15, message="the first poll")
        dovecot.append("INBOX", make_mail(1))
        wait_for(lambda: len(spooled(spool)) == 1, timeout=5, message="the mail spooled")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_1000_messages_are_fetched_spooled_and_marked_in_one_run(
    pollers: Callable[..., MailboxPoller],
    dovecot: DovecotServer,
    spool: Spool,
    tmp_path: Path,
) -> None:
    raws = [make_mail(i, size=3000) for i in range(1000)]
    dovecot.append_many("INBOX", raws)
    poller = pollers(settings_for(dovecot, batch_size=100), spool, tmp_path / "state")

    report = poller.run_once()  # its rate is a figure of bench/imap_bench.py (goal: above 50 messages/s)

    assert (report.spooled, report.marked) == (1000, 1000)
    assert len(spooled(spool)) == 1000
    poller.disconnect()
