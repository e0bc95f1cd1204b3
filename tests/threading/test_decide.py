from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from maildesk.threading import (
    ThreadInput,
    TicketFacts,
    child_thread_index,
    decide_thread,
    make_message_id,
    make_reply_address,
    new_thread_index,
    thread_index_root,
)

SECRET = "k3y"
TAG = "[#{number}]"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class FakeStore:
    tickets: dict[int, TicketFacts] = field(default_factory=dict)
    message_ids: dict[str, int] = field(default_factory=dict)
    roots: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        self.calls.append("ids")
        return {i: self.message_ids[i] for i in ids if i in self.message_ids}

    def ticket(self, number: int) -> TicketFacts | None:
        self.calls.append(f"ticket {number}")
        return self.tickets.get(number)

    def ticket_for_thread_index(self, root: str) -> int | None:
        self.calls.append("root")
        return self.roots.get(root)

    def add(
        self,
        number,
        status="open",
        participants=("alice@acme.com",),
        domain="acme.com",
        closed_at=None,
        merged_into=None,
    ):
        self.tickets[number] = TicketFacts(number, status, frozenset(participants), domain, closed_at, merged_into)


def msg(**kw) -> ThreadInput:
    base = dict(
        message_id="new@client",
        sender="alice@acme.com",
        recipients=("support@help.example",),
        subject="Printer",
        in_reply_to=(),
        references=(),
        now=NOW,
    )
    base.update(kw)
    return ThreadInput(**base)


def decide(inp, store, **kw):
    return decide_thread(inp, store, secret=SECRET, tag_format=TAG, reopen_days=kw.pop("reopen_days", 14), **kw)


def ours(n, nonce="n1"):
    return make_message_id(SECRET, n, "help.example", nonce=nonce)


def test_no_evidence_is_new():
    d = decide(msg(), FakeStore())
    assert (d.ticket, d.method, d.reopen, d.linked_to, d.refused) == (None, "new", False, None, ())


def test_own_message_id_in_reply_to():
    store = FakeStore()
    store.add(42)
    d = decide(msg(in_reply_to=(ours(42),)), store)
    assert (d.ticket, d.method) == (42, "own-message-id")
    assert "In-Reply-To" in d.detail and "#42" in d.detail


def test_own_message_id_in_references_newest_first():
    store = FakeStore()
    store.add(1)
    store.add(2)
    d = decide(msg(references=(ours(1), "x@y", ours(2))), store)
    assert (d.ticket, d.method) == (2, "own-message-id")
    assert "References" in d.detail


def test_own_id_beats_stored_id():
    store = FakeStore(message_ids={"cust@mail": 5})
    store.add(5)
    store.add(9)
    d = decide(msg(in_reply_to=("cust@mail",), references=(ours(9),)), store)
    assert (d.ticket, d.method) == (9, "own-message-id")


def test_stored_message_id_in_reply_to_then_references_last_first():
    store = FakeStore(message_ids={"a@x": 3, "b@x": 4, "c@x": 5})
    for n in (3, 4, 5):
        store.add(n)
    assert decide(msg(in_reply_to=("a@x",), references=("b@x", "c@x")), store).ticket == 3
    d = decide(msg(references=("a@x", "b@x", "c@x", "unknown@x")), store)
    assert (d.ticket, d.method) == (5, "message-id")
    assert store.calls.count("ids") == 2  # one batched lookup per decision


def test_reply_all_by_cc_person_joins_via_stored_id():
    store = FakeStore(message_ids={"orig@acme.com": 8})
    store.add(8)
    d = decide(msg(sender="bob@partner.org", in_reply_to=("orig@acme.com",)), store)
    assert (d.ticket, d.method) == (8, "message-id")


def test_reply_address():
    store = FakeStore()
    store.add(42)
    addr = make_reply_address(SECRET, "support@help.example", 42)
    d = decide(msg(sender="stranger@else.org", recipients=("x@y", addr)), store)
    assert (d.ticket, d.method) == (42, "reply-address")


def test_forged_signatures_refused():
    store = FakeStore()
    store.add(42)
    forged_mid = ours(42).replace("md.42.", "md.43.")
    forged_addr = make_reply_address(SECRET, "support@help.example", 42).replace("+t42-", "+t43-")
    d = decide(msg(in_reply_to=(forged_mid,), recipients=(forged_addr,)), store)
    assert (d.ticket, d.method) == (None, "new")
    assert any("signature is invalid" in r for r in d.refused)


def test_subject_tag_from_participant():
    store = FakeStore()
    store.add(42, participants=("alice@acme.com", "carol@other.org"))
    d = decide(msg(sender="carol@other.org", subject="Re: [#42] printer still broken"), store)
    assert (d.ticket, d.method) == (42, "subject-tag")


def test_subject_tag_from_colleague_at_customer_domain():
    store = FakeStore()
    store.add(42)
    d = decide(msg(sender="dave@acme.com", subject="[#42]printer fire"), store)
    assert (d.ticket, d.method) == (42, "subject-tag")
    assert "domain" in d.detail


def test_subject_tag_hijack_refused():
    store = FakeStore()
    store.add(42)
    d = decide(msg(sender="mallory@evil.com", subject="Re: [#42] give me the data"), store)
    assert (d.ticket, d.method) == (None, "new")
    assert d.refused and "mallory@evil.com" in d.refused[0]


