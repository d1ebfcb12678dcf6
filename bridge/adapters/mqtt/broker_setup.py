"""The bridge's broker locked down: mosquitto.conf and the ACL file from the templates in
deploy/mosquitto/ (one TLS listener, no anonymous clients, the bridge reads events and writes
results, customs write events and read results), and the password file, hashed by
mosquitto_passwd.

Passwords are read from files and handed to mosquitto_passwd in a file of its own (`-U`),
never on a command line, and never printed. `python -m bridge.adapters.mqtt.broker_setup`
writes all three into a folder (scripts/deploy-local.sh uses it); the tests' brokers are made by
the same functions (bridge.adapters.mqtt.broker.start_broker)."""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from bridge.core.errors import ConfigError
from bridge.core.paths import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "deploy" / "mosquitto"
CUSTOMS_BLOCK = "# --- per customs user ---\n"
EVENTS_TOPIC = "customs/declarations/events"
RESULTS_TOPIC = "customs/declarations/results"


@dataclass(frozen=True)
class BrokerTls:
    """The broker's certificate and key, and the CA its clients' certificates must chain to
    (asked for only with `require_certificate`)."""

    certfile: Path
    keyfile: Path
    cafile: Path
    require_certificate: bool = False


@dataclass(frozen=True)
class BrokerUsers:
    """Who may log in: the bridge's user and the customs users, each with a password."""

    bridge: tuple[str, str]
    customs: tuple[tuple[str, str], ...]

    def passwords(self) -> dict[str, str]:
        return dict((self.bridge, *self.customs))

    def __repr__(self) -> str:  # the passwords stay out of every log and traceback
        names = ", ".join(name for name, _ in self.customs)
        return f"BrokerUsers(bridge={self.bridge[0]!r}, customs=[{names}])"


def broker_config(
    *,
    port: int,
    data_dir: Path,
    log_file: Path,
    tls: BrokerTls,
    password_file: Path,
    acl_file: Path,
    bind_address: str = "127.0.0.1",
    run_as: str | None = None,
) -> str:
    """deploy/mosquitto/mosquitto.conf filled in."""
    template = Template((TEMPLATES / "mosquitto.conf").read_text(encoding="utf-8"))
    return template.substitute(
        run_as=run_as or getpass.getuser(),
        password_file=Path(password_file).resolve(),
        acl_file=Path(acl_file).resolve(),
        port=port,
        bind_address=bind_address,
        certfile=Path(tls.certfile).resolve(),
        keyfile=Path(tls.keyfile).resolve(),
        cafile=Path(tls.cafile).resolve(),
        require_certificate="true" if tls.require_certificate else "false",
        data_dir=Path(data_dir).resolve(),
        log_file=Path(log_file).resolve(),
    )


def acl(
    bridge_user: str,
    customs_users: Sequence[str],
    *,
    events_topic: str = EVENTS_TOPIC,
    results_topic: str = RESULTS_TOPIC,
) -> str:
    """deploy/mosquitto/acl filled in, its customs block once for each customs user."""
    for topic in (events_topic, results_topic):
        if not topic or any(sign in topic for sign in "#+\n") or topic.startswith("$"):
            raise ConfigError(f"MQTT ACL: {topic!r} must be one plain topic (no wildcards)")
    for user in (bridge_user, *customs_users):
        _check_user(user)
    if bridge_user in customs_users:
        raise ConfigError(f"MQTT ACL: {bridge_user!r} cannot be both the bridge and customs")
    text = (TEMPLATES / "acl").read_text(encoding="utf-8")
    common, customs = text.split(CUSTOMS_BLOCK)
    topics = {"events_topic": events_topic, "results_topic": results_topic}
    parts = [Template(common).substitute(bridge_user=bridge_user, **topics)]
    parts += [Template(customs).substitute(customs_user=user, **topics) for user in customs_users]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts)


