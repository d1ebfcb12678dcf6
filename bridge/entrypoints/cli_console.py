"""`elbridge console`: the authority console in the browser (docs/console.md).

    elbridge console serve [--host H] [--port P] [--tls-cert C --tls-key K [--client-ca CA]]
    elbridge console user add NAME --role officer|auditor [--full-name "..."] [--password-file F]
    elbridge console user remove NAME
    elbridge console user list

The global options (--home, --database-url, --settings, -v/-q, --json) are elbridge's
(bridge.entrypoints.cli_output). `python -m bridge.entrypoints.console` takes serve's options
(what the test and demo subprocesses run), its settings from the environment."""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from bridge.core.errors import ConfigError
from bridge.entrypoints.cli_output import read_settings, reporter
from bridge.entrypoints.exit_codes import Exit
from bridge.entrypoints.http_serving import add_tls_arguments, serving_options_from
from bridge.services.config import Settings, load_settings

DEFAULT_PORT = 8090


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"0 picks a free port ({DEFAULT_PORT})"
    )
    add_tls_arguments(parser)
    parser.add_argument("--ready-file", type=Path, help="write the URL here once serving (JSON)")


def add_console_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `console serve` and `console user add|remove|list` to the `elbridge` commands."""
    console = subparsers.add_parser(
        "console",
        help="the authority console in the browser (licences, alerts, write-offs)",
        description="The authority console: licences, alerts and manual movements in the"
        " browser, for licensing officers (read and write) and auditors (read). docs/console.md",
    )
    actions = console.add_subparsers(dest="console_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="serve the console over HTTP(S) until stopped")
    add_serve_arguments(serve)
    serve.set_defaults(func=cmd_serve)

    user = actions.add_parser("user", help="who may log in to the console")
    user_actions = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_actions.add_parser("add", help="add a user (or change one with --replace)")
    add.add_argument("name", help="login name")
    add.add_argument(
        "--role",
        required=True,
        choices=("officer", "auditor"),
        help="officer: reads, writes movements, acknowledges alerts; auditor: reads",
    )
    add.add_argument("--full-name", default="", help="as the ledger records the person")
    add.add_argument(
        "--password-file",
        type=Path,
        help="read the password from this file (default: asked at the terminal; without one,"
        " the first line of standard input)",
    )
    add.add_argument("--replace", action="store_true", help="change an existing user")
    add.set_defaults(func=cmd_user_add)
    remove = user_actions.add_parser("remove", help="remove a user (logged out at once)")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_user_remove)
    listing = user_actions.add_parser("list", help="the users and their roles")
    listing.set_defaults(func=cmd_user_list)


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(args, read_settings(args), verbose=reporter(args).verbosity > 0)


def serve(args: argparse.Namespace, settings: Settings, *, verbose: bool = False) -> int:
    """Serve the console as `args` (host, port, TLS, ready file) say, until SIGTERM or Ctrl-C."""
    from bridge.adapters.http.server import serve as serve_http
    from bridge.entrypoints.console.app import create_app

    options = serving_options_from(args, verbose=verbose, settings=settings)
    app = create_app(
        settings,
        secure_cookies=options.http.tls is not None,
        max_body_bytes=options.max_body_bytes,
    )
    if not len(app.state.users):
        print(
            "console: nobody can log in yet: add a user with `elbridge console user add NAME"
            f" --role officer` (users file: {app.state.users.path})",
            file=sys.stderr,
        )
    serve_http(
        app,
        options.http,
        banner="authority console",
        ready_file=args.ready_file,
        on_close=app.state.engine.dispose,
    )
    return Exit.OK


def _password(args: argparse.Namespace) -> str:
    if args.password_file is not None:
        try:
            text = args.password_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--password-file {args.password_file}: {error.strerror}") from None
        return text.rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != first:
            raise ConfigError("the two passwords differ: nothing changed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_user_add(args: argparse.Namespace) -> int:
    from bridge.entrypoints.console.auth import add_user, users_file

    out = reporter(args)
    path = users_file(read_settings(args))
    user = add_user(
        path, args.name, args.role, _password(args), full_name=args.full_name, replace=args.replace
    )
    done = "changed" if args.replace else "added"
    out.emit(
        {
            "user": user.name,
            "role": user.role,
            "full_name": user.full_name,
            "done": done,
            "users_file": path,
        }
    )
    out.say(f"console user {user.name} ({user.role}) {done} in {path}")
    return Exit.OK


def cmd_user_remove(args: argparse.Namespace) -> int:
    from bridge.entrypoints.console.auth import remove_user, users_file

    out = reporter(args)
    path = users_file(read_settings(args))
    remove_user(path, args.name)
    out.emit({"user": args.name, "done": "removed", "users_file": path})
    out.say(f"console user {args.name} removed from {path}")
    return Exit.OK


def cmd_user_list(args: argparse.Namespace) -> int:
    from bridge.entrypoints.cli_output import Column
    from bridge.entrypoints.console.auth import read_users, users_file

    out = reporter(args)
    path = users_file(read_settings(args))
    users = [
        {"name": name, "role": stored.user.role, "full_name": stored.user.full_name}
        for name, stored in sorted(read_users(path).items())
    ]
    out.emit({"users_file": path, "users": users})
    if not users:
        out.say(f"no console users in {path}")
        return Exit.OK
    out.table(
        [Column("user", "name"), Column("role", "role"), Column("full name", "full_name")],
        users,
        footer=f"{len(users)} users in {path}",
    )
    return Exit.OK


def main(argv: list[str] | None = None) -> int:
    """`python -m bridge.entrypoints.console [serve options] [--verbose]`: serve the console
    on the settings of the environment (ELBRIDGE_HOME, ELBRIDGE_DATABASE_URL, ...)."""
    parser = argparse.ArgumentParser(
        prog="python -m bridge.entrypoints.console",
        description="The eLicensing bridge's authority console (HTTP).",
    )
    add_serve_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return serve(args, load_settings(), verbose=args.verbose)
    except ConfigError as error:
        print(f"console: {error}", file=sys.stderr)
        return Exit.USAGE
