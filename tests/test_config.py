"""Settings: defaults, validation errors that name the key, secrets from the environment, init."""

from __future__ import annotations

from pathlib import Path

import pytest

from maildesk.config import load_settings, parse_settings
from maildesk.errors import ConfigError
from maildesk.services.init import init_directory


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILDESK_CONFIG", raising=False)
    settings = load_settings()
    assert settings.source == "<embedded default>"
    assert settings.database_url == f"sqlite:///{tmp_path / 'maildesk-data' / 'maildesk.db'}"
    assert (settings.smtp.host, settings.smtp.port) == ("127.0.0.1", 2525)
    assert settings.outgoing_maildir == tmp_path / "maildesk-data" / "outgoing"
    assert len(settings.secret) == 64
    assert (tmp_path / "maildesk-data" / "secret.key").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"smtp": {"port": "25"}}, "smtp.port: must be an integer"),
        ({"smtp": {"prot": 25}}, "smtp.prot: unknown key"),
        ({"desk": {"support_addresses": ["nobody"]}}, "desk.support_addresses: 'nobody' is not an email address"),
        ({"desk": {"timezone": "Mars/Olympus"}}, "desk.timezone: unknown time zone"),
        ({"desk": {"subject_tag": "[#]"}}, "desk.subject_tag: must contain {number}"),
        ({"outbound": {"security": "tls"}}, "outbound.security: must be starttls, ssl or none"),
        ({"database": {"url": "mysql://x"}}, "database.url: must be sqlite"),
        (
            {"imap": [{"host": "imap.example.com", "username": "u", "password_env": "MD_TEST_NOPE"}]},
            "imap[0].password_env: environment variable MD_TEST_NOPE is empty",
        ),
        ({"imap": [{"username": "u"}]}, "imap[0].host: required"),
        ({"smtp": {"tls_cert": "missing.pem", "tls_key": "missing.key"}}, "smtp.tls_cert: file not found"),
        ({"bogus": {}}, "bogus: unknown section"),
        ({"worker": {"max_attempts": -1}}, "worker.max_attempts: must not be negative"),
        ({"desk": {"locales": ["en", "xx-Nope"]}}, "desk.locales: unknown locale 'xx-Nope'"),
        ({"desk": {"locales": []}}, "desk.locales: name at least one locale"),
        ({"desk": {"default_locale": "de", "locale": "fr"}}, "give one of them"),
        ({"desk": {"default_locale": "klingon"}}, "desk.default_locale: unknown locale"),
    ],
)
def test_validation_names_key_and_problem(tmp_path: Path, data: dict, message: str) -> None:
    data.setdefault("desk", {}).setdefault("data_dir", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        parse_settings(data, base_dir=str(tmp_path))
    assert message in str(info.value)


def test_secrets_come_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MD_IMAP_PW", "s3cret")
    monkeypatch.setenv("MD_SECRET", "signing")
    monkeypatch.setenv("MD_DB", "postgresql+psycopg://u@h/db")
    settings = parse_settings(
        {
            "desk": {"data_dir": str(tmp_path), "secret_env": "MD_SECRET"},
            "database": {"url_env": "MD_DB"},
            "imap": [{"host": "imap.example.com", "username": "u", "password_env": "MD_IMAP_PW"}],
        }
    )
    assert settings.imap[0].password == "s3cret"
    assert settings.secret == "signing"
    assert settings.database_url == "postgresql+psycopg://u@h/db"


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "maildesk.toml"
    bad.write_text("[desk\nname=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_the_secret_is_made_once_even_when_many_start_together(tmp_path: Path) -> None:
    import threading

    from maildesk.config import parse_settings

    settings = parse_settings(
        {"desk": {"data_dir": str(tmp_path / "data"), "support_addresses": ["s@example.com"], "secret_env": ""}}
    )
    assert settings.secret  # made on first use
    again = [
        parse_settings(
            {"desk": {"data_dir": str(tmp_path / "data2"), "support_addresses": ["s@example.com"], "secret_env": ""}}
        ).secret
    ]
    start = threading.Barrier(12)
    seen: list[str] = []

    def load() -> None:
        start.wait()
        seen.append(
            parse_settings(
                {
                    "desk": {
                        "data_dir": str(tmp_path / "data3"),
                        "support_addresses": ["s@example.com"],
                        "secret_env": "",
                    }
                }
            ).secret
        )

    threads = [threading.Thread(target=load) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 12 and len(set(seen)) == 1 and len(seen[0]) == 64
    assert oct((tmp_path / "data3" / "secret.key").stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in (tmp_path / "data3").iterdir()) == ["secret.key"]
    assert again[0] != seen[0]


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    written = init_directory(tmp_path / "desk")
    names = {p.name for p in written}
    assert {"maildesk.toml", "rules.yaml", "README.txt"} <= names
    settings = load_settings(tmp_path / "desk" / "maildesk.toml")
    assert settings.data_path == tmp_path / "desk" / "maildesk-data"
    assert settings.desk.rules_file == "rules.yaml"
    # the example rules load as written: every template they name exists and renders
    from maildesk.services.admin import check_templates
    from maildesk.services.rules import check as check_rules
    from maildesk.services.rules import rules_path

    assert {"after_hours.txt.j2", "vip_alert.txt.j2", "outage_alert.txt.j2"} <= names
    path = rules_path(settings, None)
    assert path is not None
    ruleset, problems = check_rules(settings, path)
    assert problems == [] and ruleset is not None
    assert check_templates(settings) == []
    with pytest.raises(Exception, match="exists"):
        init_directory(tmp_path / "desk")
    text = (tmp_path / "desk" / "maildesk.toml").read_text()
    # every key of every section is documented in the shipped default
    from dataclasses import fields

    from maildesk import config as c

    for cls in (
        c.DeskSettings,
        c.DatabaseSettings,
        c.SmtpSettings,
        c.OutboundSettings,
        c.WorkerSettings,
        c.LimitSettings,
        c.ImapSettings,
        c.LogSettings,
        c.MetricsSettings,
    ):
        for f in fields(cls):
            if f.name != "password":
                assert f"{f.name} =" in text, f"{cls.__name__}.{f.name} is not documented"


def test_desk_locales_and_default_locale(tmp_path: Path) -> None:
    desk = parse_settings({"desk": {"data_dir": str(tmp_path)}}, base_dir=str(tmp_path)).desk
    assert (desk.locale, desk.default_locale, desk.locales) == ("en", "en", ("en", "de", "fr", "es"))
    data = {"desk": {"data_dir": str(tmp_path), "default_locale": "de-AT", "locales": ["fr", "es"]}}
    desk = parse_settings(data, base_dir=str(tmp_path)).desk
    # Babel's spelling; the default is always one of the locales (first when added).
    assert (desk.locale, desk.default_locale, desk.locales) == ("de_AT", "de_AT", ("de_AT", "fr", "es"))
    desk = parse_settings({"desk": {"data_dir": str(tmp_path), "locale": "fr"}}, base_dir=str(tmp_path)).desk
    assert desk.locale == desk.default_locale == "fr"


def test_support_address_matching() -> None:
    settings = parse_settings(
        {
            "desk": {
                "data_dir": "/tmp/x-md",
                "support_addresses": ["Support@Example.com"],
                "support_domains": ["help.example.org"],
            }
        }
    )
    assert settings.is_support_address("support@example.com")
    assert settings.is_support_address("support+t42-abc@example.com")
    assert settings.is_support_address("anyone@help.example.org")
    assert not settings.is_support_address("other@example.com")


def test_trusted_authserv_ids_for_agent_forwards(tmp_path: Path) -> None:
    data = {"desk": {"data_dir": str(tmp_path), "trusted_authserv_ids": [" MX.Example.com ", ""]}}
    settings = parse_settings(data, base_dir=str(tmp_path))
    assert settings.desk.trusted_authserv_ids == ("mx.example.com",)
    assert settings.desk.agent_forward_needs_dkim  # forwards need authentication by default
    with pytest.raises(ConfigError) as info:
        parse_settings({"desk": {"data_dir": str(tmp_path), "trusted_authserv_ids": "mx"}}, base_dir=str(tmp_path))
    assert "desk.trusted_authserv_ids" in str(info.value)
