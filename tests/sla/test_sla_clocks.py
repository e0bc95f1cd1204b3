"""The SLA clock state machine: start, stop, pause, resume, warn and breach once, timers, replay."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from maildesk.sla.calendar import BusinessCalendar, parse_spans
from maildesk.sla.clocks import (
    Action,
    AgentReply,
    AutoResolve,
    Breach,
    Clocks,
    ClockState,
    CustomerMessage,
    Event,
    FollowUp,
    PolicyChanged,
    PriorityChanged,
    SlaRemoved,
    StatusChanged,
    Warn,
    apply,
    due_actions,
    replay,
)
from maildesk.sla.policy import SlaPolicy, Target

H = timedelta(hours=1)
OFFICE = BusinessCalendar(name="office", timezone="UTC", week=(parse_spans("09:00-17:00"),) * 5 + ((), ()))
STANDARD = SlaPolicy(
    "standard",
    calendar="office",
    first_response=Target.parse("4h"),
    next_response=Target.parse("8h"),
    resolution=Target.parse("5d"),
    warn_at=0.75,
    on_breach=("escalate", "notify_lead"),
    followup_after=Target.parse("2d"),
    resolve_after=Target.parse("4d"),
)
URGENT = SlaPolicy(
    "urgent",
    calendar="office",
    calendar_time=True,
    first_response=Target.parse("1h"),
    resolution=Target.parse("1d"),
    warn_at=0.5,
    on_breach=("raise_priority",),
)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """March 2026: the 2nd is a Monday."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def run(events: list[Event], policy: SlaPolicy | None = STANDARD, clocks: Clocks | None = None) -> Clocks:
    state = clocks or Clocks()
    for event in events:
        state, _ = apply(state, event, policy, OFFICE)
    return state


def clock(clocks: Clocks, kind: str) -> ClockState:
    found = clocks.get(kind)
    assert found is not None, kind
    return found


def test_first_customer_message_starts_first_response_and_resolution() -> None:
    clocks = run([CustomerMessage(at(2, 9))])
    first, resolution = clock(clocks, "first_response"), clock(clocks, "resolution")
    assert first.due_at == at(2, 13) and first.warn_due_at == at(2, 12)
    assert resolution.due_at == at(6, 17)  # 40 business hours: Friday evening
    assert clocks.get("next_response") is None and clocks.policy == "standard"


def test_agent_reply_stops_the_response_clock_and_a_customer_reply_starts_the_next() -> None:
    clocks = run([CustomerMessage(at(2, 9)), CustomerMessage(at(2, 10))])
    assert clocks.get("next_response") is None  # the first response is still owed
    clocks = run([AgentReply(at(2, 11))], clocks=clocks)
    first = clock(clocks, "first_response")
    assert (first.stopped_at, first.stop_reason, first.counted) == (at(2, 11), "met", 2 * H)
    clocks = run([CustomerMessage(at(2, 16))], clocks=clocks)
    following = clock(clocks, "next_response")
    assert following.due_at == at(3, 16)  # 1 h on Monday, 7 h on Tuesday
    clocks = run([CustomerMessage(at(3, 9))], clocks=clocks)
    assert clock(clocks, "next_response").started_at == at(2, 16)  # the oldest unanswered message counts
    clocks = run([AgentReply(at(3, 10))], clocks=clocks)
    assert clock(clocks, "next_response").stop_reason == "met"
    assert clock(clocks, "resolution").stopped_at is None


def test_warning_then_breach_each_exactly_once() -> None:
    clocks = run([CustomerMessage(at(2, 9))])
    seen: list[Action] = []
    for now in (at(2, 11), at(2, 11, 59), at(2, 12), at(2, 12, 1), at(2, 12, 30), at(2, 13), at(2, 13), at(2, 14)):
        clocks, actions = due_actions(clocks, now, STANDARD)
        seen.extend(actions)
        for _ in range(3):  # the sweep running again at the same moment does nothing
            clocks, again = due_actions(clocks, now, STANDARD)
            assert again == ()
    assert seen == [
        Warn("first_response", at(2, 12), at(2, 13)),
        Breach("first_response", at(2, 13), ("escalate", "notify_lead")),
    ]
    first = clock(clocks, "first_response")
    assert (first.warned_at, first.breached_at) == (at(2, 12), at(2, 13))
    for day in range(3, 20):  # days later: the resolution clock warns and breaches, the first response never again
        clocks, actions = due_actions(clocks, at(day, 12), STANDARD)
        seen.extend(actions)
    assert [type(a).__name__ + ":" + a.kind for a in seen if isinstance(a, Warn | Breach)] == [
        "Warn:first_response",
        "Breach:first_response",
        "Warn:resolution",
        "Breach:resolution",
    ]
    assert clock(clocks, "resolution").breached_at == at(6, 17)


