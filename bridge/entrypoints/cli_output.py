"""How every `elbridge` command reports, and how a command module plugs into `elbridge`.

The conventions (docs/cli.md is the user's page):

- Global options (`--home`, `--database-url`, `--settings FILE`, `-v/-q`, `--json`) are accepted
  before and after the subcommand: `install_global_options` adds them to every parser of the
  tree with SUPPRESS defaults, so a value given anywhere survives, and `global_value` reads them.
- `--json`: one JSON document on standard output and nothing else there (`Reporter.emit`);
  notes, warnings, progress and errors go to standard error.
- Tables fit the terminal (`Reporter.table`, rich): long cells wrap or are cut with an
  ellipsis, columns empty in every row are left out.
- Progress bars on standard error for long work (`Reporter.progress`), hidden when standard
  error is not a terminal, with `-q`, or when there is nothing to count.
- Errors: one line on standard error, `elbridge <command>: <what>: <why>`, and the exit status
  of bridge/entrypoints/exit_codes.py (`run_command`); no traceback for an expected failure
  (a traceback only for a bug, and then only with `-v`).

A command module exposes `add_<name>_commands(subparsers)`, adding its parsers with
`subparsers.add_parser(...)` and `set_defaults(func=...)`; `func(args) -> int` returns an
`Exit`. It opens the ledger with `open_ledger(args)` and reads settings with
`read_settings(args)` from this module (the global options applied), and reports through
`reporter(args)`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from bridge.core.errors import BridgeError, ConfigError, MappingError, Rejected
from bridge.entrypoints.exit_codes import Exit

# Global option -> (default when not given anywhere).
GLOBAL_DEFAULTS: dict[str, Any] = {
    "home": None,
    "database_url": None,
    "settings_file": None,
    "verbose": 0,
    "quiet": False,
    "json": False,
}

# The shells' status for a run stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130

# Called by a service as it goes: (done so far, total when known).
ProgressCallback = Callable[[int, int | None], None]


class Parser(argparse.ArgumentParser):
    """`elbridge`'s parsers (its subcommands' too): a wrong command line is told in one line,
    `elbridge <command>: <what is wrong> (see elbridge <command> --help)`, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(Exit.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        # Words left over are the command's to refuse, not the top parser's: name the command.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            name = getattr(parsed, "command_name", None)
            prog = f"elbridge {name}" if name else self.prog
            self.exit(
                Exit.USAGE,
                f"{prog}: unrecognized arguments: {' '.join(extras)} (see {prog} --help)\n",
            )
        return parsed


def add_global_options(parser: argparse.ArgumentParser) -> None:
    """Add the global options to `parser`, each with a SUPPRESS default so that a parser deeper
    in the tree does not overwrite a value given earlier. An option the parser already has
    (a command's own `--json`, say) is left to it."""
    group = parser.add_argument_group("global options (before or after the command)")
    taken = parser._option_string_actions

    def add(*flags: str, **kwargs: Any) -> None:
        if not any(flag in taken for flag in flags):
            group.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)

    add("--home", metavar="DIR", help="working folder (ledger, inbox, reports); default ./var")
    add("--database-url", metavar="URL", help="ledger database URL (default: SQLite in home)")
    add(
        "--settings",
        dest="settings_file",
        metavar="FILE",
        help="a TOML settings file (default: $ELBRIDGE_SETTINGS_FILE; see docs/settings.md)",
    )
    add(
        "-v",
        "--verbose",
        action=_Count,
        nargs=0,
        help="say more: -v informational messages, -vv debugging detail and tracebacks",
    )
    add("-q", "--quiet", action="store_true", help="errors only: no notes, warnings or progress")
    add("--json", action="store_true", help="one JSON document on standard output")


class _Count(argparse.Action):
    """-v counted across the whole command line (`-v sync -v` is -vv), which `count` is not:
    each subcommand parses into a namespace of its own."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, (getattr(namespace, self.dest, 0) or 0) + 1)


def command_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree under `parser` with the words that reach it (aliases once),
    `parser` itself first with ()."""
    yield path, parser
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from command_parsers(sub, (*path, name))


def install_global_options(parser: argparse.ArgumentParser) -> None:
    """Give every parser of the tree the global options, and each subcommand its name
    (`args.command_name`, e.g. "manual write-off") for its messages. Call it once the whole
    tree is built."""
    for path, sub in command_parsers(parser):
        add_global_options(sub)
        if path:
            sub.set_defaults(command_name=" ".join(path))


def global_value(args: argparse.Namespace, name: str) -> Any:
    """A global option's value wherever it was given, else its default."""
    return getattr(args, name, GLOBAL_DEFAULTS[name])