def write_password_file(path: Path, passwords: Mapping[str, str]) -> Path:
    """The mosquitto password file at `path` (mode 0600) with these users, hashed by
    `mosquitto_passwd -U`: the plain passwords are only ever in that file, for the moment it
    takes to hash them, never on a command line."""
    for user, password in passwords.items():
        _check_user(user)
        if not password or "\n" in password or "\r" in password:
            raise ConfigError(f"MQTT user {user!r}: the password is empty or has a line break")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as plain:
        plain.writelines(f"{user}:{password}\n" for user, password in passwords.items())
    try:
        done = subprocess.run(
            [mosquitto_passwd_executable(), "-U", str(partial)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigError(f"mosquitto_passwd -U failed: {done.stderr.strip()[:300]}")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_secure_broker(
    folder: Path,
    *,
    port: int,
    tls: BrokerTls,
    users: BrokerUsers,
    events_topic: str = EVENTS_TOPIC,
    results_topic: str = RESULTS_TOPIC,
    bind_address: str = "127.0.0.1",
    data_dir: Path | None = None,
    log_file: Path | None = None,
    run_as: str | None = None,
) -> Path:
    """Write mosquitto.conf, acl and passwd into `folder` (persistence and log there too
    unless given); returns the path of mosquitto.conf, for `mosquitto -c`."""
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    acl_file, password_file = folder / "acl", folder / "passwd"
    acl_file.write_text(
        acl(
            users.bridge[0],
            [name for name, _ in users.customs],
            events_topic=events_topic,
            results_topic=results_topic,
        ),
        encoding="utf-8",
    )
    write_password_file(password_file, users.passwords())
    config = folder / "mosquitto.conf"
    config.write_text(
        broker_config(
            port=port,
            data_dir=data_dir or folder,
            log_file=log_file or folder / "mosquitto.log",
            tls=tls,
            password_file=password_file,
            acl_file=acl_file,
            bind_address=bind_address,
            run_as=run_as,
        ),
        encoding="utf-8",
    )
    return config


def mosquitto_passwd_executable() -> str:
    found = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(found, os.X_OK):
        raise FileNotFoundError("mosquitto_passwd is not installed (the mosquitto package)")
    return found


def _check_user(user: str) -> None:
    if not user or any(sign in user for sign in ": \t\r\n#+/"):
        raise ConfigError(f"MQTT user {user!r}: a user name has no ':', '/', '#', '+' or spaces")


def _password(argument: str) -> str:
    """A password named on the command line by where it is, never by itself: `file:PATH` or
    `env:VARIABLE`."""
    kind, _, where = argument.partition(":")
    if kind == "file" and where:
        try:
            return Path(where).expanduser().read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as error:
            raise ConfigError(f"password file {where}: {error.strerror}") from None
    if kind == "env" and where:
        value = os.environ.get(where)
        if not value:
            raise ConfigError(f"password variable {where} is not set")
        return value
    # Not echoed: what was given may be the password itself.
    raise ConfigError("a password is given as file:PATH or env:VARIABLE, never by itself")


def _user(argument: str) -> tuple[str, str]:
    name, sep, source = argument.partition("=")
    if not sep:
        raise ConfigError("a user is given as NAME=file:PATH or NAME=env:VARIABLE")
    try:
        return name, _password(source)
    except ConfigError as error:
        raise ConfigError(f"user {name!r}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Write the broker's mosquitto.conf, acl and passwd into --dir; prints their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.adapters.mqtt.broker_setup",
        description="The bridge's mosquitto: TLS listener, password file and ACLs"
        " (deploy/mosquitto/). Passwords come from files or variables, never the command line.",
    )
    parser.add_argument("--dir", required=True, help="folder for mosquitto.conf, acl, passwd")
    parser.add_argument("--port", type=int, default=8883)
    parser.add_argument("--bind-address", default="127.0.0.1")
    parser.add_argument("--certfile", required=True, help="the broker's certificate (PEM)")
    parser.add_argument("--keyfile", required=True, help="its private key (PEM)")
    parser.add_argument("--cafile", required=True, help="CA of client certificates (PEM)")
    parser.add_argument("--require-certificate", action="store_true")
    parser.add_argument("--bridge-user", required=True, help="NAME=file:PATH or NAME=env:VARIABLE")
    parser.add_argument(
        "--customs-user",
        action="append",
        required=True,
        help="NAME=file:PATH or NAME=env:VARIABLE (repeat for more customs systems)",
    )
    parser.add_argument("--events-topic", default=EVENTS_TOPIC)
    parser.add_argument("--results-topic", default=RESULTS_TOPIC)
    parser.add_argument("--data-dir", help="persistence folder (default: --dir)")
    parser.add_argument("--log-file", help="broker log (default: DIR/mosquitto.log)")
    parser.add_argument("--run-as", help="user mosquitto switches to when started as root")
    args = parser.parse_args(argv)
    try:
        config = write_secure_broker(
            Path(args.dir),
            port=args.port,
            tls=BrokerTls(
                Path(args.certfile),
                Path(args.keyfile),
                Path(args.cafile),
                require_certificate=args.require_certificate,
            ),
            users=BrokerUsers(
                bridge=_user(args.bridge_user),
                customs=tuple(_user(user) for user in args.customs_user),
            ),
            events_topic=args.events_topic,
            results_topic=args.results_topic,
            bind_address=args.bind_address,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            log_file=Path(args.log_file) if args.log_file else None,
            run_as=args.run_as,
        )
    except (ConfigError, FileNotFoundError) as error:
        print(f"broker_setup: {error}", file=sys.stderr)
        return 2
    print(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