def test_a_late_sweep_gives_the_warning_and_the_breach_together() -> None:
    clocks = run([CustomerMessage(at(2, 9))])
    clocks, actions = due_actions(clocks, at(2, 15), STANDARD)
    assert [type(a) for a in actions] == [Warn, Breach]


def test_breach_before_the_agent_reply_is_reported_by_apply() -> None:
    clocks = run([CustomerMessage(at(2, 9))])
    clocks, actions = apply(clocks, AgentReply(at(2, 14)), STANDARD, OFFICE)
    assert [type(a) for a in actions] == [Warn, Breach]
    first = clock(clocks, "first_response")
    assert first.stop_reason == "met" and first.breached_at == at(2, 13)
    clocks, actions = due_actions(clocks, at(2, 16), STANDARD)
    assert actions == ()


def test_pending_pauses_and_a_customer_reply_resumes_with_the_paused_time_recorded() -> None:
    clocks = run([CustomerMessage(at(2, 9)), StatusChanged(at(2, 10), "pending")])
    first = clock(clocks, "first_response")
    assert (first.paused_at, first.counted, first.due_at, first.warn_due_at) == (at(2, 10), H, None, None)
    assert clocks.status == "pending"
    clocks, actions = due_actions(clocks, at(2, 16), STANDARD)  # past the old due time: paused, nothing due
    assert actions == ()
    clocks = run([CustomerMessage(at(3, 10))], clocks=clocks)
    first, resolution = clock(clocks, "first_response"), clock(clocks, "resolution")
    assert first.paused_at is None and first.paused_total == 8 * H  # Mon 10-17 and Tue 9-10
    assert first.due_at == at(3, 13)  # 3 h left after the hour counted before the pause
    assert resolution.counted == H and resolution.due_at == at(9, 17)  # 39 h left from Tuesday 10:00
    assert clocks.status == "open"


def test_status_open_also_resumes() -> None:
    clocks = run([CustomerMessage(at(2, 9)), StatusChanged(at(2, 10), "pending"), StatusChanged(at(2, 11), "open")])
    first = clock(clocks, "first_response")
    assert first.paused_total == H and first.counted == H and first.due_at == at(2, 14)


def test_priority_change_recomputes_the_due_times() -> None:
    clocks = run([CustomerMessage(at(6, 16))])  # Friday 16:00
    assert clock(clocks, "first_response").due_at == at(9, 12)  # 1 h on Friday, 3 h on Monday
    clocks = run([PriorityChanged(at(6, 16, 30), "urgent")], policy=URGENT, clocks=clocks)
    first = clock(clocks, "first_response")
    assert (first.due_at, first.warn_due_at) == (at(6, 17), at(6, 16, 30))  # 1 h of calendar time
    assert clock(clocks, "resolution").due_at == at(7, 16) and clocks.policy == "urgent"
    clocks, actions = due_actions(clocks, at(6, 16, 45), URGENT)
    assert actions == (Warn("first_response", at(6, 16, 30), at(6, 17)),)
    clocks = run([PriorityChanged(at(6, 16, 50), "normal")], clocks=clocks)  # back to standard
    first = clock(clocks, "first_response")
    assert first.due_at == at(9, 12) and first.warned_at == at(6, 16, 30)  # warned once, not again
    clocks, actions = due_actions(clocks, at(9, 11, 59), STANDARD)
    assert actions == ()
    clocks, actions = due_actions(clocks, at(9, 12), STANDARD)
    assert actions == (Breach("first_response", at(9, 12), STANDARD.on_breach),)


def test_policy_change_by_name_recomputes_too() -> None:
    clocks = run([CustomerMessage(at(2, 9)), PolicyChanged(at(2, 9, 10), "urgent")], policy=URGENT)
    assert clock(clocks, "first_response").due_at == at(2, 10)


