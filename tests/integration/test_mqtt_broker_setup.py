"""The broker's lockdown files as deploy/mosquitto's templates and mosquitto_passwd make them:
the password file holds hashes only, and `python -m bridge.adapters.mqtt.broker_setup` writes
the config from password files or variables without showing a password."""

from __future__ import annotations

import os
import stat

from bridge.adapters.mqtt.broker_setup import main, write_password_file


def test_the_password_file_holds_hashes_only_and_only_its_owner_reads_it(tmp_path):
    path = write_password_file(tmp_path / "passwd", {"elbridge": "s3cret-one", "customs": "two"})
    text = path.read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == ["elbridge", "customs"]
    assert "s3cret-one" not in text
    assert all(line.split(":", 1)[1].startswith("$7$") for line in text.splitlines())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]  # the plain-text file is gone


def test_broker_setup_writes_the_config_from_password_files_and_prints_no_password(
    tmp_path, capsys
):
    (tmp_path / "bridge.pw").write_text("bridge-password-1\n")
    os.environ["TEST_CUSTOMS_PW"] = "customs-password-2"
    try:
        status = main(
            [
                "--dir",
                str(tmp_path / "mosquitto"),
                "--port",
                "8883",
                "--certfile",
                "/etc/elbridge/mqtt/server.crt",
                "--keyfile",
                "/etc/elbridge/mqtt/server.key",
                "--cafile",
                "/etc/elbridge/mqtt/ca.pem",
                "--require-certificate",
                "--bridge-user",
                f"elbridge=file:{tmp_path / 'bridge.pw'}",
                "--customs-user",
                "customs=env:TEST_CUSTOMS_PW",
            ]
        )
    finally:
        del os.environ["TEST_CUSTOMS_PW"]
    out = capsys.readouterr()
    assert status == 0
    folder = tmp_path / "mosquitto"
    assert out.out.strip() == str(folder / "mosquitto.conf")
    config = (folder / "mosquitto.conf").read_text()
    assert "listener 8883 127.0.0.1" in config
    assert "allow_anonymous false" in config
    assert "require_certificate true" in config
    assert f"password_file {folder / 'passwd'}" in config
    assert f"acl_file {folder / 'acl'}" in config
    assert "${" not in config  # every placeholder filled
    assert "${" not in (folder / "acl").read_text()
    everything = out.out + out.err + "".join(p.read_text() for p in folder.iterdir())
    assert "bridge-password-1" not in everything
    assert "customs-password-2" not in everything
