"""`elbridge manual ...` and `elbridge reconcile --history/--refusals/--alerts`: the licensing
authority's commands. Wiring only: arguments and the ledger's engine to
bridge.services.authority (which owns each transaction), results to bridge.core.history's and
bridge.core.reconcile's renderers.

Reporting, errors and exit statuses follow bridge/entrypoints/cli_output.py: a refusal by the
rules exits 3 (REFUSED) naming the reason; a forced act that raised an alert exits 0 with a
warning."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

from bridge.entrypoints.cli_output import Column, open_ledger, reporter
from bridge.entrypoints.exit_codes import Exit


def _decimal(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite decimal number")
    return number


def _unit(text: str) -> str:
    """A unit as typed: a UN/ECE Rec 20 code (KGM, KGM#G) or an everyday alias (kg, l, pcs),
    as its code; refused naming the accepted ones."""
    from bridge.core.units import UnitError, from_alias, parse_unit

    code = from_alias(text)
    try:
        parse_unit(code)
    except UnitError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return code


def _who_and_why(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (mandatory, kept with the movement)")
    parser.add_argument("--actor", required=True, help="who (mandatory): the person's identity")
    parser.add_argument(
        "--force",
        action="store_true",
        help="record it even beyond the line's ceiling (an alert is raised for the authority)",
    )


def _quantity_arguments(parser: argparse.ArgumentParser, *, signed: bool) -> None:
    parser.add_argument("--licence", required=True, help="licence number")
    parser.add_argument("--line", required=True, type=int, help="licence line number")
    parser.add_argument(
        "--quantity",
        required=True,
        type=_decimal,
        help="signed quantity (negative gives back)" if signed else "quantity (> 0)",
    )
    parser.add_argument(
        "--unit",
        required=True,
        type=_unit,
        help="unit of the quantity, converted into the line's unit: a UN/ECE Rec 20 code (KGM,"
        " LTR, H87...) or kg, g, t, l, ml, m, m2, m3, pcs...",
    )
    parser.add_argument("--value", type=_decimal, help="value, in the line's currency")
    parser.add_argument("--currency", help="currency of the value (ISO 4217)")
    parser.add_argument("--reference", help="your reference (audit file, paper declaration)")
    _who_and_why(parser)


def add_authority_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `manual write-off|correct|reverse` to the `elbridge` command set."""
    manual = subparsers.add_parser(
        "manual",
        help="manual quantity management: write off, correct or reverse by hand"
        " (reason and actor mandatory)",
        description="Manual quantity management by the licensing authority. Every act appends"
        " an audited movement with who and why; nothing is edited or deleted.",
    )
    actions = manual.add_subparsers(dest="manual_command", required=True, metavar="ACTION")
    write_off = actions.add_parser("write-off", help="write off a quantity (and value) by hand")
    _quantity_arguments(write_off, signed=False)
    write_off.set_defaults(func=cmd_manual_write_off)
    correct = actions.add_parser(
        "correct", help="a signed correction of what a line has written off (e.g. after an audit)"
    )
    _quantity_arguments(correct, signed=True)
    correct.set_defaults(func=cmd_manual_correct)
    reverse = actions.add_parser(
        "reverse", help="undo one earlier manual write-off or correction (once)"
    )
    reverse.add_argument("--movement", required=True, type=int, help="the movement's id")
    _who_and_why(reverse)
    reverse.set_defaults(func=cmd_manual_reverse)


def add_reconcile_views(reconcile: argparse.ArgumentParser) -> None:
    """Add `--history`, `--refusals` and `--alerts` to `elbridge reconcile`."""
    views = reconcile.add_mutually_exclusive_group()
    views.add_argument(
        "--history",
        action="store_true",
        help="the licence's movements in time order with the running balance (needs --licence)",
    )
    views.add_argument(
        "--refusals", action="store_true", help="refused write-offs with code and reason"
    )
    views.add_argument("--alerts", action="store_true", help="alerts for the authority")


def wants_view(args: argparse.Namespace) -> bool:
    return bool(
        getattr(args, "history", False)
        or getattr(args, "refusals", False)
        or getattr(args, "alerts", False)
    )


def show_view(args: argparse.Namespace, engine: Any) -> int:
    """Print the history, refusals or alerts `args` asks for: a table fitting the terminal,
    CSV, or the JSON document. A report: 0 whatever it shows."""
    from bridge.core import history as views
    from bridge.core.errors import Problem, Rejected
    from bridge.services import authority

    out = reporter(args)
    if args.history:
        if not args.licence:
            raise Rejected(
                [Problem("--history shows one licence: give --licence N", code="usage")],
                summary="no licence given",
            )
        rows = authority.licence_history(engine, args.licence)
        text = views.render_history(args.licence, rows, args.format)
        records, columns = [views.history_record(r) for r in rows], views.HISTORY_COLUMNS
        render = partial(views.render_history, args.licence, rows)
    elif args.refusals:
        found = authority.list_refusals(engine, args.licence)
        text = views.render_refusals(found, args.format, args.licence)
        records, columns = [views.refusal_record(r) for r in found], views.REFUSAL_COLUMNS
        render = partial(views.render_refusals, found, licence_number=args.licence)
    else:
        found = authority.list_alerts(engine, args.licence)
        text = views.render_alerts(found, args.format, args.licence)
        records, columns = [views.alert_record(r) for r in found], views.ALERT_COLUMNS
        render = partial(views.render_alerts, found, licence_number=args.licence)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        out.note(f"wrote {len(records)} rows to {args.output}")
        out.emit({"rows": len(records), "output": args.output})
    elif args.format == "json":
        out.emit(json.loads(text))
    elif args.format == "table":
        # The core's table ends with its one-line summary; the terminal gets rich's table.
        footer = render(fmt="table").rstrip("\n").rsplit("\n", 1)[-1]
        table = [Column(heading, key, numeric) for heading, key, numeric in columns]
        out.table(table, records, footer=footer)
    else:
        out.write(text)
    return Exit.OK


def cmd_manual_write_off(args: argparse.Namespace) -> int:
    from bridge.services.authority import manual_write_off

    return _act(args, manual_write_off)


def cmd_manual_correct(args: argparse.Namespace) -> int:
    from bridge.services.authority import correct

    return _act(args, correct)


def _act(args: argparse.Namespace, act: Callable[..., Any]) -> int:
    result = act(
        open_ledger(args),
        args.licence,
        args.line,
        args.quantity,
        args.unit,
        value=args.value,
        currency=args.currency,
        reason=args.reason,
        actor=args.actor,
        now=datetime.now(UTC),
        reference=args.reference,
        force=args.force,
    )
    return _report(args, result)


def cmd_manual_reverse(args: argparse.Namespace) -> int:
    from bridge.services.authority import reverse_movement

    result = reverse_movement(
        open_ledger(args),
        args.movement,
        reason=args.reason,
        actor=args.actor,
        now=datetime.now(UTC),
        force=args.force,
    )
    return _report(args, result)


def _report(args: argparse.Namespace, result: Any) -> int:
    """The movement recorded and the line's balance after it; an alert raised is warned of."""
    from dataclasses import asdict

    from bridge.core.reconcile import as_records

    out = reporter(args)
    line = as_records([result.line])[0] if result.line is not None else None
    out.emit(
        {
            "movement_id": result.movement_id,
            "movement": asdict(result.movement),
            "line": line,
            "alerts": list(result.alerts),
            "status": None if result.status is None else str(result.status),
            "description": result.describe(),
        }
    )
    out.say(result.describe())
    if result.line is not None:
        out.table(RECONCILE_COLUMNS, [line], footer=reconcile_footer([result.line]))
    for kind in result.alerts:
        out.warn(f"alert raised for the authority: {kind}")
    return Exit.OK


def reconcile_footer(rows: Any) -> str:
    """The reconciliation's one-line summary: licences, lines, write-offs, over-used lines."""
    from bridge.core.reconcile import summary

    totals = summary(rows)
    over = totals["over_used_lines"]
    return (
        f"{totals['licences']} licences, {totals['lines']} lines,"
        f" {totals['lines_with_write_offs']} with write-offs, {len(over)} over-used"
        + (f": {', '.join(over)}" if over else "")
    )


# The reconciliation's columns on a terminal (CSV and JSON carry every field).
RECONCILE_COLUMNS = (
    Column("licence", "licence_number"),
    Column("line", "line_number", numeric=True),
    Column("type", "licence_type"),
    Column("status", "status"),
    Column("CLE", "control_list_entry"),
    Column("unit", "unit"),
    Column("authorised", "authorised_quantity", numeric=True),
    Column("written off", "written_off_quantity", numeric=True),
    Column("remaining", "remaining_quantity", numeric=True),
    Column("cur", "currency"),
    Column("auth. value", "authorised_value", numeric=True),
    Column("value used", "written_off_value", numeric=True),
    Column("value left", "remaining_value", numeric=True),
    Column("moves", "movements", numeric=True),
    Column("customs", "certificate"),
    Column("over-use", "over_used"),
    Column("contingency", "contingency_movements", numeric=True),
    Column("dropped in", "dropped_in_version", numeric=True),
)