def test_subject_tag_free_mail_domain_is_not_a_colleague():
    store = FakeStore()
    store.add(42, participants=("alice@gmail.com",), domain="gmail.com")
    d = decide(msg(sender="mallory@gmail.com", subject="Re: [#42] x"), store)
    assert d.ticket is None and "free-mail" in d.refused[0]
    assert decide(msg(sender="alice@gmail.com", subject="Re: [#42] x"), store).ticket == 42


def test_subject_tag_for_missing_ticket():
    d = decide(msg(subject="Re: [#999] x"), FakeStore())
    assert d.ticket is None and "no such ticket" in d.refused[0]


def test_reply_that_dropped_headers_but_kept_tag():
    store = FakeStore()
    store.add(42)
    kept = decide(msg(subject="AW: [#42] Printer"), store)
    assert (kept.ticket, kept.method) == (42, "subject-tag")
    stranger = decide(msg(sender="eve@elsewhere.net", subject="AW: [#42] Printer"), store)
    assert (stranger.ticket, stranger.method) == (None, "new")


def test_thread_index():
    root = new_thread_index(NOW - timedelta(days=1))
    store = FakeStore(roots={thread_index_root(root): 11})
    store.add(11)
    d = decide(msg(thread_index=child_thread_index(root, NOW)), store)
    assert (d.ticket, d.method) == (11, "thread-index")


def test_malformed_thread_index_ignored():
    store = FakeStore()
    d = decide(msg(thread_index="%%%"), store)
    assert d.method == "new" and "root" not in store.calls


def test_precedence_message_id_over_reply_address_over_tag_over_thread_index():
    root = new_thread_index(NOW)
    store = FakeStore(message_ids={"m@x": 1}, roots={root: 4})
    for n in (1, 2, 3, 4):
        store.add(n)
    addr = make_reply_address(SECRET, "support@help.example", 2)
    full = msg(in_reply_to=("m@x",), recipients=(addr,), subject="[#3] x", thread_index=root)
    assert decide(full, store).ticket == 1
    assert decide(replace(full, in_reply_to=()), store).ticket == 2
    assert decide(replace(full, in_reply_to=(), recipients=()), store).ticket == 3
    assert decide(replace(full, in_reply_to=(), recipients=(), subject="x"), store).ticket == 4


def test_merged_ticket_is_followed():
    store = FakeStore()
    store.add(10, merged_into=20)
    store.add(20, merged_into=30)
    store.add(30)
    d = decide(msg(in_reply_to=(ours(10),)), store)
    assert d.ticket == 30 and "#10 -> #20 -> #30" in d.detail


def test_merge_cycle_is_guarded():
    store = FakeStore()
    store.add(10, merged_into=20)
    store.add(20, merged_into=10)
    d = decide(msg(in_reply_to=(ours(10),)), store)
    assert d.ticket in (10, 20)


def test_reopen_inside_window():
    store = FakeStore()
    store.add(42, status="closed", closed_at=NOW - timedelta(days=3))
    d = decide(msg(in_reply_to=(ours(42),)), store)
    assert (d.ticket, d.reopen, d.linked_to) == (42, True, None)
    assert "reopen" in d.detail


def test_resolved_without_time_reopens():
    store = FakeStore()
    store.add(42, status="resolved")
    assert decide(msg(in_reply_to=(ours(42),)), store).reopen is True


def test_outside_window_new_linked_ticket():
    store = FakeStore()
    store.add(42, status="closed", closed_at=NOW - timedelta(days=30))
    d = decide(msg(in_reply_to=(ours(42),)), store)
    assert (d.ticket, d.method, d.linked_to, d.reopen) == (None, "new", 42, False)
    assert "linked to #42" in d.detail


def test_pending_ticket_is_not_reopened():
    store = FakeStore()
    store.add(42, status="pending")
    d = decide(msg(in_reply_to=(ours(42),)), store)
    assert (d.ticket, d.reopen) == (42, False)


def test_signed_id_of_deleted_ticket_falls_through():
    store = FakeStore(message_ids={"m@x": 7})
    store.add(7)
    d = decide(msg(in_reply_to=(ours(99),), references=("m@x",)), store)
    assert (d.ticket, d.method) == (7, "message-id")
    assert any("#99 does not exist" in r for r in d.refused)


def test_own_message_id_is_ignored_in_its_own_references():
    store = FakeStore(message_ids={"new@client": 5})
    store.add(5)
    assert decide(msg(references=("new@client",)), store).ticket is None


def test_long_references_without_a_match_are_new():
    # Its speed is a figure of bench/threading_bench.py --part decide (goal: under 5 ms a call).
    refs = tuple(f"r{i}@x" for i in range(5000))
    store = FakeStore()
    d = decide(msg(references=refs, subject="Re: hello"), store)
    assert (d.ticket, d.method) == (None, "new")


def test_subject_tag_sender_case_and_empty_sender():
    store = FakeStore()
    store.add(42)
    assert decide(msg(sender="Alice@ACME.com", subject="[#42] x"), store).ticket == 42
    d = decide(msg(sender="", subject="[#42] x"), store)
    assert d.ticket is None and "no sender" in d.refused[0]
