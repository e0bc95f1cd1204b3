"""SLA configuration: [[sla.calendar]] and [[sla.policy]] tables, errors naming the key, policy choice."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from maildesk.errors import ConfigError
from maildesk.sla.calendar import CALENDAR_TIME, parse_spans
from maildesk.sla.policy import DEFAULT_TOML, SlaPolicy, Target, parse_sla, select_policy

H = timedelta(hours=1)


def test_default_toml_is_a_working_configuration() -> None:
    sla = parse_sla(tomllib.loads(DEFAULT_TOML)["sla"], default_timezone="UTC")
    assert [p.name for p in sla.policies] == ["vip", "urgent", "standard"]
    office = sla.calendar("office")
    assert office.timezone == "Europe/Berlin" and office.holidays == "DE-BY"
    assert office.week[0] == parse_spans("08:30-12:30, 13:30-17:30") and office.week[5] == ()
    assert date(2026, 12, 24) in office.closed
    assert office.day_length == 8 * H
    standard = sla.policy("standard")
    assert standard is not None
    assert standard.first_response == Target("8h", seconds=8 * 3600)
    assert standard.resolution is not None and standard.resolution.duration(office) == 40 * H
    assert standard.warn_at == 0.8 and standard.on_breach == ("notify_lead",)
    assert standard.followup_after is not None and standard.resolve_after is not None
    urgent = sla.policy("urgent")
    assert urgent is not None and urgent.calendar_time
    assert urgent.clock_calendar(urgent.resolution, office) is CALENDAR_TIME
    assert sla.calendar("default").timezone == "UTC"  # always there


def test_empty_table_means_no_policies() -> None:
    sla = parse_sla({}, default_timezone="Europe/Vienna")
    assert sla.enabled and sla.policies == ()
    assert sla.calendar("default").timezone == "Europe/Vienna"
    assert sla.calendar("default").week[0] == parse_spans("09:00-17:00")


@pytest.mark.parametrize(
    ("text", "seconds", "days", "calendar_time"),
    [
        ("8h", 8 * 3600, 0, None),
        ("30m", 1800, 0, None),
        ("90 min", 5400, 0, None),
        ("1.5h", 5400, 0, None),
        ("5d", 0, 5, None),
        ("1d 4h", 4 * 3600, 1, None),
        ("4h calendar", 4 * 3600, 0, True),
        ("2d business", 0, 2, False),
    ],
)
def test_targets(text: str, seconds: int, days: float, calendar_time: bool | None) -> None:
    target = Target.parse(text)
    assert (target.seconds, target.days, target.calendar_time) == (seconds, days, calendar_time)


def test_a_calendar_target_in_a_business_policy() -> None:
    sla = parse_sla({"policy": [{"name": "p", "first_response": "4h calendar", "resolution": "2d"}]})
    policy, default = sla.policies[0], sla.calendar("default")
    assert policy.clock_calendar(policy.first_response, default) is CALENDAR_TIME
    assert policy.clock_calendar(policy.resolution, default) is default


def test_calendar_shapes() -> None:
    sla = parse_sla(
        {
            "calendar": [
                {
                    "name": "shop",
                    "timezone": "America/New_York",
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
                    "hours": "10:00-18:00",
                    "sat": "10:00-14:00",
                    "wed": "",
                    "closed": [date(2026, 7, 3), "2026-12-24"],
                    "holidays": "us-ny",
                },
                {"name": "always", "time": "calendar"},
                {"name": "weekend-ish", "days": "fri-mon"},
            ]
        }
    )
    shop = sla.calendar("shop")
    assert shop.week[2] == () and shop.week[5] == parse_spans("10:00-14:00") and shop.week[6] == ()
    assert shop.closed == frozenset({date(2026, 7, 3), date(2026, 12, 24)}) and shop.holidays == "US-NY"
    assert sla.calendar("always").calendar_time
    assert [bool(d) for d in sla.calendar("weekend-ish").week] == [True, False, False, False, True, True, True]


def bad(table: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_sla(table)
    return str(info.value)


def test_errors_name_the_key() -> None:
    policy = {"name": "a", "first_response": "8h"}
    assert bad({"policy": [policy, {"name": "b", "first_response": "8x"}]}).startswith(
        "sla.policy[1].first_response: cannot read '8x'"
    )
    assert bad({"policy": [{"name": "a", "resolution": "0h"}]}).startswith("sla.policy[0].resolution:")
    assert bad({"policy": [{"name": "a", "resolution": 8}]}).startswith("sla.policy[0].resolution: must be")
    assert bad({"policy": [{"name": "a", "frist_response": "8h"}]}).startswith(
        "sla.policy[0].frist_response: unknown key"
    )
    assert bad({"policy": [policy, policy]}) == "sla.policy[1].name: duplicate policy name 'a'"
    assert bad({"policy": [{"first_response": "8h"}]}).startswith("sla.policy[0].name: required")
    assert bad({"policy": [{"name": "none"}]}).startswith("sla.policy[0].name: 'none' is reserved")
    assert bad({"policy": [{"name": "a", "calendar": "office"}]}).startswith(
        "sla.policy[0].calendar: unknown calendar 'office'"
    )
    assert bad({"policy": [{"name": "a", "priority": ["hihg"]}]}).startswith("sla.policy[0].priority: unknown priority")
    assert bad({"policy": [{"name": "a", "tier": "L9"}]}).startswith("sla.policy[0].tier: unknown tier 'L9'")
    assert bad({"policy": [{"name": "a", "vip": "yes"}]}).startswith("sla.policy[0].vip: must be true or false")
    assert bad({"policy": [{"name": "a", "warn_at": 80}]}).startswith("sla.policy[0].warn_at:")
    assert bad({"policy": [{"name": "a", "on_breach": ["page_ceo"]}]}).startswith(
        "sla.policy[0].on_breach: unknown action 'page_ceo'"
    )
    assert bad({"policy": [{"name": "a", "time": "wall"}]}).startswith("sla.policy[0].time:")
    assert bad({"policy": [{"name": "a", "followup_after": "3d", "resolve_after": "2d"}]}).startswith(
        "sla.policy[0].resolve_after: must be longer than followup_after"
    )
    assert bad({"calendar": [{"name": "c", "timezone": "Mars/Olympus"}]}).startswith(
        "sla.calendar[0].timezone: unknown time zone"
    )
    assert bad({"calendar": [{"name": "c", "hours": "09:00-12:00, 11:00-13:00"}]}).startswith(
        "sla.calendar[0].hours: spans 09:00-12:00 and 11:00-13:00 overlap"
    )
    assert bad({"calendar": [{"name": "c", "fri": "9-5"}]}).startswith("sla.calendar[0].fri:")
    assert bad({"calendar": [{"name": "c", "days": "mon-fry"}]}).startswith("sla.calendar[0].days: unknown day")
    assert bad({"calendar": [{"name": "c", "days": []}]}).startswith("sla.calendar[0]: no working hours")
    assert bad({"calendar": [{"name": "c", "holidays": "XX"}]}).startswith("sla.calendar[0].holidays: unknown")
    assert bad({"calendar": [{"name": "c", "holidays": "DE-ZZ"}]}).startswith("sla.calendar[0].holidays: unknown")
    assert bad({"calendar": [{"name": "c", "closed": ["24.12.2026"]}]}).startswith("sla.calendar[0].closed:")
    assert bad({"calendar": [{"name": "c"}, {"name": "c"}]}).startswith("sla.calendar[1].name: duplicate")
    assert bad({"enabled": "yes"}).startswith("sla.enabled:")
    assert bad({"polices": []}).startswith("sla.polices: unknown key")
    assert bad({"policy": {"name": "a"}}).startswith("sla.policy: must be an array of tables")


POLICIES = (
    SlaPolicy("vip", vip=True),
    SlaPolicy("urgent", priorities=("urgent", "high")),
    SlaPolicy("billing", queues=("billing",), tiers=("L2", "L3")),
    SlaPolicy("plain", vip=False),
)


def test_select_policy_by_conditions_in_order() -> None:
    def pick(priority: str = "normal", queue: str = "default", tier: str = "L1", vip: bool = False) -> str | None:
        policy = select_policy(POLICIES, priority, queue, tier, vip)
        return policy.name if policy else None

    assert pick(vip=True, priority="urgent") == "vip"  # the first match wins
    assert pick(priority="high") == "urgent"
    assert pick(queue="billing", tier="L2") == "billing"
    assert pick(queue="billing", tier="L1") == "plain"
    assert select_policy(POLICIES[:3], "normal", "default", "L1", False) is None


def test_select_policy_by_rule_choice() -> None:
    chosen = select_policy(POLICIES, "normal", "default", "L1", False, rule_choice="billing")
    assert chosen is not None and chosen.name == "billing"
    assert select_policy(POLICIES, "urgent", "default", "L1", True, rule_choice="none") is None
    fallback = select_policy(POLICIES, "urgent", "default", "L1", False, rule_choice="gone")
    assert fallback is not None and fallback.name == "urgent"


def test_describe() -> None:
    sla = parse_sla(tomllib.loads(DEFAULT_TOML)["sla"])
    assert sla.policies[0].describe() == (
        "vip: first response 2h; next response 4h; resolution 2d (calendar office; when VIP)"
    )
    assert "08:30-12:30, 13:30-17:30" in sla.calendar("office").describe()
    assert sla.calendar("office").add_business_time(datetime(2026, 1, 5, 16, tzinfo=UTC), H) == datetime(
        2026, 1, 7, 8, tzinfo=UTC
    )  # 17:00 Berlin: half an hour until 17:30, the 6th is a holiday in Bavaria, 08:30-09:00 on the 7th
