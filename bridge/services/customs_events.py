"""Customs' side of the declaration stream, as the customs simulator, the demo and the tests play
it: an envelope around a WCO declaration file, and events published to the bridge's topic.

`envelope_for_declaration_file` wraps a declaration the bridge can read (tests, demo);
`events_for_files` sends files as they are, good or bad, announcing the event their
FunctionCode/TypeCode name and counting versions per MRN (`VersionBook`), and `check_events`
says beforehand what the bridge will think of each (`elbridge customs-sim publish --check`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bridge.adapters.mqtt.client import Received
from bridge.core.declaration_header import DeclarationHeader, read_header
from bridge.core.documents import licence_document, national_document_codes
from bridge.core.envelope import (
    EventKind,
    build_envelope,
    envelope_for_declaration,
    mrn_from_lrn,
)
from bridge.core.errors import ConfigError, Problem
from bridge.services.config import Settings
from bridge.services.consumer import read_batch
from bridge.services.mqtt_endpoints import publisher


def envelope_for_declaration_file(
    path: Path,
    *,
    event: EventKind | str,
    mrn: str | None = None,
    version: int = 1,
    event_time: datetime,
    message_id: str | None = None,
    country: str | None = None,
) -> bytes:
    """An envelope carrying the WCO declaration in `path` (bridge.core.envelope's
    `envelope_for_declaration`: an MRN derived from the LRN, or from the file's name, when the
    declaration has none; message id `<mrn>-<event>-v<version>` unless given)."""
    data = Path(path).read_bytes()
    return envelope_for_declaration(
        data,
        source=str(path),
        name=Path(path).name,
        event=event,
        mrn=mrn,
        version=version,
        event_time=event_time,
        message_id=message_id,
        country=country,
    )


def publish_events(
    settings: Settings,
    envelopes: Iterable[bytes],
    *,
    topic: str | None = None,
    timeout: float = 60.0,
) -> int:
    """Publish each envelope at QoS 1 to `topic` (settings.mqtt_topic by default) and return
    once the broker has acknowledged every one (their count); raises on refusal or timeout."""
    with publisher(settings).start(timeout) as sender:
        return sender.publish(topic or settings.mqtt_topic, envelopes, timeout)


# Files as they are ------------------------------------------------------------------------------
# (`elbridge customs-sim publish`: playing a customs system, bad messages included)


@dataclass(frozen=True)
class OutgoingEvent:
    """One file as it will be sent: the MQTT message and what it announces, with how each was
    chosen (from an option, from the declaration, or counted)."""

    path: Path
    message: bytes
    message_id: str | None
    mrn: str | None
    event: str | None
    version: int | None
    how: str
    declaration_digest: str | None = None  # the file's SHA-256, for the version book


@dataclass(frozen=True)
class Verdict:
    """What the bridge will think of an outgoing event, as far as reading it tells."""

    event: OutgoingEvent
    quarantined: bool
    problems: tuple[Problem, ...] = ()
    summary: str = ""

    def describe(self) -> str:
        if not self.quarantined:
            return f"{self.event.path}: {self.summary}"
        lines = [f"{self.event.path}: would be quarantined:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class VersionBook:
    """The declaration versions this simulator gave each MRN, kept in a JSON file (by default
    <home>/customs-sim/versions.json): per MRN, the SHA-256 of each file other than the original
    in the order it was first sent. The original (FunctionCode 9) is version 1; the n-th other
    message of an MRN (an amendment or an invalidation) is version n + 1; the same file sent
    again keeps its version, so its message id is the same and the bridge sees a redelivery. A
    message whose FunctionCode cannot be read is version 1 (and counts for nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book: dict[str, list[str]] = {}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                self.book = {str(k): [str(d) for d in v] for k, v in loaded.items()}
            except (ValueError, AttributeError, TypeError) as error:
                raise ConfigError(
                    f"{path} is not a version book (a JSON object of MRN -> list of SHA-256):"
                    f" {error}; remove it to count from scratch, or give --version"
                ) from None

    def version(self, mrn: str, digest: str, kind: EventKind | None) -> tuple[int, str]:
        if kind is EventKind.RELEASED:
            return 1, "version 1: the original declaration"
        if kind is None:
            return 1, "version 1: what the message is could not be read"
        sent = self.book.setdefault(mrn, [])
        again = digest in sent
        if not again:
            sent.append(digest)
        version = sent.index(digest) + 2
        counted = f"the {_ordinal(version - 1)} message after the original sent for this MRN"
        return version, f"version {version}: {counted}" + (" (sent before)" if again else "")

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.book, indent=1, sort_keys=True), encoding="utf-8")


