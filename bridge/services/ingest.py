"""National licence files into the ledger: pick the mapping, translate, save what is valid,
keep what is not (with every reason) in the rejects store.

One transaction per file. A file that cannot be read at all (no mapping claims it, wrong
encoding, malformed JSON or XML) raises UnreadableFile; `ingest_inbox` sets such files aside in
inbox/failed/ with a .reason.txt beside them.

The mappings are read from ELBRIDGE_MAPPINGS_DIR (one or more folders; the project's own
mappings/ by default). A mapping file that is itself wrong is reported with its reason and
skipped: the other formats still go in, and a file only the broken mapping claims waits in the
inbox until it is fixed."""

from __future__ import annotations

import fnmatch
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy import Engine

from bridge.adapters.store.db import utcnow
from bridge.adapters.store.licences import SaveOutcome, save_licence
from bridge.adapters.store.rejects import save_reject
from bridge.core.control_lists import (
    REFERENCE_NAME,
    ControlLists,
    parse_control_lists,
    project_control_lists,
)
from bridge.core.errors import ConfigError, MappingError, Problem
from bridge.core.mapping import Mapping, UnreadableFile, mapping_for, parse_mapping, translate
from bridge.core.model import Licence
from bridge.core.paths import MAPPINGS_DIR
from bridge.services.config import load_settings, mapping_dirs
from bridge.services.licence_status import on_first_version, on_new_version

# Told (records read so far, records in the file when known) as a file is read: a progress bar.
Progress = Callable[[int, int | None], None]

# Files still being written by their producer, by convention, are not picked up.
_UNFINISHED = (".part", ".tmp", ".partial")


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    source: str
    number: str | None
    problems: tuple[Problem, ...]


@dataclass
class IngestReport:
    """What one file did to the ledger. `changed` lists (number, version) of every licence
    that is new or has a new version, i.e. that needs a certificate."""

    file: str
    mapping: str
    new: int = 0
    new_version: int = 0
    unchanged: int = 0
    stale: int = 0
    rejected: int = 0
    rejects: list[RejectedRecord] = field(default_factory=list)
    changed: list[tuple[str, int]] = field(default_factory=list)
    failure: str | None = None  # why the file could not be read at all (inbox only)
    # "file", or "mapping": a mapping file that is itself wrong, skipped (`file` is its path)
    kind: str = "file"
    broken_mappings: tuple[str, ...] = ()  # mappings skipped while this file was read

    @property
    def records(self) -> int:
        return self.new + self.new_version + self.unchanged + self.stale + self.rejected

    def describe(self) -> str:
        if self.kind == "mapping":
            return f"mapping {self.file}: not loaded, skipped: {self.failure}"
        if self.failure is not None:
            return f"{self.file}: not read: {self.failure}"
        head = (
            f"{self.file} ({self.mapping}): {self.new} new, {self.new_version} new version,"
            f" {self.unchanged} unchanged, {self.stale} stale, {self.rejected} rejected"
        )
        details = [
            f"  rejected {r.number or '(no number)'} at {r.source}:\n"
            + "\n".join(f"    - {p.path or '(record)'}: {p.reason}" for p in r.problems)
            for r in self.rejects
        ]
        skipped = [f"  mapping skipped: {reason}" for reason in self.broken_mappings]
        return "\n".join([head, *details, *skipped])

    def __str__(self) -> str:
        return self.describe()

    def count_rejected(self, record: RejectedRecord) -> None:
        self.rejected += 1
        self.rejects.append(record)

    def count_saved(self, outcome: SaveOutcome, stored: Licence) -> None:
        """Count what saving one licence did; a new licence or version needs a certificate."""
        if outcome is SaveOutcome.NEW:
            self.new += 1
        elif outcome is SaveOutcome.NEW_VERSION:
            self.new_version += 1
        elif outcome is SaveOutcome.UNCHANGED:
            self.unchanged += 1
        else:
            self.stale += 1
        if outcome in (SaveOutcome.NEW, SaveOutcome.NEW_VERSION):
            self.changed.append((stored.number, stored.version))


class WaitingForMapping(UnreadableFile):
    """The file is claimed only by a mapping that is broken: it waits for the mapping's fix."""


