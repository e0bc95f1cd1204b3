"""Log lines about a message carry it: the context filter, the plain and JSON formats, and
a reconfiguration (a reload) that replaces the handler instead of adding one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from maildesk.logctx import about, about_values, configure


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_plain_lines_name_ticket_message_id_and_entry_once_known(restore_root: None) -> None:
    out = io.StringIO()
    configure("plain", "info", stream=out)
    log = logging.getLogger("maildesk.worker")
    state = {"entry": "1700000000000000000-ab", "message_id": "m1@customer.example", "ticket": None}
    with about(lambda: dict(state)):
        log.info("screened")
        state["ticket"] = 42  # a stage found the ticket: later lines carry it
        log.info("routed")
    log.info("idle")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("maildesk.worker: screened [<m1@customer.example> entry 1700000000000000000-ab]")
    assert lines[1].endswith("routed [ticket #42 <m1@customer.example> entry 1700000000000000000-ab]")
    assert lines[2].endswith("maildesk.worker: idle")


def test_json_lines_parse_and_carry_the_fields(restore_root: None) -> None:
    out = io.StringIO()
    configure("json", "debug", stream=out)
    log = logging.getLogger("maildesk.outbox")
    with about(about_values(ticket=7, message_id="out@desk.example")):
        log.debug("sending")
        try:
            raise RuntimeError("relay said no")
        except RuntimeError:
            log.exception("delivery raised")
    log.warning("no message here", extra={"ticket": 9})
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "debug" and first["logger"] == "maildesk.outbox" and first["message"] == "sending"
    assert (first["ticket"], first["message_id"]) == (7, "out@desk.example") and "entry" not in first
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["ticket"] == 7 and "RuntimeError: relay said no" in second["exception"]
    assert third["ticket"] == 9 and "message_id" not in third  # extra= works outside a message too


def test_configure_again_replaces_the_handler_and_applies_the_level(restore_root: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure("plain", "info", stream=first)
    configure("json", "warning", stream=second)
    log = logging.getLogger("maildesk.app")
    log.info("hidden")
    log.warning("shown")
    assert first.getvalue() == ""
    assert [json.loads(line)["message"] for line in second.getvalue().splitlines()] == ["shown"]
    named = [h for h in logging.getLogger().handlers if h.get_name() == "maildesk"]
    assert len(named) == 1