def events_for_files(
    paths: Sequence[Path],
    *,
    event_time: datetime,
    event: EventKind | str | None = None,
    mrn: str | None = None,
    version: int | None = None,
    country: str | None = None,
    versions: VersionBook | None = None,
    as_message: bool = False,
    without_event: bool = False,
    max_bytes: int = 64 * 1024 * 1024,
) -> list[OutgoingEvent]:
    """Each file as customs would send it, never refused for what it holds.

    A declaration file goes into an envelope as it is: the event is `event` when given, else
    the one its FunctionCode/TypeCode names (bridge.core.declaration_header.event_kind), else
    none; the MRN is `mrn`, else its Declaration/ID, else one derived from its LRN (or file
    name); the version is `version`, else counted per MRN by `versions` (VersionBook), else 1.
    With `without_event` the envelope names no event (the bridge reads it from the
    declaration); with `as_message` each file is the whole MQTT message, byte for byte."""
    prepared = []
    for path in paths:
        data = Path(path).read_bytes()
        if as_message:
            prepared.append(_as_message(Path(path), data, max_bytes))
            continue
        header = read_header(data, max_bytes=max_bytes)
        kind, how_event = _event_of(event, header)
        chosen_mrn, how_mrn = _mrn_of(mrn, header, Path(path), event_time, country)
        digest = hashlib.sha256(data).hexdigest()
        if version is not None:
            chosen_version, how_version = version, f"version {version}: given"
        elif versions is not None:
            chosen_version, how_version = versions.version(chosen_mrn, digest, kind)
        else:
            chosen_version, how_version = 1, "version 1: default"
        message_id = f"{chosen_mrn}-{kind or 'event'}-v{chosen_version}"
        left_out = " (left out of the envelope)" if without_event and kind else ""
        prepared.append(
            OutgoingEvent(
                path=Path(path),
                message=_envelope_as_is(
                    data,
                    message_id=message_id,
                    mrn=chosen_mrn,
                    kind=None if without_event else kind,
                    version=chosen_version,
                    event_time=event_time,
                    country=country,
                ),
                message_id=message_id,
                mrn=chosen_mrn,
                event=None if without_event or kind is None else str(kind),
                version=chosen_version,
                how="; ".join((how_event + left_out, how_mrn, how_version)),
                declaration_digest=digest,
            )
        )
    return prepared


def check_events(settings: Settings, events: Sequence[OutgoingEvent]) -> list[Verdict]:
    """Each event read as the bridge's consumer reads it (bridge.services.consumer.read_batch,
    with these settings' limits and national document codes): quarantined with its reasons, or
    what the bridge will find in it."""
    national = national_document_codes(settings.national_document_codes)
    verdicts = []
    for outgoing in events:
        received = Received(settings.mqtt_topic, outgoing.message, 0, 1, 0, False)
        readable, unreadable = read_batch(settings, [received])
        if unreadable:
            verdicts.append(Verdict(outgoing, True, tuple(unreadable[0].problems)))
            continue
        ((_, read),) = readable
        verdicts.append(Verdict(outgoing, False, summary=_summary(read, national)))
    return verdicts


def _summary(read, national) -> str:
    said = f"readable: {read.kind} v{read.version} of MRN {read.mrn}"
    if read.declaration is None:
        return said + " (no declaration carried)"
    licences = [
        f"{document.document_code} {document.reference} (goods item {item.sequence})"
        for item in read.declaration.goods_items
        for document in item.documents
        if licence_document(document.document_code, read.country, national)[0]
    ]
    if not licences:
        return said + "; no dual-use licence document: the bridge will answer `ignored`"
    return said + "; dual-use licence documents: " + ", ".join(licences)


def _event_of(given, header: DeclarationHeader | None) -> tuple[EventKind | None, str]:
    read = header.event if header is not None else None
    if given is not None:
        kind = EventKind(given)
        if read is not None and read is not kind:
            return kind, f"event {kind}: given (the declaration says {read})"
        return kind, f"event {kind}: given"
    if read is not None:
        codes = f"FunctionCode {header.function_code}"
        if header.type_code:
            codes += f", TypeCode {header.type_code}"
        return read, f"event {read}: from {codes}"
    return None, "no event: none given and no FunctionCode could be read"


def _mrn_of(
    given: str | None,
    header: DeclarationHeader | None,
    path: Path,
    event_time: datetime,
    country: str | None,
) -> tuple[str, str]:
    if given:
        return given, "MRN given"
    if header is not None and header.mrn:
        return header.mrn, "MRN from Declaration/ID"
    where = country or (header.country if header else None) or "EU"
    lrn = header.lrn if header is not None else None
    mrn = mrn_from_lrn(lrn or path.name, year=event_time.year, country=where)
    return mrn, f"MRN derived from the {'LRN' if lrn else 'file name'}"


def _envelope_as_is(
    data: bytes,
    *,
    message_id: str,
    mrn: str,
    kind: EventKind | None,
    version: int,
    event_time: datetime,
    country: str | None,
) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: the bytes that are not go as escaped lone surrogates, as a customs system
        # that read its file with the wrong encoding would send them (the bridge refuses them).
        envelope = json.loads(
            build_envelope(
                message_id=message_id,
                mrn=mrn,
                event=kind,
                event_time=event_time,
                declaration_version=version,
                payload="",
                country=country,
            )
        )
        envelope["payload"] = data.decode("utf-8", "surrogateescape")
        return json.dumps(envelope, ensure_ascii=True).encode("ascii")
    return build_envelope(
        message_id=message_id,
        mrn=mrn,
        event=kind,
        event_time=event_time,
        declaration_version=version,
        payload=text,
        country=country,
    )


def _as_message(path: Path, data: bytes, max_bytes: int) -> OutgoingEvent:
    try:
        document = json.loads(data) if len(data) <= max_bytes else None
    except (ValueError, RecursionError):
        document = None

    def member(name: str):
        value = document.get(name) if isinstance(document, dict) else None
        return value if isinstance(value, str | int) and not isinstance(value, bool) else None

    version = member("declaration_version")
    return OutgoingEvent(
        path=path,
        message=data,
        message_id=None if member("message_id") is None else str(member("message_id")),
        mrn=None if member("mrn") is None else str(member("mrn")),
        event=None if member("event") is None else str(member("event")),
        version=version if isinstance(version, int) else None,
        how="sent as the whole message, byte for byte",
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
