"""Full-text search on both backends: ranking, snippets, syntax, and the index kept current."""

from __future__ import annotations

from typing import Any

from maildesk.services import customers, views
from maildesk.services import tickets as ops
from maildesk.store.desk_queries import fts5_query
from tests.commands.desk.conftest import NOW, seed
from tests.support.mailgen import eml


def _seed(desk: Any) -> None:
    seed(
        desk,
        [
            eml(subject="Printer on fire", body="The printer in room 4 is on fire, flames everywhere.\n"),
            eml(
                subject="Invoice question",
                body="My invoice mentions a printer cartridge twice.\n",
                sender="Bob <bob@example.org>",
            ),
            eml(subject="Password reset", body="I cannot log in since yesterday.\n", sender="Cy <cy@example.net>"),
        ],
    )


def test_better_match_ranks_first(desk: Any) -> None:
    _seed(desk)
    with desk.store.reader() as s:
        hits = views.search(s, "printer fire")
        assert [h.ticket_number for h in hits] == [1]
        hits = views.search(s, "printer")
        assert [h.ticket_number for h in hits] == [1, 2]
        assert hits[0].rank > hits[1].rank
        assert "[printer]" in hits[1].text.lower() and "\ue000" in hits[1].marked
        assert views.search(s, "printers")[0].ticket_number == 1  # stemming on both backends
        assert views.search(s, "nothing-like-this") == []


def test_websearch_syntax_is_safe(desk: Any) -> None:
    _seed(desk)
    with desk.store.reader() as s:
        assert [h.ticket_number for h in views.search(s, "printer -fire")] == [2]
        assert sorted(h.ticket_number for h in views.search(s, "password or invoice")) == [2, 3]
        assert [h.ticket_number for h in views.search(s, '"room 4"')] == [1]
        for hostile in ['"', "AND OR NOT", "printer*:(", "NEAR(a b)", "-", "'; drop table messages; --"]:
            views.search(s, hostile)  # never an SQL or FTS syntax error


def test_index_follows_notes_and_erasure(desk: Any) -> None:
    _seed(desk)
    with desk.store.session() as s:
        ops.add_note(s, 3, "Customer says the toaster exploded", "agent@example.com", NOW)
    with desk.store.reader() as s:
        assert [h.ticket_number for h in views.search(s, "toaster")] == [3]
    with desk.store.session() as s:
        customers.erase_customer(s, "cy@example.net", NOW)
    with desk.store.reader() as s:
        assert views.search(s, "password") == [] and views.search(s, "toaster") == []


def test_fts5_query_translation() -> None:
    assert fts5_query("printer fire") == '"printer" AND "fire"'
    assert fts5_query('"on fire" -toner') == '"on fire" NOT "toner"'
    assert fts5_query("a or b c") == '("a" OR "b") AND "c"'
    assert fts5_query("-only") == ""
    assert fts5_query('say "hi') == '"say" AND "hi"'


def test_search_uses_the_index(desk: Any) -> None:
    """PostgreSQL: the query's tsvector expression matches the GIN index of migration 0002.
    SQLite: the FTS5 table and its three triggers exist."""
    from sqlalchemy import text

    from maildesk.store.desk_queries import PG_SEARCH_VECTOR

    _seed(desk)
    with desk.store.reader() as s:
        if desk.store.backend == "postgresql":
            s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                r[0]
                for r in s.execute(
                    text(
                        f"EXPLAIN SELECT id FROM messages WHERE {PG_SEARCH_VECTOR} "
                        "@@ websearch_to_tsquery('english', 'printer')"
                    )
                )
            )
            assert "ix_messages_search" in plan, plan
        else:
            names = set(s.scalars(text("SELECT name FROM sqlite_master WHERE name LIKE 'messages_fts%'")))
            assert {"messages_fts", "messages_fts_ai", "messages_fts_ad", "messages_fts_au"} <= names


def test_migration_0002_downgrades_and_rebuilds_from_existing_mail(desk: Any) -> None:
    """Down to 0001 drops the search objects; up again indexes mail already stored."""
    from alembic import command
    from alembic.config import Config

    from maildesk.store.db import MIGRATIONS

    _seed(desk)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    for target in ("0001", "head"):
        with desk.store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "0001" else command.upgrade)(cfg, target)
    with desk.store.reader() as s:
        assert [h.ticket_number for h in views.search(s, "printer fire")] == [1]


