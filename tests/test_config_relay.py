"""A relay that logs in needs its password at start (issue 16), as an IMAP mailbox does:
`load_settings` names the key instead of every outgoing mail failing later."""

from __future__ import annotations

from pathlib import Path

import pytest

from maildesk.config import load_settings
from maildesk.errors import ConfigError

CONFIG = """
[desk]
data_dir = "{data}"
support_addresses = ["support@example.com"]

[outbound]
relay_host = "smtp.example.net"
{extra}
"""


def _write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "maildesk.toml"
    path.write_text(CONFIG.format(data=tmp_path / "data", extra=extra))
    return path


@pytest.mark.parametrize("value", [None, ""])
def test_relay_login_without_its_password_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("MD_TEST_RELAY_PW", raising=False)
    else:
        monkeypatch.setenv("MD_TEST_RELAY_PW", value)
    path = _write(tmp_path, 'username = "desk"\npassword_env = "MD_TEST_RELAY_PW"')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "outbound.password_env: environment variable MD_TEST_RELAY_PW is empty" in str(info.value)


def test_relay_login_without_password_env_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, 'username = "desk"\npassword_env = ""')
    with pytest.raises(ConfigError, match=r"outbound\.password_env: environment variable \(unset\) is empty"):
        load_settings(path)


def test_relay_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MD_TEST_RELAY_PW", "s3cret")
    settings = load_settings(_write(tmp_path, 'username = "desk"\npassword_env = "MD_TEST_RELAY_PW"'))
    assert settings.outbound.password == "s3cret"


def test_relay_without_login_needs_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILDESK_RELAY_PASSWORD", raising=False)
    settings = load_settings(_write(tmp_path, ""))
    assert settings.outbound.relay_host == "smtp.example.net" and settings.outbound.password == ""