def test_follow_up_then_auto_resolve() -> None:
    clocks = run([CustomerMessage(at(2, 9)), AgentReply(at(2, 9, 30)), StatusChanged(at(2, 10), "pending")])
    assert clock(clocks, "followup").due_at == at(4, 10)  # 2 business days
    assert clock(clocks, "autoresolve").due_at == at(6, 10)  # 4 business days
    seen: list[Action] = []
    for now in (at(3, 10), at(4, 9, 59), at(4, 10), at(4, 11), at(5, 10), at(6, 10), at(6, 11), at(9, 10)):
        clocks, actions = due_actions(clocks, now, STANDARD)
        seen.extend(actions)
    assert seen == [FollowUp(at(4, 10)), AutoResolve(at(6, 10))]
    clocks = run([StatusChanged(at(6, 10), "resolved")], clocks=clocks)
    resolution = clock(clocks, "resolution")
    assert resolution.stop_reason == "resolved" and resolution.counted == H
    assert resolution.paused_total == 32 * H and clocks.status == "resolved"


def test_a_customer_reply_cancels_the_follow_up_timers() -> None:
    clocks = run(
        [
            CustomerMessage(at(2, 9)),
            AgentReply(at(2, 9, 30)),
            StatusChanged(at(2, 10), "pending"),
            CustomerMessage(at(3, 10)),
        ]
    )
    assert clock(clocks, "followup").stop_reason == "cancelled"
    assert clock(clocks, "autoresolve").stop_reason == "cancelled"
    assert clock(clocks, "next_response").due_at == at(4, 10)
    clocks, actions = due_actions(clocks, at(9, 9), STANDARD)
    assert not any(isinstance(a, FollowUp | AutoResolve) for a in actions)
    # pending again: fresh timers from the new pending time
    clocks = run([AgentReply(at(4, 9)), StatusChanged(at(4, 9), "pending")], clocks=clocks)
    assert clock(clocks, "followup").due_at == at(5, 17) and clock(clocks, "followup").stopped_at is None


def test_resolution_stops_and_reopening_resumes_with_the_time_counted() -> None:
    clocks = run([CustomerMessage(at(2, 9)), AgentReply(at(2, 10)), StatusChanged(at(2, 11), "resolved")])
    resolution = clock(clocks, "resolution")
    assert (resolution.stopped_at, resolution.counted, resolution.due_at) == (at(2, 11), 2 * H, at(6, 17))
    clocks, actions = due_actions(clocks, at(20, 9), STANDARD)
    assert actions == ()  # a resolved ticket never breaches
    clocks = run([StatusChanged(at(4, 9), "closed"), StatusChanged(at(4, 10), "reopened")], clocks=clocks)
    resolution = clock(clocks, "resolution")
    assert resolution.stopped_at is None and resolution.counted == 2 * H
    assert resolution.due_at == at(10, 16)  # 38 h from Wednesday 10:00
    assert clocks.status == "open" and clocks.get("next_response") is None  # an agent reopened it


def test_a_customer_message_on_a_resolved_ticket_reopens_it() -> None:
    clocks = run(
        [
            CustomerMessage(at(2, 9)),
            AgentReply(at(2, 10)),
            StatusChanged(at(2, 11), "resolved"),
            CustomerMessage(at(3, 9)),
        ]
    )
    assert clocks.status == "open"
    assert clock(clocks, "resolution").due_at == at(9, 15)  # 38 h from Tuesday 09:00
    assert clock(clocks, "next_response").due_at == at(3, 17)


def test_resolving_without_a_reply_stops_the_response_clock() -> None:
    clocks = run([CustomerMessage(at(2, 9)), StatusChanged(at(2, 10), "resolved")])
    assert clock(clocks, "first_response").stop_reason == "resolved"
    clocks = run([CustomerMessage(at(2, 11))], clocks=clocks)
    assert clock(clocks, "next_response").due_at == at(3, 11)


def test_removing_the_sla_stops_its_clocks() -> None:
    clocks = run([CustomerMessage(at(2, 9)), StatusChanged(at(2, 10), "pending"), StatusChanged(at(2, 11), "open")])
    clocks = run([SlaRemoved(at(2, 12))], clocks=clocks)
    assert clocks.policy == "" and all(c.stopped_at is not None for c in clocks.clocks)
    assert clock(clocks, "first_response").stopped_at == clock(clocks, "resolution").stopped_at == at(2, 12)
    assert {c.kind: c.stop_reason for c in clocks.clocks} == {
        "first_response": "removed",
        "resolution": "removed",
        "followup": "cancelled",
        "autoresolve": "cancelled",
    }
    clocks, actions = due_actions(clocks, at(20, 9), STANDARD)
    assert actions == ()
    clocks = run([CustomerMessage(at(2, 13))], policy=None, clocks=clocks)  # no policy: nothing starts
    assert all(c.stopped_at is not None for c in clocks.clocks)
    # a rule chooses a policy again: the clocks run on with the time they had counted (2 h)
    clocks = run([PolicyChanged(at(3, 9), "standard")], clocks=clocks)
    first = clock(clocks, "first_response")
    assert first.counted == 2 * H and first.due_at == at(3, 11)


