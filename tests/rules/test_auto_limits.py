"""check_limits: suppression and each window's boundary."""

from __future__ import annotations

import pytest

from maildesk.rules.limits import LimitPolicy, SentCounts, check_limits

POLICY = LimitPolicy(per_recipient_hour=5, per_recipient_day=20, per_ticket_day=10, global_hour=200)


def counts(**kw: int) -> SentCounts:
    base = {"recipient_hour": 0, "recipient_day": 0, "ticket_day": 0, "global_hour": 0}
    base.update(kw)
    return SentCounts(**base)


def test_nothing_sent_is_allowed() -> None:
    decision = check_limits(POLICY, counts(), recipient="A@X.com", suppressed=False)
    assert decision.allowed is True
    assert "a@x.com" in decision.reason
    assert decision.to_json()["allowed"] is True


def test_suppressed_recipient_is_refused_with_reason() -> None:
    decision = check_limits(
        POLICY, counts(), recipient="a@x.com", suppressed=True, suppressed_reason="bounced permanently (5.1.1)"
    )
    assert decision.allowed is False
    assert decision.reason == "recipient a@x.com is suppressed: bounced permanently (5.1.1)"


def test_suppressed_without_reason() -> None:
    assert (
        check_limits(POLICY, counts(), recipient="a@x.com", suppressed=True).reason == "recipient a@x.com is suppressed"
    )


def test_recipient_hour_boundary() -> None:
    assert check_limits(POLICY, counts(recipient_hour=4), recipient="a@x.com", suppressed=False).allowed
    decision = check_limits(POLICY, counts(recipient_hour=5), recipient="a@x.com", suppressed=False)
    assert not decision.allowed
    assert decision.reason == "recipient a@x.com got 5 automatic mails in the last hour (limit 5)"


def test_recipient_day_boundary() -> None:
    assert check_limits(POLICY, counts(recipient_day=19), recipient="a@x.com", suppressed=False).allowed
    decision = check_limits(POLICY, counts(recipient_day=20), recipient="a@x.com", suppressed=False)
    assert not decision.allowed
    assert decision.reason == "recipient a@x.com got 20 automatic mails in the last 24 hours (limit 20)"


def test_ticket_day_boundary() -> None:
    assert check_limits(POLICY, counts(ticket_day=9), recipient="a@x.com", suppressed=False).allowed
    decision = check_limits(POLICY, counts(ticket_day=10), recipient="a@x.com", suppressed=False)
    assert not decision.allowed
    assert decision.reason == "this ticket sent 10 automatic mails in the last 24 hours (limit 10)"


def test_global_hour_boundary() -> None:
    assert check_limits(POLICY, counts(global_hour=199), recipient="a@x.com", suppressed=False).allowed
    decision = check_limits(POLICY, counts(global_hour=200), recipient="a@x.com", suppressed=False)
    assert not decision.allowed
    assert decision.reason == "maildesk sent 200 automatic mails in the last hour (limit 200)"


def test_most_specific_window_is_reported_first() -> None:
    decision = check_limits(POLICY, counts(recipient_hour=9, global_hour=999), recipient="a@x.com", suppressed=False)
    assert "last hour (limit 5)" in decision.reason


def test_zero_limit_allows_nothing_and_singular_wording() -> None:
    policy = LimitPolicy(per_recipient_hour=1, per_recipient_day=0, per_ticket_day=10, global_hour=10)
    decision = check_limits(policy, counts(), recipient="a@x.com", suppressed=False)
    assert not decision.allowed
    assert decision.reason == "recipient a@x.com got 0 automatic mails in the last 24 hours (limit 0)"
    one = check_limits(LimitPolicy(1, 5, 5, 5), counts(recipient_hour=1), recipient="a@x.com", suppressed=False)
    assert one.reason == "recipient a@x.com got 1 automatic mail in the last hour (limit 1)"


def test_negative_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="per_ticket_day"):
        LimitPolicy(per_recipient_hour=1, per_recipient_day=1, per_ticket_day=-1, global_hour=1)
