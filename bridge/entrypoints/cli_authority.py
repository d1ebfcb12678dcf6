"""`elbridge manual ...` and `elbridge reconcile --history/--refusals/--alerts`: the licensing
authority's commands. Wiring only: arguments and the ledger's engine to
bridge.services.authority (which owns each transaction), results to bridge.core.history's and
bridge.core.reconcile's renderers.

cli.py hooks these in and hands over how to open the ledger from the global options, so that
settings are read one way only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

OpenLedger = Callable[[argparse.Namespace], Any]  # args -> SQLAlchemy Engine


def _decimal(text: str) -> Decimal:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a decimal number") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite decimal number")
    return number


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
        "--unit", required=True, help="unit of the quantity (converted into the line's unit)"
    )
    parser.add_argument("--value", type=_decimal, help="value, in the line's currency")
    parser.add_argument("--currency", help="currency of the value (ISO 4217)")
    parser.add_argument("--reference", help="your reference (audit file, paper declaration)")
    _who_and_why(parser)


def add_authority_commands(
    subparsers: argparse._SubParsersAction, *, open_ledger: OpenLedger
) -> None:
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
    write_off.set_defaults(func=partial(cmd_manual_write_off, open_ledger=open_ledger))
    correct = actions.add_parser(
        "correct", help="a signed correction of what a line has written off (e.g. after an audit)"
    )
    _quantity_arguments(correct, signed=True)
    correct.set_defaults(func=partial(cmd_manual_correct, open_ledger=open_ledger))
    reverse = actions.add_parser(
        "reverse", help="undo one earlier manual write-off or correction (once)"
    )
    reverse.add_argument("--movement", required=True, type=int, help="the movement's id")
    _who_and_why(reverse)
    reverse.set_defaults(func=partial(cmd_manual_reverse, open_ledger=open_ledger))


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
    """Print the history, refusals or alerts `args` asks for. Exit status 1 when there is
    something to look at (refusals, alerts, an over-used line in the history), else 0."""
    from bridge.core.errors import Problem, Rejected
    from bridge.core.history import render_alerts, render_history, render_refusals
    from bridge.services import authority

    if args.history:
        if not args.licence:
            raise Rejected(
                [Problem("--history shows one licence: give --licence N", code="usage")],
                summary="no licence given",
            )
        rows = authority.licence_history(engine, args.licence)
        text = render_history(args.licence, rows, args.format)
        attention, count = bool(authority.over_used_lines(engine, args.licence)), len(rows)
    elif args.refusals:
        records = authority.list_refusals(engine, args.licence)
        text = render_refusals(records, args.format, args.licence)
        attention, count = bool(records), len(records)
    else:
        records = authority.list_alerts(engine, args.licence)
        text = render_alerts(records, args.format, args.licence)
        attention, count = bool(records), len(records)
    _write(args, text, count)
    return 1 if attention else 0


def _write(args: argparse.Namespace, text: str, count: int) -> None:
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {count} rows to {args.output}")
    else:
        sys.stdout.write(text)


def cmd_manual_write_off(args: argparse.Namespace, *, open_ledger: OpenLedger) -> int:
    from bridge.services.authority import manual_write_off

    return _act(args, open_ledger, manual_write_off)


def cmd_manual_correct(args: argparse.Namespace, *, open_ledger: OpenLedger) -> int:
    from bridge.services.authority import correct

    return _act(args, open_ledger, correct)


def _act(args: argparse.Namespace, open_ledger: OpenLedger, act: Callable[..., Any]) -> int:
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
    return _report(result)


def cmd_manual_reverse(args: argparse.Namespace, *, open_ledger: OpenLedger) -> int:
    from bridge.services.authority import reverse_movement

    result = reverse_movement(
        open_ledger(args),
        args.movement,
        reason=args.reason,
        actor=args.actor,
        now=datetime.now(UTC),
        force=args.force,
    )
    return _report(result)


def _report(result: Any) -> int:
    """The movement recorded and the line's balance after it; 1 when an alert was raised."""
    from bridge.core.reconcile import render

    print(result.describe())
    if result.line is not None:
        sys.stdout.write(render([result.line], "table"))
    return 1 if result.alerts else 0
