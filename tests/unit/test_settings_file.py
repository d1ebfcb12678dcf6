"""The optional TOML settings file: flags over the environment over the file over the defaults;
keys checked against the settings; where each value came from; secrets masked when shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.core.errors import ConfigError
from bridge.services.config import (
    load_settings,
    load_settings_with_sources,
    read_settings_file,
    shown_value,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("SETTINGS_FILE", "MQTT_HOST", "MQTT_PORT", "SOAP_TIMEOUT", "MQTT_PASSWORD"):
        monkeypatch.delenv(f"ELBRIDGE_{name}", raising=False)
        monkeypatch.delenv(f"ELBRIDGE_{name}_FILE", raising=False)


def settings_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "elbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_gives_typed_values_and_a_secret_through_its_file_key(tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text("from-a-secret-file\n")
    path = settings_file(
        tmp_path,
        f'mqtt_host = "broker.customs.example"\nmqtt_port = 8883\nsoap_timeout = 20\n'
        f'home = "{tmp_path}/home"\nmqtt_password_file = "{secret}"\nmqtt_protocol = 5\n',
    )
    settings = load_settings(settings_file=path)
    assert settings.mqtt_host == "broker.customs.example"
    assert settings.mqtt_port == 8883
    assert settings.soap_timeout == 20.0 and isinstance(settings.soap_timeout, float)
    assert settings.home == tmp_path / "home"
    assert settings.mqtt_password == "from-a-secret-file"
    assert settings.mqtt_protocol == "5"


def test_flags_win_over_the_environment_which_wins_over_the_file(tmp_path, monkeypatch):
    path = settings_file(tmp_path, 'mqtt_host = "from-file"\nmqtt_port = 1884\nsender_id = "F"\n')
    monkeypatch.setenv("ELBRIDGE_SETTINGS_FILE", str(path))
    monkeypatch.setenv("ELBRIDGE_MQTT_HOST", "from-env")
    monkeypatch.setenv("ELBRIDGE_MQTT_PORT", "1885")
    settings, sources = load_settings_with_sources(
        None, {"mqtt_port": 1886}, override_source="--flag"
    )
    assert (settings.mqtt_host, settings.mqtt_port, settings.sender_id) == ("from-env", 1886, "F")
    assert sources["mqtt_host"] == "ELBRIDGE_MQTT_HOST"
    assert sources["mqtt_port"] == "--flag"
    assert sources["sender_id"] == f"settings file {path}"
    assert sources["soap_url"] == "default"


def test_the_file_given_explicitly_wins_over_the_one_the_environment_names(tmp_path, monkeypatch):
    named = settings_file(tmp_path, 'sender_id = "NAMED"\n')
    given = tmp_path / "given.toml"
    given.write_text('sender_id = "GIVEN"\n')
    monkeypatch.setenv("ELBRIDGE_SETTINGS_FILE", str(named))
    assert load_settings(settings_file=given).sender_id == "GIVEN"
    assert load_settings().sender_id == "NAMED"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('mqtt_hots = "x"\n', "unknown setting 'mqtt_hots' (did you mean 'mqtt_host'?)"),
        ('mqtt_port = "many"\n', "mqtt_port = 'many' is not a valid int"),
        ("mqtt_port = 1.5\n", "mqtt_port = 1.5 is not a valid int"),
        ("[mqtt]\nhost = 1\n", "unknown setting 'mqtt'"),
        ("mqtt_host = \n", "not TOML"),
    ],
)
def test_a_wrong_file_is_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = settings_file(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        read_settings_file(path)
    assert str(path) in str(refused.value)
    assert message in str(refused.value)


def test_a_missing_settings_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"settings file .*nowhere.toml: cannot read it"):
        load_settings(settings_file=tmp_path / "nowhere.toml")


def test_secrets_are_masked_when_shown_and_a_url_keeps_all_but_its_password():
    assert shown_value("mqtt_password", "pa55word") == "********"
    assert shown_value("console_secret", "k3y") == "********"
    url = shown_value("database_url", "postgresql://bridge:db-pa55word@db.example:5432/ledger")
    assert "db-pa55word" not in url and url.startswith("postgresql://bridge:")
    assert url.endswith("@db.example:5432/ledger")
    assert shown_value("mqtt_host", "broker") == "broker"
    assert shown_value("mqtt_password", None) == ""