@dataclass(frozen=True, slots=True)
class BrokenMapping:
    """A mapping file (or a folder's control list table) that could not be loaded, why, and
    the file-name patterns it declares when they could still be read."""

    path: Path
    reason: str
    files: tuple[str, ...] = ()

    def claims(self, file_name: str) -> bool:
        lowered = file_name.lower()
        return any(fnmatch.fnmatchcase(lowered, pattern.lower()) for pattern in self.files)


@dataclass(frozen=True)
class MappingSet:
    """The mappings of the configured folders: those that load, and those skipped with why."""

    mappings: tuple[Mapping, ...]
    broken: tuple[BrokenMapping, ...]
    folders: tuple[Path, ...]


Folders = Path | Sequence[Path] | None
_cache: dict[tuple[Path, tuple[int, int], tuple], Mapping] = {}


def _folders(mappings_dir: Folders) -> tuple[Path, ...]:
    if mappings_dir is None:
        return mapping_dirs(load_settings())
    if isinstance(mappings_dir, Path | str):
        return (Path(mappings_dir),)
    return tuple(Path(folder) for folder in mappings_dir)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return (stat.st_mtime_ns, stat.st_size)


def _control_lists(folders: tuple[Path, ...]) -> tuple[ControlLists, tuple, list[BrokenMapping]]:
    """The project's control lists and those each folder's reference/control-lists.yaml adds
    (the project's own folder adds nothing: its table is the base); a table that is wrong is
    skipped with its reason."""
    lists = project_control_lists()
    key: list[tuple[str, tuple[int, int]]] = []
    broken = []
    for folder in folders:
        table = folder / "reference" / REFERENCE_NAME
        if not table.is_file() or folder.resolve() == MAPPINGS_DIR.resolve():
            continue
        try:
            lists = lists.merged(
                parse_control_lists(table.read_text(encoding="utf-8"), origin=str(table)),
                str(table),
            )
            key.append((str(table), _stamp(table)))
        except (ConfigError, OSError, UnicodeDecodeError) as error:
            broken.append(BrokenMapping(table, str(error)))
    return lists, tuple(key), broken