def test_our_automatic_mail_is_not_searched(desk: Any) -> None:
    """Issue 18: Ann's second ticket gets an acknowledgement that lists her open "Printer on
    fire" request; searching "printer fire" finds her printer ticket only, not the ticket
    whose only mention of a printer is in our own mail."""
    from sqlalchemy import select

    from maildesk.store.models import Message

    seed(desk, [eml(subject="Printer on fire", body="Flames everywhere in room 4.\n")])
    seed(desk, [eml(subject="Invoice question", body="The invoice total looks wrong.\n")])
    seed(
        desk, [eml(subject="Broken toner", body="A printer smells of fire, the toner leaks.\n", sender="Cy <cy@x.net>")]
    )
    with desk.store.reader() as s:
        acks = list(s.scalars(select(Message).where(Message.kind == "auto", Message.ticket_number == 2)))
        assert acks and any("printer on fire" in (m.visible_text + m.full_text).lower() for m in acks), (
            "the premise: ticket 2's acknowledgement quotes the printer ticket"
        )
        hits = views.search(s, "printer fire")
        assert [h.ticket_number for h in hits] == [1, 3]  # the subject match first; never #2
        assert hits[0].rank > hits[1].rank
        assert 2 not in [h.ticket_number for h in views.search(s, "printer")]
        listed = views.list_tickets(s, views.TicketFilter(text="printer fire"), NOW)
        assert sorted(t.number for t in listed) == [1, 3]


def _index_holds(desk: Any, kinds: tuple[str, ...]) -> dict[str, int]:
    """How many messages of each kind the search index holds (SQLite's FTS5 table, or
    PostgreSQL's non-NULL vectors), read straight from the index."""
    from sqlalchemy import text

    with desk.store.reader() as s:
        if desk.store.is_sqlite:  # a scan of an external-content table reads `messages`: ask the index itself
            s.execute(
                text("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_rows USING fts5vocab(main, messages_fts, instance)")
            )
            sql = "SELECT kind, count(*) FROM messages WHERE id IN (SELECT doc FROM temp.fts_rows) GROUP BY kind"
        else:
            sql = "SELECT kind, count(*) FROM messages WHERE search_vector IS NOT NULL GROUP BY kind"
        held = {kind: n for kind, n in s.execute(text(sql))}
    return {kind: held.get(kind, 0) for kind in kinds}


def test_index_leaves_automatic_mail_out_and_migration_0015_moves_it(desk: Any) -> None:
    """Migration 0015: acknowledgements are not indexed at all (issue 17: indexing them cost
    ~7% of the worker); customer mail is. Down to 0014 indexes them again, up leaves them out;
    a message whose kind changes moves in or out of the index; search answers throughout."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import update

    from maildesk.store.db import MIGRATIONS
    from maildesk.store.models import Message

    _seed(desk)
    assert _index_holds(desk, ("customer", "auto")) == {"customer": 3, "auto": 0}
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    for target, autos in (("0014", 3), ("head", 0)):
        with desk.store.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "0014" else command.upgrade)(cfg, target)
        assert _index_holds(desk, ("customer", "auto")) == {"customer": 3, "auto": autos}
        with desk.store.reader() as s:
            assert [h.ticket_number for h in views.search(s, "printer fire")] == [1]
    with desk.store.session() as s:  # an update of the kind moves the row out, then back in
        s.execute(update(Message).where(Message.ticket_number == 1, Message.kind == "customer").values(kind="auto"))
    assert _index_holds(desk, ("customer", "auto")) == {"customer": 2, "auto": 0}
    with desk.store.session() as s:
        s.execute(update(Message).where(Message.ticket_number == 1, Message.direction == "in").values(kind="customer"))
    assert _index_holds(desk, ("customer", "auto")) == {"customer": 3, "auto": 0}
    with desk.store.reader() as s:
        assert [h.ticket_number for h in views.search(s, "printer fire")] == [1]