def read_settings(args: argparse.Namespace):
    """The settings with the global options applied: --settings FILE (else
    ELBRIDGE_SETTINGS_FILE), then --home and --database-url over the environment."""
    from bridge.services.config import load_settings

    overrides: dict[str, Any] = {}
    home = global_value(args, "home")
    if home:
        overrides["home"] = Path(home).expanduser().resolve()
    if global_value(args, "database_url"):
        overrides["database_url"] = global_value(args, "database_url")
    return load_settings(settings_file=global_value(args, "settings_file"), **overrides)


def open_ledger(args: argparse.Namespace):
    """The ledger's engine for these settings."""
    from bridge.adapters.store.db import make_engine

    return make_engine(read_settings(args).ledger_url)


# Reporting ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: its heading, the record's key, and whether it is a number (right-aligned,
    never wrapped)."""

    heading: str
    key: str
    numeric: bool = False


def jsonable(value: Any) -> Any:
    """A value as JSON has it: exact decimals as strings, times in ISO 8601, paths as text."""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, Mapping):  # details read as words, not as a JSON dump
        return "; ".join(f"{key}: {_cell(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value)
    return str(value)


class Reporter:
    """What one command run says, and where: results on standard output (a JSON document with
    --json, text and tables without), notes, warnings and progress on standard error."""

    def __init__(self, command: str, *, as_json: bool, verbosity: int, quiet: bool) -> None:
        self.command = command
        self.json = as_json
        self.verbosity = verbosity
        self.quiet = quiet
        self.emitted = False

    # Standard output: the result.

    def say(self, text: str = "") -> None:
        """A line of the human-readable result (nothing with --json)."""
        if not self.json:
            print(text, file=sys.stdout)

    def write(self, text: str) -> None:
        """Text as it is (a rendered CSV, say) on standard output (nothing with --json)."""
        if not self.json:
            sys.stdout.write(text)

    def emit(self, document: Any) -> None:
        """The result as the one JSON document of --json (nothing without it)."""
        if not self.json:
            return
        if self.emitted:
            raise RuntimeError(f"elbridge {self.command}: a second JSON document")
        self.emitted = True
        json.dump(document, sys.stdout, indent=2, default=jsonable, ensure_ascii=False)
        sys.stdout.write("\n")

    def table(
        self,
        columns: Sequence[Column],
        records: Sequence[Mapping[str, Any]],
        *,
        title: str | None = None,
        footer: str | None = None,
        keep_empty: bool = False,
    ) -> None:
        """Records as a table that fits the terminal's width (nothing with --json): cells
        wrap, numbers stay whole, columns empty in every row are left out unless
        `keep_empty`."""
        if self.json:
            return
        from rich import box
        from rich.measure import Measurement
        from rich.table import Table
        from rich.text import Text

        console = _console(sys.stdout)
        cells = [[_cell(record.get(column.key)) for column in columns] for record in records]
        shown = [
            index
            for index, _ in enumerate(columns)
            if keep_empty or any(row[index] for row in cells)
        ]
        if not records:
            console.print(Text(footer or "nothing to show"))
            return
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
        for index in shown:
            column = columns[index]
            # Cells wrap between words only: a number or a code is never cut (see below).
            table.add_column(
                column.heading, justify="right" if column.numeric else "left", overflow="fold"
            )
        for row in cells:
            table.add_row(*(Text(row[index]) for index in shown))
        unbounded = console.options.update_width(1_000_000)  # else the minimum is clamped
        if Measurement.get(console, unbounded, table).minimum <= console.width:
            console.print(table)
        else:
            # Too many columns for this terminal even wrapped: one block per record instead,
            # heading beside value, as narrow as the longest heading and value need.
            for number, row in enumerate(cells, start=1):
                block = Table(
                    title=f"{title or 'record'} {number} of {len(cells)}",
                    title_justify="left",
                    box=box.SIMPLE,
                    show_header=False,
                    pad_edge=False,
                )
                block.add_column(style="bold", no_wrap=True)
                block.add_column(overflow="fold")
                for index in shown:
                    if row[index]:
                        block.add_row(Text(columns[index].heading), Text(row[index]))
                console.print(block)
        if footer:
            console.print(Text(footer))

    # Standard error: notes, warnings, progress.

    def note(self, text: str) -> None:
        """A remark beside the result ("wrote 12 lines to x.csv") on standard error; not
        with -q."""
        if not self.quiet:
            print(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        """Something that needs attention, on standard error: `elbridge <command>: warning:
        <text>`; not with -q."""
        if not self.quiet:
            print(f"elbridge {self.command}: warning: {text}", file=sys.stderr)

    def error(self, text: str) -> None:
        """The one line that says why the command did not succeed, for a command that returns
        its status rather than raising: `elbridge <command>: <text>` on standard error, even
        with -q."""
        print(f"elbridge {self.command}: {text}", file=sys.stderr)

    def shows_progress(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    @contextmanager
    def progress(self, description: str, total: int | None = None) -> Iterator[ProgressCallback]:
        """A progress bar on standard error while the block runs; yields the callback a
        service calls with (done so far, total when known). Hidden (the callback does
        nothing) when standard error is not a terminal or with -q."""
        if not self.shows_progress():
            yield _ignore
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=_console(sys.stderr),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=total)

            def advance(done: int, new_total: int | None = None) -> None:
                bar.update(task, completed=done, total=new_total if new_total else total)

            yield advance


def _ignore(done: int, total: int | None = None) -> None:
    """No progress shown."""


def _console(file: Any):
    from rich.console import Console

    return Console(file=file, highlight=False, emoji=False, markup=False, soft_wrap=False)


def reporter(args: argparse.Namespace) -> Reporter:
    """The run's reporter (one per parsed command line)."""
    found = getattr(args, "_reporter", None)
    if found is None:
        found = Reporter(
            getattr(args, "command_name", None) or "",
            as_json=bool(global_value(args, "json")),
            verbosity=int(global_value(args, "verbose") or 0),
            quiet=bool(global_value(args, "quiet")),
        )
        args._reporter = found
    return found


