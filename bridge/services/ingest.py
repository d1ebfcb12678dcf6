"""National licence files into the ledger: pick the mapping, translate, save what is valid,
keep what is not (with every reason) in the rejects store.

One transaction per file. A file that cannot be read at all (no mapping claims it, wrong
encoding, malformed JSON or XML) raises UnreadableFile; `ingest_inbox` sets such files aside in
inbox/failed/ with a .reason.txt beside them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from bridge.adapters.store.db import utcnow
from bridge.adapters.store.licences import SaveOutcome, save_licence
from bridge.adapters.store.rejects import save_reject
from bridge.core.errors import MappingError, Problem
from bridge.core.mapping import Mapping, UnreadableFile, mapping_for, parse_mapping, translate
from bridge.core.model import Licence
from bridge.core.paths import MAPPINGS_DIR
from bridge.services.licence_status import on_new_version

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

    @property
    def records(self) -> int:
        return self.new + self.new_version + self.unchanged + self.stale + self.rejected

    def describe(self) -> str:
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
        return "\n".join([head, *details])

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


_cache: dict[Path, tuple[tuple[int, int], Mapping]] = {}


def load_mappings(mappings_dir: Path = MAPPINGS_DIR) -> list[Mapping]:
    """Every mapping in `mappings_dir` (*.yaml, *.yml), compiled; a broken one raises
    MappingError naming the file and the key. Unchanged files are not compiled again."""
    found = []
    for path in sorted([*mappings_dir.glob("*.yaml"), *mappings_dir.glob("*.yml")]):
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _cache.get(path)
        if cached is None or cached[0] != stamp:
            text = path.read_text(encoding="utf-8")
            cached = _cache[path] = (stamp, parse_mapping(text, str(path), path.stem))
        found.append(cached[1])
    names = [m.name for m in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MappingError(f"{mappings_dir}: several mappings are named {', '.join(duplicates)}")
    return found


def ingest_file(
    engine: Engine,
    path: Path,
    *,
    mappings_dir: Path = MAPPINGS_DIR,
    mapping_name: str | None = None,
    now: datetime | None = None,
) -> IngestReport:
    """Read one national file into the ledger and report what each record did.

    Every valid record is saved even when neighbours are rejected; every rejected record is
    stored with all its problems and its text as read. Raises UnreadableFile when the file
    cannot be read at all (nothing is written then)."""
    now = now or utcnow()
    mapping = mapping_for(path.name, load_mappings(mappings_dir), mapping_name)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableFile(f"{path}: {error.strerror or error}") from None
    records = translate(mapping, data, path.name)
    report = IngestReport(file=path.name, mapping=mapping.name)
    with engine.begin() as conn:
        for record in records:
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
    mappings_dir: Path = MAPPINGS_DIR,
    now: datetime | None = None,
) -> list[IngestReport]:
    """Ingest every file waiting in `inbox` (not hidden, not *.part/*.tmp), in name order,
    then move it to inbox/done/, or to inbox/failed/ with a .reason.txt when it cannot be
    read at all. A broken mapping raises MappingError and leaves every file in place.

    A file moved only after its transaction commits may be read twice after a crash; the
    second reading finds every licence unchanged."""
    if not inbox.is_dir():
        return []
    load_mappings(mappings_dir)  # a broken mapping stops the run before any file moves
    reports = []
    for path in sorted(inbox.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(_UNFINISHED):
            continue
        try:
            report = ingest_file(engine, path, mappings_dir=mappings_dir, now=now)
        except UnreadableFile as error:
            target = _move(path, inbox / "failed")
            target.with_name(target.name + ".reason.txt").write_text(f"{error}\n", encoding="utf-8")
            reports.append(IngestReport(file=path.name, mapping="", failure=str(error)))
            continue
        _move(path, inbox / "done")
        reports.append(report)
    return reports
