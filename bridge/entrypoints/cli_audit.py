"""`elbridge audit verify|head` and `elbridge db upgrade|current|history|grant`: the ledger's hash
chains checked and anchored (bridge.services.ledger_audit, docs/ledger-audit.md), and its schema
moved by the migrations (bridge.adapters.store.migrate). Wiring only.

`db` commands open the database as its owner: --url, else ELBRIDGE_DATABASE_OWNER_URL (or the
file named by ELBRIDGE_DATABASE_OWNER_URL_FILE), else the ledger's URL. A URL is never printed
with its password."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from bridge.entrypoints.cli_output import open_ledger, read_settings, reporter
from bridge.entrypoints.exit_codes import Exit


def add_audit_commands(subparsers: argparse._SubParsersAction) -> None:
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
    verify.set_defaults(func=cmd_verify)
    head = actions.add_parser("head", help="the chains' heads and their digest, as JSON")
    head.add_argument("--output", type=Path, help="write to this file instead of standard output")
    head.set_defaults(func=cmd_head)

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
    upgrade.set_defaults(func=cmd_upgrade)
    current = db_actions.add_parser("current", help="the revision the ledger is at")
    _url(current)
    current.set_defaults(func=cmd_current)
    history = db_actions.add_parser("history", help="every revision, oldest first")
    history.set_defaults(func=cmd_history)
    grant = db_actions.add_parser(
        "grant", help="grant the runtime role its rights (PostgreSQL), revoking any others"
    )
    _url(grant)
    grant.add_argument("--runtime-role", required=True, help="the role the bridge runs as")
    grant.set_defaults(func=cmd_grant)


def _url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", help="the database as its owner (default ELBRIDGE_DATABASE_OWNER_URL, else the"
        " ledger's URL)"
    )  # fmt: skip


def _owner_engine(args: argparse.Namespace):
    from bridge.adapters.store.db import make_engine
    from bridge.services.config import environment_value

    url = args.url or environment_value("database_owner_url") or read_settings(args).ledger_url
    return make_engine(url, create=False)


def _shown(engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def cmd_verify(args: argparse.Namespace) -> int:
    """1 when a chain does not hold or a line total disagrees (each problem named)."""
    from bridge.services.ledger_audit import read_anchor, verify_ledger

    out = reporter(args)
    anchor = read_anchor(args.anchor) if args.anchor else None
    engine = open_ledger(args)
    try:
        report = verify_ledger(engine, anchor=anchor)
    finally:
        engine.dispose()
    problems = report.problems()
    out.emit(
        {
            "chains": {
                chain: {"rows": count.rows, "chains": count.chains}
                for chain, count in report.counts.items()
            },
            "line_totals": report.lines,
            "anchor": None if anchor is None else anchor["digest"],
            "problems": problems,
            "holds": not problems,
        }
    )
    for chain, count in report.counts.items():
        out.say(f"{chain}: {_count(count.rows, 'row')} in {_count(count.chains, 'chain')}")
    out.say(f"line_total: {_count(report.lines, 'line')}")
    if anchor is not None:
        out.say(f"anchor {anchor['digest']}: {sum(map(len, anchor['heads'].values()))} heads")
    for problem in problems:
        out.say(problem)
    if problems:
        out.error(_count(len(problems), "problem"))
        return Exit.FAILURE
    out.say("every chain holds")
    return Exit.OK


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}" + ("" if number == 1 else "s")


def cmd_head(args: argparse.Namespace) -> int:
    from bridge.services.ledger_audit import chain_heads

    out = reporter(args)
    engine = open_ledger(args)
    try:
        heads = chain_heads(engine, now=datetime.now(UTC))
    finally:
        engine.dispose()
    text = json.dumps(heads, indent=1) + "\n"
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        out.say(f"digest {heads['digest']} written to {args.output}")
        out.emit({"digest": heads["digest"], "output": str(args.output)})
    else:
        out.write(text)
        out.emit(heads)
    return Exit.OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    from bridge.adapters.store.migrate import grant_runtime, upgrade

    out = reporter(args)
    engine = _owner_engine(args)
    try:
        before, after = upgrade(engine, revision=args.revision)
        if before == after:
            out.say(f"{_shown(engine)}: already at {after}")
        else:
            out.say(f"{_shown(engine)}: {before or 'none'} -> {after}")
        if args.runtime_role:
            grant_runtime(engine, args.runtime_role)
            out.say(f"granted {args.runtime_role} the runtime rights")
        out.emit(
            {
                "database": _shown(engine),
                "before": before,
                "after": after,
                "granted": args.runtime_role,
            }
        )
    finally:
        engine.dispose()
    return Exit.OK


def cmd_current(args: argparse.Namespace) -> int:
    """1 when the ledger is not at this release's revision (`db upgrade` moves it)."""
    from bridge.adapters.store.migrate import current_revision, head_revision

    out = reporter(args)
    engine = _owner_engine(args)
    try:
        revision = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    state = "this release's" if revision == head else f"this release needs {head}"
    out.say(f"{revision or 'none'} ({state})")
    out.emit({"current": revision, "head": head, "up_to_date": revision == head})
    return Exit.OK if revision == head else Exit.FAILURE


def cmd_history(args: argparse.Namespace) -> int:
    from bridge.adapters.store.migrate import history

    out = reporter(args)
    revisions = [
        {"revision": revision, "down_revision": before, "title": doc.splitlines()[0] if doc else ""}
        for revision, before, doc in history()
    ]
    for row in revisions:
        out.say(f"{row['revision']}  {row['title']}")
    out.emit({"revisions": revisions})
    return Exit.OK


def cmd_grant(args: argparse.Namespace) -> int:
    from bridge.adapters.store.migrate import grant_runtime

    out = reporter(args)
    engine = _owner_engine(args)
    try:
        grant_runtime(engine, args.runtime_role)
    finally:
        engine.dispose()
    out.say(f"granted {args.runtime_role} the runtime rights")
    out.emit({"granted": args.runtime_role})
    return Exit.OK