# Logging --------------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (tests swap it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; sys.stderr wins
        pass


def log_level(verbosity: int, quiet: bool) -> int:
    """-q ERROR, default WARNING, -v INFO, -vv DEBUG."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)


@contextmanager
def logging_for_the_command(verbosity: int, quiet: bool) -> Iterator[None]:
    """`configure_logging` for the length of one command; the logging as it was afterwards
    (`main` may be called in a process that logs its own way: tests, a scheduler)."""
    root = logging.getLogger()
    level = root.level
    configure_logging(verbosity, quiet)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)


def configure_logging(verbosity: int, quiet: bool) -> None:
    """The bridge's log records on standard error at the level -v/-q ask for: plain
    `elbridge: warning: ...` lines by default, with time and logger name from -v on."""
    level = log_level(verbosity, quiet)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setLevel(level)
    if verbosity:
        pattern = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    else:
        pattern = "elbridge: %(levelname)s: %(message)s"
    handler.setFormatter(_LowerLevelFormatter(pattern))
    root.addHandler(handler)
    root.setLevel(level)


class _LowerLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.levelname = record.levelname.lower()
        return super().format(record)


# Errors -------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    parts = [part.strip().removeprefix("- ").strip() for part in str(text).splitlines()]
    return "; ".join(part for part in parts if part)


def _is_ledger_unreachable(error: BaseException) -> bool:
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(error, exc.OperationalError | exc.InterfaceError)


def _is_bad_database_url(error: BaseException) -> bool:
    exc = sys.modules.get("sqlalchemy.exc")
    return exc is not None and isinstance(error, exc.ArgumentError)


def describe_failure(error: BaseException) -> tuple[Exit, str] | None:
    """The exit status and the one-line message for an expected failure; None for a bug."""
    if isinstance(error, ConfigError | MappingError):
        return Exit.USAGE, _one_line(str(error))
    if isinstance(error, Rejected):
        codes = {problem.code for problem in error.problems}
        status = Exit.USAGE if codes == {"usage"} else Exit.REFUSED
        return status, _one_line(str(error))
    if isinstance(error, BridgeError):
        refused = type(error).__name__.endswith("Refused")  # SignatureRefused, XmlRefused
        return (Exit.REFUSED if refused else Exit.FAILURE), _one_line(str(error))
    if _is_ledger_unreachable(error):
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        return Exit.FAILURE, f"the ledger database: cannot use it: {_one_line(reason)}"
    if _is_bad_database_url(error):
        return Exit.USAGE, f"the database URL: {_one_line(str(error))}"
    if isinstance(error, OSError) and error.filename is not None:
        return Exit.FAILURE, f"{error.filename}: {error.strerror or error}"
    if isinstance(error, ConnectionError | TimeoutError | OSError):
        return Exit.FAILURE, _one_line(str(error) or type(error).__name__)
    return None


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: its exit status, an expected failure told as one line on
    standard error (and as {"error": ...} with --json)."""
    out = reporter(args)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _fail(out, INTERRUPTED, "interrupted")
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`elbridge ... | head`): nothing more to say to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return Exit.FAILURE
    except Exception as error:  # every failure ends as one line and a status
        told = describe_failure(error)
        if told is None:
            if out.verbosity:
                traceback.print_exc(file=sys.stderr)
            status = Exit.FAILURE
            text = f"unexpected error (a bug): {type(error).__name__}: {_one_line(str(error))}"
            if not out.verbosity:
                text += " (run with -v for the traceback)"
        else:
            status, text = told
            if out.verbosity >= 2:
                traceback.print_exc(file=sys.stderr)
        _fail(out, status, text)
        return status


def _fail(out: Reporter, status: int, text: str) -> None:
    print(f"elbridge {out.command}: {text}" if out.command else f"elbridge: {text}",
          file=sys.stderr)  # fmt: skip
    if out.json and not out.emitted:
        out.emit({"command": out.command, "ok": False, "exit": int(status), "error": text})
