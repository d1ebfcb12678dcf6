"""`elbridge audit verify|head` and `elbridge db upgrade|current|history|grant`: the ledger's hash
chains checked and anchored (bridge.services.ledger_audit, docs/ledger-audit.md), and its schema
moved by the migrations (bridge.adapters.store.migrate). Wiring only.

`db` commands open the database as its owner: --url, else ELBRIDGE_DATABASE_OWNER_URL (or the
file named by ELBRIDGE_DATABASE_OWNER_URL_FILE), else the ledger's URL. A URL is never printed
with its password."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ReadSettings = Callable[[argparse.Namespace], Any]  # args -> Settings
OpenLedger = Callable[[argparse.Namespace], Any]  # args -> SQLAlchemy Engine


def add_audit_commands(
    subparsers: argparse._SubParsersAction, *, read_settings: ReadSettings, open_ledger: OpenLedger
) -> None:
    """Add `audit verify|head` and `db upgrade|current|history|grant` to `elbridge`."""
    audit = subparsers.add_parser(
        "audit",
        help="check the ledger's hash chains; take their heads for anchoring",
        description="Every movement and licence event is a link in its licence's hash chain"
        " (docs/ledger-audit.md). `verify` checks every chain and names the first row edited,"
        " deleted or inserted out of turn in each; `head` writes the chains' heads and one"
        " digest over them, to keep outside the ledger.",
    )
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="check every chain and the line totals; exit 1 naming what is wrong"
    )
    verify.add_argument(
        "--anchor",
        type=Path,
        help="a file `audit head` wrote earlier: each head in it must still be in its chain",
    )
    verify.set_defaults(func=partial(cmd_verify, open_ledger=open_ledger))
    head = actions.add_parser("head", help="the chains' heads and their digest, as JSON")
    head.add_argument("--output", type=Path, help="write to this file instead of standard output")
    head.set_defaults(func=partial(cmd_head, open_ledger=open_ledger))

    db = subparsers.add_parser(
        "db",
        help="the ledger's schema: upgrade by the migrations, current revision, history, grants",
        description="Run as the database owner (--url, ELBRIDGE_DATABASE_OWNER_URL, else the"
        " ledger's URL). On PostgreSQL the bridge's processes run as a runtime role that may"
        " only read and append to the chained tables: `db grant` (or `upgrade --runtime-role`)"
        " gives it exactly that.",
    )
    db_actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_actions.add_parser("upgrade", help="run the migrations up to this release")
    _url(upgrade)
    upgrade.add_argument("--revision", default="head", help="stop at this revision")
    upgrade.add_argument(
        "--runtime-role", help="then grant this PostgreSQL role what the bridge's processes need"
    )
    upgrade.set_defaults(func=partial(cmd_upgrade, read_settings=read_settings))
    current = db_actions.add_parser("current", help="the revision the ledger is at")
    _url(current)
    current.set_defaults(func=partial(cmd_current, read_settings=read_settings))
    history = db_actions.add_parser("history", help="every revision, oldest first")
    history.set_defaults(func=cmd_history)
    grant = db_actions.add_parser(
        "grant", help="grant the runtime role its rights (PostgreSQL), revoking any others"
    )
    _url(grant)
    grant.add_argument("--runtime-role", required=True, help="the role the bridge runs as")
    grant.set_defaults(func=partial(cmd_grant, read_settings=read_settings))


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the database as its owner (default ELBRIDGE_DATABASE_OWNER_URL, else the"
        " ledger's URL)"
    )  # fmt: skip


def _owner_engine(args: argparse.Namespace, read_settings: ReadSettings):
    from bridge.adapters.store.db import make_engine
    from bridge.services.config import environment_value

    url = args.url or environment_value("database_owner_url") or read_settings(args).ledger_url
    return make_engine(url, create=False)


def _shown(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def cmd_verify(args: argparse.Namespace, *, open_ledger: OpenLedger) -> int:
    from bridge.services.ledger_audit import read_anchor, verify_ledger

    anchor = read_anchor(args.anchor) if args.anchor else None
    engine = open_ledger(args)
    try:
        report = verify_ledger(engine, anchor=anchor)
    finally:
        engine.dispose()
    for chain, count in report.counts.items():
        print(f"{chain}: {_count(count.rows, 'row')} in {_count(count.chains, 'chain')}")
    print(f"line_total: {_count(report.lines, 'line')}")
    if anchor is not None:
        print(f"anchor {anchor['digest']}: {sum(map(len, anchor['heads'].values()))} heads")
    problems = report.problems()
    for problem in problems:
        print(problem)
    if problems:
        print(f"elbridge audit verify: {_count(len(problems), 'problem')}", file=sys.stderr)
        return 1
    print("every chain holds")
    return 0


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" + ("" if number == 1 else "s")


def cmd_head(args: argparse.Namespace, *, open_ledger: OpenLedger) -> int:
    from bridge.services.ledger_audit import chain_heads

    engine = open_ledger(args)
    try:
        heads = chain_heads(engine, now=datetime.now(UTC))
    finally:
        engine.dispose()
    text = json.dumps(heads, indent=1) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"digest {heads['digest']} written to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_upgrade(args: argparse.Namespace, *, read_settings: ReadSettings) -> int:
    from bridge.adapters.store.migrate import grant_runtime, upgrade

    engine = _owner_engine(args, read_settings)
    try:
        before, after = upgrade(engine, revision=args.revision)
        if before == after:
            print(f"{_shown(engine)}: already at {after}")
        else:
            print(f"{_shown(engine)}: {before or 'none'} -> {after}")
        if args.runtime_role:
            grant_runtime(engine, args.runtime_role)
            print(f"granted {args.runtime_role} the runtime rights")
    finally:
        engine.dispose()
    return 0


def cmd_current(args: argparse.Namespace, *, read_settings: ReadSettings) -> int:
    from bridge.adapters.store.migrate import current_revision, head_revision

    engine = _owner_engine(args, read_settings)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    state = "this release's" if revision == head else f"this release needs {head}"
    print(f"{revision or 'none'} ({state})")
    return 0 if revision == head else 1


def cmd_history(args: argparse.Namespace) -> int:
    from bridge.adapters.store.migrate import history

    for revision, _before, doc in history():
        print(f"{revision}  {doc.splitlines()[0] if doc else ''}")
    return 0


def cmd_grant(args: argparse.Namespace, *, read_settings: ReadSettings) -> int:
    from bridge.adapters.store.migrate import grant_runtime

    engine = _owner_engine(args, read_settings)
    try:
        grant_runtime(engine, args.runtime_role)
    finally:
        engine.dispose()
    print(f"granted {args.runtime_role} the runtime rights")
    return 0
