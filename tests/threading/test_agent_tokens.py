"""Agent reply tokens: bound to the support address, the ticket, the agent and the sequence."""

import pytest

from maildesk.threading.tokens import (
    agent_token_base,
    make_agent_address,
    make_reply_address,
    parse_agent_address,
    parse_reply_address,
)

SECRET = "s3cret"
ANNA = "anna@desk.example.com"
BOB = "bob@desk.example.com"


def _token(ticket: int = 42, seq: int = 7, agent: str = ANNA) -> str:
    return make_agent_address(SECRET, "Support@Example.com", ticket, agent, seq)


def test_round_trip_names_ticket_and_sequence():
    addr = _token()
    assert addr.startswith("support+a42.7-") and addr.endswith("@example.com")
    assert parse_agent_address(SECRET, addr, ANNA) == (42, 7)
    assert parse_agent_address(SECRET, f"<{addr}>", ANNA) == (42, 7)
    assert agent_token_base(addr) == "support@example.com"


def test_large_sequence_such_as_a_timestamp():
    addr = _token(seq=1_741_000_000_123_456)
    assert parse_agent_address(SECRET, addr, ANNA) == (42, 1_741_000_000_123_456)


def test_case_differences_are_harmless():
    addr = _token(agent="Anna@Desk.Example.COM")
    assert parse_agent_address(SECRET, addr, ANNA) == (42, 7)
    assert parse_agent_address(SECRET, addr.upper(), ANNA) == (42, 7)  # some relays change case
    assert parse_agent_address(SECRET, addr, "ANNA@desk.example.com") == (42, 7)
    assert parse_agent_address(SECRET, addr, " <anna@desk.example.com> ") == (42, 7)


def test_plus_tag_on_the_support_address_is_dropped():
    addr = make_agent_address(SECRET, "support+sales@example.com", 42, ANNA, 7)
    assert addr.startswith("support+a42.7-")
    assert parse_agent_address(SECRET, addr, ANNA) == (42, 7)


def test_the_right_token_from_another_sender_is_refused():
    addr = _token()
    assert parse_agent_address(SECRET, addr, BOB) is None
    assert parse_agent_address(SECRET, addr, "customer@example.org") is None
    assert parse_agent_address(SECRET, addr, "") is None
    assert parse_agent_address(SECRET, addr, "not an address") is None


def _flip_last_sig_char(addr: str) -> str:
    at = addr.index("@")
    return addr[: at - 1] + ("a" if addr[at - 1] != "a" else "b") + addr[at:]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda a: a.replace("+a42.", "+a43."),  # claims another ticket
        lambda a: a.replace(".7-", ".8-"),  # claims a newer notification
        lambda a: a.replace("support+", "sales+"),  # bound to the base address
        lambda a: a.replace("@example.com", "@evil.example"),
        _flip_last_sig_char,  # forged signature
        lambda a: a.split("-")[0] + "-" + "a" * 10 + "@example.com",  # guessed signature
        lambda a: a.replace("-", "-x", 1),  # signature of the wrong length
        lambda a: "support@example.com",
        lambda a: "",
    ],
)
def test_forgeries_are_refused(mutate):
    assert parse_agent_address(SECRET, mutate(_token()), ANNA) is None


def test_other_secret_refused():
    assert parse_agent_address("other", _token(), ANNA) is None


def test_customer_and_agent_tokens_do_not_cross():
    customer = make_reply_address(SECRET, "support@example.com", 42)
    assert parse_agent_address(SECRET, customer, ANNA) is None
    assert agent_token_base(customer) is None
    assert parse_reply_address(SECRET, _token()) is None
    # a customer-token shape with an agent prefix and the customer signature is refused too
    sig = customer.split("-")[1].split("@")[0]
    assert parse_agent_address(SECRET, f"support+a42.0-{sig}@example.com", ANNA) is None


def test_plain_plus_addresses_are_not_tokens():
    for addr in ("support+billing@example.com", "support+a42@example.com", "support+a42.7@example.com"):
        assert parse_agent_address(SECRET, addr, ANNA) is None
        assert agent_token_base(addr) is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        make_agent_address(SECRET, "no-at-sign", 1, ANNA, 0)
    with pytest.raises(ValueError):
        make_agent_address(SECRET, "support@example.com", 1, "two@at@signs", 0)
    with pytest.raises(ValueError):
        make_agent_address(SECRET, "support@example.com", 1, "", 0)
    with pytest.raises(ValueError):
        make_agent_address(SECRET, "support@example.com", 1, ANNA, -1)
    with pytest.raises(ValueError):
        make_agent_address("", "support@example.com", 1, ANNA, 0)