def test_no_policy_means_no_clocks() -> None:
    clocks = run([CustomerMessage(at(2, 9)), AgentReply(at(2, 10))], policy=None)
    assert clocks.clocks == ()


def test_a_target_left_out_has_a_running_clock_without_due_time() -> None:
    policy = SlaPolicy("light", first_response=Target.parse("2h"))
    clocks = run([CustomerMessage(at(2, 9))], policy=policy)
    assert clock(clocks, "resolution").due_at is None and clock(clocks, "first_response").due_at == at(2, 11)
    clocks = run([PolicyChanged(at(2, 10), "standard")], clocks=clocks)  # a target appears: counted from the start
    assert clock(clocks, "resolution").due_at == at(6, 17)


def test_holiday_calendar_in_the_clock() -> None:
    bavaria = BusinessCalendar(timezone="Europe/Berlin", holidays="DE-BY")
    clocks, _ = apply(Clocks(), CustomerMessage(datetime(2026, 1, 5, 15, tzinfo=UTC)), STANDARD, bavaria)
    # 16:00 Berlin on Monday: 1 h left that day, Tuesday the 6th is Epiphany, 3 h on Wednesday (12:00 Berlin)
    assert clock(clocks, "first_response").due_at == datetime(2026, 1, 7, 11, tzinfo=UTC)


STORY: list[Event] = [
    CustomerMessage(at(2, 9)),
    CustomerMessage(at(2, 9, 20)),
    AgentReply(at(2, 12, 30)),  # first response met (warned at 12:00)
    CustomerMessage(at(2, 15)),
    StatusChanged(at(2, 16), "pending"),
    CustomerMessage(at(4, 11)),  # resumes; next response running since Monday 15:00
    PriorityChanged(at(4, 12), "high"),
    AgentReply(at(5, 12)),  # next response breached (due Wednesday 17:00 + paused time)
    CustomerMessage(at(5, 13)),
    AgentReply(at(5, 14)),
    StatusChanged(at(5, 15), "resolved"),
    CustomerMessage(at(9, 10)),  # reopens
    StatusChanged(at(9, 11), "pending"),
]


def test_replay_agrees_with_the_live_engine_whatever_the_sweep_cadence() -> None:
    until = at(20, 9)
    report = replay(STORY, STANDARD, OFFICE, until=until)
    for seed in range(8):
        rng = random.Random(seed)
        clocks, seen = Clocks(), []
        moments = sorted(
            at(2, 9) + timedelta(minutes=rng.randrange(0, 18 * 24 * 60)) for _ in range(rng.randrange(0, 60))
        )
        for event in STORY:
            while moments and moments[0] < event.at:  # the sweep runs in between, now and then
                clocks, actions = due_actions(clocks, moments.pop(0), STANDARD)
                seen.extend(actions)
            clocks, actions = apply(clocks, event, STANDARD, OFFICE)
            seen.extend(actions)
        for moment in [*moments, until]:
            clocks, actions = due_actions(clocks, moment, STANDARD)
            seen.extend(actions)
        assert clocks == report.final
        assert seen == list(report.actions)


def test_replay_reports_compliance_per_target() -> None:
    report = replay(STORY, STANDARD, OFFICE, until=at(20, 9))
    assert (report.target("first_response").met, report.target("first_response").breached) == (1, 0)
    nxt = report.target("next_response")
    assert (nxt.met, nxt.breached, nxt.compliance) == (1, 1, 0.5)
    assert report.target("resolution").open == 1 and report.target("resolution").compliance is None
    kinds = [type(a).__name__ for a in report.actions]
    assert kinds.count("FollowUp") == 1 and kinds.count("AutoResolve") == 1  # from the last pending
    assert len([c for c in report.history if c.kind == "next_response"]) == 3


def test_replay_under_another_policy() -> None:
    loose = SlaPolicy("loose", first_response=Target.parse("1d"), next_response=Target.parse("3d"), warn_at=0)
    report = replay(STORY, loose, OFFICE, until=at(20, 9))
    assert all(t.breached == 0 for t in report.targets)
    assert not any(isinstance(a, Warn) for a in report.actions)
    tight = replay(STORY, URGENT, OFFICE, until=at(20, 9))
    assert tight.target("first_response").breached == 1 and tight.target("resolution").breached == 1
    assert replay([], STANDARD, OFFICE).targets == replay([], None, OFFICE).targets
