import pytest

from maildesk.threading import make_message_id, make_reply_address, parse_message_id, parse_reply_address

SECRET = "s3cret"


def test_message_id_round_trip():
    mid = make_message_id(SECRET, 42, "help.example.com", nonce="abc123")
    assert mid.startswith("md.42.abc123.") and mid.endswith("@help.example.com")
    assert "<" not in mid and ">" not in mid
    assert parse_message_id(SECRET, mid) == 42
    assert parse_message_id(SECRET, f"<{mid}>") == 42
    assert parse_message_id(SECRET, mid.upper()) == 42  # some relays change case


def test_message_ids_are_unique_by_default():
    a, b = make_message_id(SECRET, 1, "x.org"), make_message_id(SECRET, 1, "x.org")
    assert a != b
    assert parse_message_id(SECRET, a) == parse_message_id(SECRET, b) == 1


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.replace("md.42.", "md.43."),  # claims another ticket
        lambda m: m.replace(".abc123.", ".abc124."),  # other nonce
        lambda m: m[: m.index("@") - 1] + ("a" if m[m.index("@") - 1] != "a" else "b") + m[m.index("@") :],
        lambda m: "foo" + m,
        lambda m: m.split("@")[0],
        lambda m: "",
    ],
)
def test_forged_message_ids_are_refused(mutate):
    mid = make_message_id(SECRET, 42, "help.example.com", nonce="abc123")
    assert parse_message_id(SECRET, mutate(mid)) is None


def test_other_secret_refused():
    mid = make_message_id(SECRET, 42, "help.example.com")
    assert parse_message_id("other", mid) is None


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        make_message_id(SECRET, 1, "x.org", nonce="a.b")
    with pytest.raises(ValueError):
        make_message_id(SECRET, 1, "bad domain")
    with pytest.raises(ValueError):
        make_message_id("", 1, "x.org")


def test_reply_address_round_trip():
    addr = make_reply_address(SECRET, "Support@Example.com", 42)
    assert addr.startswith("support+t42-") and addr.endswith("@example.com")
    assert parse_reply_address(SECRET, addr) == 42
    assert parse_reply_address(SECRET, addr.upper()) == 42
    assert parse_reply_address(SECRET, f"<{addr}>") == 42


def test_reply_address_forgeries_refused():
    addr = make_reply_address(SECRET, "support@example.com", 42)
    assert parse_reply_address(SECRET, addr.replace("+t42-", "+t43-")) is None
    assert parse_reply_address(SECRET, addr.replace("support+", "sales+")) is None  # bound to the address
    assert parse_reply_address(SECRET, addr.replace("@example.com", "@evil.com")) is None
    assert parse_reply_address(SECRET, "support@example.com") is None
    assert parse_reply_address("other", addr) is None


def test_signature_is_the_whole_digests_prefix():
    """`_sign` encodes only the digest bytes its characters come from; tokens already sent
    (signed from the whole digest) must still verify, so both must give the same text."""
    import base64
    import hashlib
    import hmac

    from maildesk.threading import tokens

    for i in range(300):
        message = f"mid:{i}:{i * 7919:x}"
        whole = hmac.new(b"s3cret", message.encode(), hashlib.sha256).digest()
        assert tokens._sign("s3cret", message) == base64.b32encode(whole).decode().lower()[: tokens.SIG_LEN]
