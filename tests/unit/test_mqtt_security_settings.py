"""The MQTT link's security settings and the broker's ACL: what the settings, the Airflow
Connection and a consumer's child process carry, and what deploy/mosquitto/acl becomes, with no
password shown anywhere (the password file: tests/integration/test_mqtt_broker_setup.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bridge.adapters.mqtt.broker_setup import BrokerUsers, acl, main
from bridge.core.errors import ConfigError
from bridge.entrypoints.airflow_wiring import mqtt_overrides
from bridge.services.config import Settings, mqtt_options, settings_env


def test_the_acl_gives_the_bridge_events_to_read_and_results_to_write_and_nothing_else():
    text = acl("elbridge", ["customs-fr", "customs-de"])
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        "user elbridge",
        "topic read customs/declarations/events",
        "topic read $share/+/customs/declarations/events",
        "topic write customs/declarations/results",
        "user customs-fr",
        "topic write customs/declarations/events",
        "topic read customs/declarations/results",
        "user customs-de",
        "topic write customs/declarations/events",
        "topic read customs/declarations/results",
    ]
    assert "#" not in "".join(rules)


@pytest.mark.parametrize("topic", ["customs/#", "customs/+/events", "$SYS/broker", ""])
def test_the_acl_refuses_a_topic_that_is_not_one_plain_topic(topic):
    with pytest.raises(ConfigError, match="must be one plain topic"):
        acl("elbridge", ["customs"], events_topic=topic)


def test_the_acl_refuses_a_user_that_is_both_sides_or_has_odd_signs():
    with pytest.raises(ConfigError, match="both the bridge and customs"):
        acl("elbridge", ["elbridge"])
    with pytest.raises(ConfigError, match="a user name has no"):
        acl("el:bridge", ["customs"])


def test_broker_setup_takes_no_password_on_its_command_line(tmp_path, capsys):
    status = main(
        [
            "--dir",
            str(tmp_path),
            "--certfile",
            "c",
            "--keyfile",
            "k",
            "--cafile",
            "a",
            "--bridge-user",
            "elbridge=hunter2",
            "--customs-user",
            "customs=env:UNSET_VARIABLE_FOR_TEST",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2
    assert "user 'elbridge': a password is given as file:PATH or env:VARIABLE" in err
    assert "hunter2" not in err
    assert list(tmp_path.iterdir()) == []


def test_passwords_stay_out_of_reprs():
    users = BrokerUsers(bridge=("elbridge", "pw-bridge"), customs=(("customs", "pw-customs"),))
    settings = Settings(mqtt_username="elbridge", mqtt_password="pw-settings")
    shown = repr(users) + repr(settings) + repr(mqtt_options(settings))
    assert "pw-" not in shown
    assert "elbridge" in shown


def test_the_airflow_connection_carries_tls_and_the_protocol():
    conn = SimpleNamespace(
        host="mqtt.internal",
        port=8883,
        login="elbridge",
        password="from-the-connection",
        extra_dejson={
            "ca_file": "/etc/elbridge/mqtt/ca.pem",
            "cert_file": "/etc/elbridge/mqtt/bridge.crt",
            "key_file": "/etc/elbridge/mqtt/bridge.key",
            "protocol": "3.1.1",
        },
    )
    settings = Settings().with_overrides(**mqtt_overrides(conn))
    options = mqtt_options(settings)
    assert (options.host, options.port, options.username) == ("mqtt.internal", 8883, "elbridge")
    assert options.tls and options.ca_file == "/etc/elbridge/mqtt/ca.pem"
    assert (options.cert_file, options.key_file) == (
        "/etc/elbridge/mqtt/bridge.crt",
        "/etc/elbridge/mqtt/bridge.key",
    )
    assert options.protocol == "3.1.1"
    bare = Settings().with_overrides(
        **mqtt_overrides(
            SimpleNamespace(host="h", port=None, login=None, password=None, extra_dejson={})
        )
    )
    assert not mqtt_options(bare).tls and mqtt_options(bare).protocol == "5"


def test_a_consumer_process_gets_the_tls_settings_and_the_login():
    settings = Settings(
        mqtt_protocol="3.1.1",
        mqtt_ca_file="/ca.pem",
        mqtt_cert_file="/c.crt",
        mqtt_key_file="/c.key",
        mqtt_username="elbridge",
        mqtt_password="pw",
    )
    env = settings_env(settings)
    assert env["ELBRIDGE_MQTT_PROTOCOL"] == "3.1.1"
    assert env["ELBRIDGE_MQTT_CA_FILE"] == "/ca.pem"
    assert env["ELBRIDGE_MQTT_CERT_FILE"] == "/c.crt"
    assert env["ELBRIDGE_MQTT_KEY_FILE"] == "/c.key"
    assert (env["ELBRIDGE_MQTT_USERNAME"], env["ELBRIDGE_MQTT_PASSWORD"]) == ("elbridge", "pw")
