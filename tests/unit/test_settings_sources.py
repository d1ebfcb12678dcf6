"""Where settings come from: ELBRIDGE_<NAME>, or a file named by ELBRIDGE_<NAME>_FILE (how
secrets are handed over), and secrets never shown when settings are printed."""

from __future__ import annotations

import pytest

from bridge.core.errors import ConfigError
from bridge.services.config import load_settings


def test_a_secret_comes_from_the_file_its_file_variable_names(tmp_path, monkeypatch):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret-from-a-file\n")
    monkeypatch.setenv("ELBRIDGE_MQTT_PASSWORD_FILE", str(secret))
    monkeypatch.delenv("ELBRIDGE_MQTT_PASSWORD", raising=False)
    assert load_settings().mqtt_password == "s3cret-from-a-file"  # the final newline dropped


def test_the_variable_itself_wins_over_its_file(tmp_path, monkeypatch):
    secret = tmp_path / "soap-password"
    secret.write_text("from-file")
    monkeypatch.setenv("ELBRIDGE_SOAP_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("ELBRIDGE_SOAP_PASSWORD", "from-env")
    assert load_settings().soap_password == "from-env"


def test_any_setting_may_come_from_a_file_and_is_converted_to_its_type(tmp_path, monkeypatch):
    port = tmp_path / "port"
    port.write_text("8883\n")
    monkeypatch.setenv("ELBRIDGE_MQTT_PORT_FILE", str(port))
    monkeypatch.delenv("ELBRIDGE_MQTT_PORT", raising=False)
    assert load_settings().mqtt_port == 8883


def test_an_unreadable_secret_file_is_named_and_its_content_is_not(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "password"
    monkeypatch.setenv("ELBRIDGE_MQTT_PASSWORD_FILE", str(missing))
    monkeypatch.delenv("ELBRIDGE_MQTT_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    message = str(refused.value)
    assert "ELBRIDGE_MQTT_PASSWORD_FILE" in message
    assert str(missing) in message
    assert "No such file" in message


def test_secrets_are_not_in_the_settings_printed_form(monkeypatch):
    monkeypatch.setenv("ELBRIDGE_MQTT_PASSWORD", "mqtt-pa55word")
    monkeypatch.setenv("ELBRIDGE_SOAP_PASSWORD", "soap-pa55word")
    monkeypatch.setenv("ELBRIDGE_DATABASE_URL", "postgresql://bridge:db-pa55word@db.example/l")
    settings = load_settings()
    assert settings.mqtt_password == "mqtt-pa55word"
    assert settings.database_url.endswith("@db.example/l")
    shown = repr(settings) + str(settings)
    assert "mqtt-pa55word" not in shown
    assert "soap-pa55word" not in shown
    assert "db-pa55word" not in shown
    assert "mqtt_host=" in shown  # the rest is still shown