def _declared_files(text: str) -> tuple[str, ...]:
    """The `files` patterns of a mapping that does not compile, when they can still be read."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        return ()
    files = document.get("files") if isinstance(document, dict) else None
    files = [files] if isinstance(files, str) else files
    return tuple(f for f in files if isinstance(f, str)) if isinstance(files, list) else ()


def load_mapping_set(mappings_dir: Folders = None) -> MappingSet:
    """Every mapping (*.yaml, *.yml) of the folders (ELBRIDGE_MAPPINGS_DIR's by default),
    compiled, in folder order. A file that is wrong, or whose name a mapping read before it
    already has, is kept in `broken` with its reason, never raised. Unchanged files are not
    compiled again."""
    folders = _folders(mappings_dir)
    lists, lists_key, broken = _control_lists(folders)
    found: list[Mapping] = []
    names: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            broken.append(BrokenMapping(folder, f"{folder}: the mappings folder does not exist"))
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            text = ""
            try:
                key = (path, _stamp(path), lists_key)
                mapping = _cache.get(key)
                if mapping is None:
                    text = path.read_text(encoding="utf-8")
                    mapping = _cache[key] = parse_mapping(text, str(path), path.stem, lists)
            except (MappingError, OSError, UnicodeDecodeError) as error:
                reason = str(error) if isinstance(error, MappingError) else f"{path}: {error}"
                broken.append(BrokenMapping(path, reason, _declared_files(text)))
                continue
            if mapping.name in names:
                first = names[mapping.name]
                reason = f"{path}: the name {mapping.name!r} is already used by {first}"
                broken.append(BrokenMapping(path, reason, mapping.files))
                continue
            names[mapping.name] = path
            found.append(mapping)
    return MappingSet(tuple(found), tuple(broken), folders)


def load_mappings(mappings_dir: Folders = None) -> list[Mapping]:
    """Every mapping of the folders, compiled; the first broken one raises MappingError
    naming the file and the key (for tools that need all of them; ingest skips broken ones)."""
    found = load_mapping_set(mappings_dir)
    if found.broken:
        raise MappingError(found.broken[0].reason)
    return list(found.mappings)


def _mapping(file_name: str, found: MappingSet, mapping_name: str | None) -> Mapping:
    try:
        return mapping_for(file_name, found.mappings, mapping_name)
    except UnreadableFile as error:
        if mapping_name is None:
            waiting = [b for b in found.broken if b.claims(file_name)]
            if waiting:
                raise WaitingForMapping(
                    f"{file_name} waits for its mapping, which is broken: {waiting[0].reason}"
                ) from None
        if found.broken:
            skipped = "; ".join(b.reason for b in found.broken)
            raise UnreadableFile(f"{error}; mappings not loaded: {skipped}") from None
        raise


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    mappings_dir: Folders = None,
    mapping_name: str | None = None,
    now: datetime | None = None,
    mapping_set: MappingSet | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Read one national file into the ledger and report what each record did.

    Every valid record is saved even when neighbours are rejected; every rejected record is
    stored with all its problems and its text as read. Raises UnreadableFile when the file
    cannot be read at all (nothing is written then), WaitingForMapping (one) when only a
    broken mapping claims it. `mapping_set` is the mappings already loaded (else the folders
    `mappings_dir`, ELBRIDGE_MAPPINGS_DIR's by default, are read). `progress`, when given, is
    told the records read so far as they are saved."""
    now = now or utcnow()
    found = mapping_set or load_mapping_set(mappings_dir)
    mapping = _mapping(path.name, found, mapping_name)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableFile(f"{path}: {error.strerror or error}") from None
    records = translate(mapping, data, path.name)
    report = IngestReport(
        file=path.name,
        mapping=mapping.name,
        broken_mappings=tuple(b.reason for b in found.broken),
    )
    with engine.begin() as conn:
        for done, record in enumerate(records, start=1):
            if progress is not None:
                progress(done, None)
            if record.licence is None:
                save_reject(conn, record.source, mapping.name, record.text, record.problems, now)
                report.count_rejected(RejectedRecord(record.source, record.number, record.problems))
                continue
            outcome, stored = save_licence(
                conn,
                record.licence,
                source=record.source,
                now=now,
                explicit_version=mapping.explicit_version,
            )
            if outcome is SaveOutcome.NEW_VERSION:
                on_new_version(conn, stored, now=now)  # status in force, ceilings below usage
            elif outcome is SaveOutcome.NEW:
                on_first_version(conn, stored, now=now)  # past its end date: expired at once
            report.count_saved(outcome, stored)
    return report


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder`, never over an earlier file of the same name."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    counter = 1
    while target.exists():
        target = folder / f"{path.stem}.{counter}{path.suffix}"
        counter += 1
    shutil.move(str(path), str(target))
    return target


def ingest_inbox(
    engine: Engine,
    inbox: Path,
    *,
    mappings_dir: Folders = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[IngestReport]:
    """Ingest every file waiting in `inbox` (not hidden, not *.part/*.tmp), in name order,
    then move it to inbox/done/, or to inbox/failed/ with a .reason.txt when it cannot be
    read at all. A broken mapping is reported first (a report of kind "mapping") and skipped;
    a file only it claims stays in the inbox, reported, until the mapping is fixed.

    A file moved only after its transaction commits may be read twice after a crash; the
    second reading finds every licence unchanged."""
    if not inbox.is_dir():
        return []
    found = load_mapping_set(mappings_dir)
    reports = [
        IngestReport(file=str(broken.path), mapping="", failure=broken.reason, kind="mapping")
        for broken in found.broken
    ]
    for path in sorted(inbox.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(_UNFINISHED):
            continue
        try:
            report = ingest_file(engine, path, now=now, mapping_set=found, progress=progress)
        except WaitingForMapping as error:
            reports.append(IngestReport(file=path.name, mapping="", failure=str(error)))
            continue
        except UnreadableFile as error:
            target = _move(path, inbox / "failed")
            target.with_name(target.name + ".reason.txt").write_text(f"{error}\n", encoding="utf-8")
            reports.append(IngestReport(file=path.name, mapping="", failure=str(error)))
            continue
        _move(path, inbox / "done")
        reports.append(report)
    return reports
