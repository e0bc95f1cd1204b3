"""The metrics collector, in process: the figures a scrape shows come from the live state
(the App's `metric_facts`), exactly. The endpoint of a running daemon is scraped in
tests/observe/test_service.py."""

from __future__ import annotations

import time
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from maildesk.observe.metrics import MetricFacts, MetricsEndpoint
from maildesk.sla.policy import parse_sla
from tests.support.mailgen import eml
from tests.support.routing_kit import Desk, team_settings

SLA = """
[[sla.policy]]
name = "standard"
time = "calendar"
first_response = "1h"
resolution = "8h"
warn_at = 0.5
"""
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def samples(endpoint: MetricsEndpoint) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    text = generate_latest(endpoint.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_the_collector_shows_imap_lag_spool_and_problems() -> None:
    now = time.time()
    facts = MetricFacts(
        received={"smtp": 2, "imap": 5},
        errors={"route": 1},
        smtp={"accepted": 2, "tempfailed": 1, "refused": 3},
        spool={"incoming": 4, "failed": 1},
        spool_oldest_seconds=12.5,
        outbox={"queued": 2, "sending": 0, "failed": 1, "held": 0},
        outbox_totals={"sent": 7, "deferred": 2, "failed": 1},
        sla={"warning": {"first_response": 3}, "breach": {}},
        imap=[
            {
                "name": "support",
                "connected": True,
                "last_success": now - 30,
                "folders": {"INBOX": {"pending": 6}, "Spam": {"pending": 0}},
            },
            {"name": "never", "connected": False, "last_success": None, "folders": {}},
        ],
        problems={"rules": 2},
        started_at=now - 100,
    )
    got = samples(MetricsEndpoint(lambda: facts))
    assert got[("maildesk_messages_received_total", (("source", "smtp"),))] == 2
    assert got[("maildesk_messages_received_total", (("source", "imap"),))] == 5
    assert got[("maildesk_messages_received_total", (("source", "inject"),))] == 0
    assert got[("maildesk_messages_received_total", (("source", "import"),))] == 0
    assert got[("maildesk_smtp_replies_total", (("reply", "tempfailed"),))] == 1
    assert got[("maildesk_spool_entries", (("state", "incoming"),))] == 4
    assert got[("maildesk_spool_entries", (("state", "active"),))] == 0
    assert got[("maildesk_spool_oldest_seconds", ())] == 12.5
    assert got[("maildesk_outbox_rows", (("state", "failed"),))] == 1
    assert got[("maildesk_outbox_sent_total", ())] == 7
    assert got[("maildesk_sla_warnings_total", (("kind", "first_response"),))] == 3
    assert got[("maildesk_sla_breaches_total", (("kind", "first_response"),))] == 0
    assert 30 <= got[("maildesk_imap_seconds_since_success", (("mailbox", "support"),))] < 60
    assert 100 <= got[("maildesk_imap_seconds_since_success", (("mailbox", "never"),))] < 130  # since the start
    assert got[("maildesk_imap_connected", (("mailbox", "never"),))] == 0
    assert got[("maildesk_imap_pending", (("folder", "INBOX"), ("mailbox", "support")))] == 6
    assert got[("maildesk_errors_total", (("stage", "route"),))] == 1
    assert got[("maildesk_config_problems", (("part", "rules"),))] == 2
    assert got[("maildesk_config_problems", (("part", "templates"),))] == 0
    assert got[("maildesk_database_up", ())] == 1 and got[("maildesk_up", ())] == 1


def test_a_failing_gathering_gives_up_0_not_an_error() -> None:
    def broken() -> MetricFacts:
        raise RuntimeError("boom")

    got = samples(MetricsEndpoint(broken))
    assert got == {("maildesk_up", ()): 0.0, **{k: v for k, v in got.items() if k[0].startswith("maildesk_pipeline")}}


@pytest.fixture
def desk(tmp_path: Path, database_url: str) -> Iterator[Desk]:
    settings = team_settings(
        tmp_path, database_url, None, agents=[{"email": "lia@example.com", "name": "Lia", "tiers": ["L1"]}]
    )
    d = Desk(replace(settings, sla=parse_sla(tomllib.loads(SLA)["sla"])), now=T0)
    yield d
    d.close()


def test_a_desk_s_sla_outbox_and_latency_figures_are_exact(desk: Desk) -> None:
    app = desk.app
    endpoint = MetricsEndpoint(app.metric_facts)
    app.worker.stats.latency_observer = endpoint.observe_latency
    for n in range(3):
        app.spool.put(eml(subject=f"Printer {n}", sender=f"c{n}@customer.example"), "inject")
    assert app.process()["tickets_created"] == 3
    for minutes in (31, 61, 62):  # warning at 30 min, breach at 60 min, nothing new at 62
        app.sla_sweep(T0 + timedelta(minutes=minutes))
    got = samples(endpoint)
    assert got[("maildesk_sla_warnings_total", (("kind", "first_response"),))] == 3
    assert got[("maildesk_sla_breaches_total", (("kind", "first_response"),))] == 3
    assert got[("maildesk_sla_warnings_total", (("kind", "resolution"),))] == 0
    queued = [o for o in desk.outbox() if o.state == "queued"]
    assert len(queued) >= 3  # three acknowledgements at least, plus the SLA mails to the agent
    assert got[("maildesk_outbox_rows", (("state", "queued"),))] == len(queued)
    assert got[("maildesk_outbox_rows", (("state", "failed"),))] == 0
    assert got[("maildesk_messages_received_total", (("source", "inject"),))] == 3
    assert got[("maildesk_pipeline_latency_seconds_count", ())] == 3
    assert got[("maildesk_spool_entries", (("state", "incoming"),))] == 0
    assert got[("maildesk_messages_received_total", (("source", "smtp"),))] == 0
    assert [k for k in got if k[0] == "maildesk_errors_total"] == []  # nothing went wrong

    class DownMailbox:  # a poller's status() after two failed connections
        @staticmethod
        def status() -> dict[str, object]:
            return {"name": "box", "connected": False, "last_success": None, "folders": {}, "errors": 2}

    app.pollers.append(DownMailbox())  # type: ignore[arg-type]
    got = samples(endpoint)
    assert got[("maildesk_errors_total", (("stage", "imap"),))] == 2
    assert got[("maildesk_imap_connected", (("mailbox", "box"),))] == 0


def test_an_endpoint_that_cannot_listen_says_why_and_serves_when_it_can() -> None:
    import socket
    import urllib.request

    from tests.support.net import free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy = MetricsEndpoint(MetricFacts)
        assert not busy.start("127.0.0.1", taken.getsockname()[1])
        assert (
            busy.error.startswith(f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}: ") and busy.listening is None
        )
    port = free_port()
    endpoint = MetricsEndpoint(MetricFacts)
    assert endpoint.start("127.0.0.1", port) and endpoint.listening == f"127.0.0.1:{port}"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert b"maildesk_up 1.0" in resp.read()
    finally:
        endpoint.stop()
