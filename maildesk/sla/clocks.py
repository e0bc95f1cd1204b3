"""The SLA clock state machine: pure functions from a ticket's clocks and one event to new clocks.

Owns `apply(clocks, event, policy, calendar) -> (clocks, actions)`, `due_actions(clocks, now)`
(what the sweep does) and `replay(events, policy, calendar)`, which is nothing but `apply`
folded over the events, so a replay agrees with the live engine by construction.

Semantics (issue 13):
- The first customer message starts the first-response and resolution clocks; a later
  customer message starts a next-response clock unless a response clock is already running.
  An agent reply stops the running response clock ("met").
- Pending pauses the running clocks (the business time so far is kept in `counted`) and
  starts the follow-up timers; a customer message or a status back to open resumes them
  (the paused business time is added to `paused_total`) and cancels the timers.
- Resolved/closed stops every clock ("resolved"); reopening resumes the resolution clock with
  the time already counted. A customer message on a resolved ticket reopens it.
- Every apply recomputes the due and warning times of the running clocks from the policy it
  is given, so a priority or policy change (the caller passes the newly selected policy)
  moves them. `policy=None` or `SlaRemoved` stops the clocks ("removed"); a later policy
  change resumes them.
- Warnings and breaches are decided only in `due_actions`, each exactly once: `warned_at`
  is set to the warning time and `breached_at` to the due time (not to when the sweep ran),
  so results do not depend on how often the sweep runs. `apply` first runs `due_actions` at
  the event's time, so a breach that happened before an agent reply is never missed.

Known limit: business time is measured on the calendar of the policy given to the call, so
after a calendar change the running stretch since the clock last (re)started is measured on
the new calendar.

Must not: touch the database, send mail or read the clock; actions are returned as data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from maildesk.sla.calendar import BusinessCalendar
from maildesk.sla.policy import KINDS, SlaPolicy, Target

RESPONSE_KINDS = ("first_response", "next_response")
TIMER_KINDS = ("followup", "autoresolve")
_ZERO = timedelta(0)


@dataclass(frozen=True)
class ClockState:
    """One clock of a ticket. Timers (`followup`, `autoresolve`) use started_at, due_at and stopped_at only.

    `due_at` is None while paused and keeps its last value once stopped (for reports), so a
    sweep looks only at clocks that are neither stopped nor paused."""

    kind: str
    started_at: datetime
    due_at: datetime | None = None
    paused_at: datetime | None = None
    paused_total: timedelta = _ZERO  # business time spent paused
    counted: timedelta = _ZERO  # business time counted before `resumed_at`
    warned_at: datetime | None = None  # the warning time, once warned
    breached_at: datetime | None = None  # the due time, once breached
    stopped_at: datetime | None = None
    resumed_at: datetime | None = None  # start of the running stretch; None while paused or stopped
    warn_due_at: datetime | None = None
    stop_reason: str = ""  # met | resolved | removed | fired | cancelled

    @property
    def running(self) -> bool:
        return self.stopped_at is None and self.paused_at is None

    def elapsed(self, now: datetime, calendar: BusinessCalendar) -> timedelta:
        """Business time counted on this clock up to `now`."""
        if self.resumed_at is None:
            return self.counted
        return self.counted + max(calendar.business_time_between(self.resumed_at, now), _ZERO)


@dataclass(frozen=True)
class Clocks:
    """The current clocks of one ticket (the latest of each kind), its status and policy name."""

    clocks: tuple[ClockState, ...] = ()
    status: str = "new"
    policy: str = ""

    def get(self, kind: str) -> ClockState | None:
        return next((c for c in self.clocks if c.kind == kind), None)

    def put(self, clock: ClockState) -> Clocks:
        others = tuple(c for c in self.clocks if c.kind != clock.kind)
        order = (*KINDS, *TIMER_KINDS)
        return replace(self, clocks=tuple(sorted((*others, clock), key=lambda c: order.index(c.kind))))


# Events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomerMessage:
    at: datetime


@dataclass(frozen=True)
class AgentReply:
    at: datetime


@dataclass(frozen=True)
class StatusChanged:
    at: datetime
    status: str  # new | open | pending | resolved | closed | reopened


@dataclass(frozen=True)
class PriorityChanged:
    at: datetime
    priority: str


@dataclass(frozen=True)
class PolicyChanged:
    at: datetime
    policy: str


@dataclass(frozen=True)
class SlaRemoved:
    at: datetime


Event = CustomerMessage | AgentReply | StatusChanged | PriorityChanged | PolicyChanged | SlaRemoved


# Actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Warn:
    kind: str
    due_at: datetime  # when the warning was due
    breach_at: datetime  # when the clock breaches


@dataclass(frozen=True)
class Breach:
    kind: str
    due_at: datetime
    actions: tuple[str, ...] = ()  # the policy's on_breach, each to be done once


@dataclass(frozen=True)
class FollowUp:
    due_at: datetime


@dataclass(frozen=True)
class AutoResolve:
    due_at: datetime


Action = Warn | Breach | FollowUp | AutoResolve


# The sweep ---------------------------------------------------------------------------------


def due_actions(clocks: Clocks, now: datetime, policy: SlaPolicy | None = None) -> tuple[Clocks, tuple[Action, ...]]:
    """Warnings, breaches and timers due by `now`, each returned once: the new clocks remember them.

    Everything due is returned, in the order it fell due, so the outcome does not depend on
    how often the sweep runs: after a long gap a warning and the breach of the same clock
    come together (the sweep may then skip the warning)."""
    now = _utc(now)
    actions: list[tuple[datetime, Action]] = []
    out = clocks
    for clock in clocks.clocks:
        if clock.kind in TIMER_KINDS:
            if clock.stopped_at is None and clock.due_at is not None and clock.due_at <= now:
                action: Action = FollowUp(clock.due_at) if clock.kind == "followup" else AutoResolve(clock.due_at)
                actions.append((clock.due_at, action))
                out = out.put(replace(clock, stopped_at=clock.due_at, stop_reason="fired"))
            continue
        if not clock.running or clock.breached_at is not None:
            continue
        if clock.warned_at is None and clock.warn_due_at is not None and clock.warn_due_at <= now:
            assert clock.due_at is not None  # a warning time exists only with a due time
            actions.append((clock.warn_due_at, Warn(clock.kind, clock.warn_due_at, clock.due_at)))
            clock = replace(clock, warned_at=clock.warn_due_at)
        if clock.due_at is not None and clock.due_at <= now:
            on_breach = policy.on_breach if policy is not None else ()
            actions.append((clock.due_at, Breach(clock.kind, clock.due_at, on_breach)))
            clock = replace(clock, breached_at=clock.due_at)
        out = out.put(clock)
    actions.sort(key=lambda pair: pair[0])
    return out, tuple(action for _, action in actions)


# Events ------------------------------------------------------------------------------------


def apply(
    clocks: Clocks, event: Event, policy: SlaPolicy | None, calendar: BusinessCalendar
) -> tuple[Clocks, tuple[Action, ...]]:
    """The clocks after `event` under `policy` (the one in force after the event), and what fell due before it."""
    at = _utc(event.at)
    clocks, actions = due_actions(clocks, at, policy)
    if policy is None or isinstance(event, SlaRemoved):
        return _remove(clocks, at, calendar if policy is None else _Book(policy, calendar)), actions
    book = _Book(policy, calendar)
    if isinstance(event, CustomerMessage):
        clocks = _customer_message(clocks, at, book)
    elif isinstance(event, AgentReply):
        for kind in RESPONSE_KINDS:
            clock = clocks.get(kind)
            if clock is not None and clock.stopped_at is None:
                clocks = clocks.put(book.stop(clock, at, "met"))
    elif isinstance(event, StatusChanged):
        clocks = _status(clocks, event.status, at, book)
    elif isinstance(event, PolicyChanged | PriorityChanged):
        for clock in clocks.clocks:
            if clock.stop_reason == "removed":
                clocks = clocks.put(book.restart(clock, at, paused=clocks.status == "pending"))
    clocks = replace(clocks, policy=policy.name)
    return _schedule(clocks, book), actions


def _customer_message(clocks: Clocks, at: datetime, book: _Book) -> Clocks:
    if clocks.status in ("resolved", "closed", "pending"):
        clocks = _status(clocks, "open", at, book)
    clocks = _cancel_timers(clocks, at)
    if clocks.get("resolution") is None:
        clocks = clocks.put(ClockState("resolution", at, resumed_at=at))
    first = clocks.get("first_response")
    if first is None:
        clocks = clocks.put(ClockState("first_response", at, resumed_at=at))
    elif first.stopped_at is not None:
        following = clocks.get("next_response")
        if following is None or following.stopped_at is not None:
            clocks = clocks.put(ClockState("next_response", at, resumed_at=at))
    return replace(clocks, status="new" if clocks.status == "new" else "open")


def _status(clocks: Clocks, status: str, at: datetime, book: _Book) -> Clocks:
    if status == clocks.status or (status == "closed" and clocks.status == "resolved"):
        return replace(clocks, status=status)
    if status == "pending":
        for clock in clocks.clocks:
            if clock.kind in KINDS and clock.running:
                clocks = clocks.put(book.pause(clock, at))
        for kind, target in (("followup", book.policy.followup_after), ("autoresolve", book.policy.resolve_after)):
            if target is not None:
                clocks = clocks.put(ClockState(kind, at))
    elif status in ("resolved", "closed"):
        clocks = _cancel_timers(clocks, at)
        for clock in clocks.clocks:
            if clock.kind in KINDS and clock.stopped_at is None:
                clocks = clocks.put(book.stop(clock, at, "resolved"))
    elif status in ("open", "new", "reopened"):
        clocks = _cancel_timers(clocks, at)
        for clock in clocks.clocks:
            if clock.kind in KINDS and clock.paused_at is not None and clock.stopped_at is None:
                clocks = clocks.put(book.resume(clock, at))
            elif clock.kind == "resolution" and clock.stop_reason == "resolved":
                clocks = clocks.put(book.restart(clock, at, paused=False))
        status = "open" if status == "reopened" else status
    else:
        raise ValueError(f"unknown ticket status {status!r}")
    return replace(clocks, status=status)


def _cancel_timers(clocks: Clocks, at: datetime) -> Clocks:
    for clock in clocks.clocks:
        if clock.kind in TIMER_KINDS and clock.stopped_at is None:
            clocks = clocks.put(replace(clock, stopped_at=at, stop_reason="cancelled"))
    return clocks


def withdraw(clocks: Clocks, at: datetime, calendar: BusinessCalendar) -> Clocks:
    """Stop every clock ("removed", the time counted so far kept) without deciding what fell
    due: the policy is gone from the configuration, so nothing it promised is acted on."""
    return _remove(clocks, at, calendar)


def _remove(clocks: Clocks, at: datetime, counter: BusinessCalendar | _Book) -> Clocks:
    """Stop every clock: the SLA no longer applies (the time counted so far is kept)."""
    for clock in clocks.clocks:
        if clock.stopped_at is None:
            if clock.kind in TIMER_KINDS:
                clocks = clocks.put(replace(clock, stopped_at=at, stop_reason="cancelled"))
            else:
                clock = _count(clock, at, counter)
                clocks = clocks.put(replace(clock, stopped_at=at, stop_reason="removed", due_at=None, warn_due_at=None))
    return replace(clocks, policy="")


def _count(clock: ClockState, at: datetime, counter: BusinessCalendar | _Book) -> ClockState:
    """Close the running stretch (into `counted`) or the pause (into `paused_total`) at `at`."""
    if isinstance(counter, _Book):
        calendar = counter.clock_calendar(clock.kind)
    else:
        calendar = counter
    if clock.resumed_at is not None:
        counted = clock.counted + max(calendar.business_time_between(clock.resumed_at, at), _ZERO)
        return replace(clock, counted=counted, resumed_at=None)
    if clock.paused_at is not None:
        paused = clock.paused_total + max(calendar.business_time_between(clock.paused_at, at), _ZERO)
        return replace(clock, paused_total=paused, paused_at=None)
    return clock


@dataclass(frozen=True)
class _Book:
    """Business-time arithmetic for one policy and calendar."""

    policy: SlaPolicy
    calendar: BusinessCalendar

    def target(self, kind: str) -> Target | None:
        if kind == "followup":
            return self.policy.followup_after
        if kind == "autoresolve":
            return self.policy.resolve_after
        return self.policy.target(kind)

    def clock_calendar(self, kind: str) -> BusinessCalendar:
        return self.policy.clock_calendar(self.target(kind), self.calendar)

    def pause(self, clock: ClockState, at: datetime) -> ClockState:
        return replace(_count(clock, at, self), paused_at=at, due_at=None, warn_due_at=None)

    def resume(self, clock: ClockState, at: datetime) -> ClockState:
        return replace(_count(clock, at, self), resumed_at=at)

    def stop(self, clock: ClockState, at: datetime, reason: str) -> ClockState:
        return replace(_count(clock, at, self), stopped_at=at, stop_reason=reason, warn_due_at=None)

    def restart(self, clock: ClockState, at: datetime, paused: bool) -> ClockState:
        """A stopped clock runs again (reopen, SLA back) with the time it had counted."""
        clock = replace(clock, stopped_at=None, stop_reason="")
        return replace(clock, paused_at=at) if paused else replace(clock, resumed_at=at)


def _schedule(clocks: Clocks, book: _Book) -> Clocks:
    """Due and warning times of the running clocks and timers under the book's policy."""
    for clock in clocks.clocks:
        if clock.stopped_at is not None:
            continue
        target = book.target(clock.kind)
        calendar = book.clock_calendar(clock.kind)
        if clock.kind in TIMER_KINDS:
            if target is None:
                clocks = clocks.put(replace(clock, stopped_at=clock.started_at, stop_reason="cancelled"))
            else:
                clocks = clocks.put(
                    replace(clock, due_at=calendar.add_business_time(clock.started_at, target.duration(calendar)))
                )
            continue
        if clock.resumed_at is None or target is None:
            clocks = clocks.put(replace(clock, due_at=None, warn_due_at=None))
            continue
        total = target.duration(calendar)
        due = calendar.add_business_time(clock.resumed_at, max(total - clock.counted, _ZERO))
        warn = None
        if book.policy.warn_at > 0:
            warn = calendar.add_business_time(clock.resumed_at, max(total * book.policy.warn_at - clock.counted, _ZERO))
        clocks = clocks.put(replace(clock, due_at=due, warn_due_at=warn))
    return clocks


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# Replay ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetReport:
    kind: str
    met: int = 0
    breached: int = 0
    open: int = 0  # still running or paused at the end

    @property
    def compliance(self) -> float | None:
        """Share of the finished clocks that kept the target; None when none finished."""
        done = self.met + self.breached
        return self.met / done if done else None


@dataclass(frozen=True)
class ReplayReport:
    final: Clocks
    history: tuple[ClockState, ...]  # every clock that ran, in the state it ended in
    actions: tuple[Action, ...]
    targets: tuple[TargetReport, ...]

    def target(self, kind: str) -> TargetReport:
        return next(t for t in self.targets if t.kind == kind)


def replay(
    events: Iterable[Event], policy: SlaPolicy | None, calendar: BusinessCalendar, until: datetime | None = None
) -> ReplayReport:
    """What the clocks would have done for these events under `policy` and `calendar`.

    The events are taken in time order (stable for equal times). `until`, when given, runs the
    sweep once more at that moment, so clocks still running at the end can breach."""
    clocks = Clocks()
    actions: list[Action] = []
    history: dict[tuple[str, datetime], ClockState] = {}
    ordered = sorted(events, key=lambda e: _utc(e.at))
    for event in ordered:
        clocks, done = apply(clocks, event, policy, calendar)
        actions.extend(done)
        history.update(((c.kind, c.started_at), c) for c in clocks.clocks)
    if until is not None:
        clocks, done = due_actions(clocks, until, policy)
        actions.extend(done)
        history.update(((c.kind, c.started_at), c) for c in clocks.clocks)
    return ReplayReport(clocks, tuple(history.values()), tuple(actions), _targets(history.values()))


def _targets(history: Iterable[ClockState]) -> tuple[TargetReport, ...]:
    counts = {kind: [0, 0, 0] for kind in KINDS}
    for clock in history:
        if clock.kind not in counts:
            continue
        if clock.breached_at is not None:
            counts[clock.kind][1] += 1
        elif clock.stop_reason in ("met", "resolved"):
            counts[clock.kind][0] += 1
        elif clock.stopped_at is None:
            counts[clock.kind][2] += 1
    return tuple(TargetReport(kind, *numbers) for kind, numbers in counts.items())
