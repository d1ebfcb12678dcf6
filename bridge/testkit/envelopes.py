"""Declaration event envelopes as documents to spoil: the JSON object of an MQTT message, built
member by member so that a test can change, drop, repeat or mistype any of them before it is
written. bridge.core.envelope.build_envelope writes the well-formed messages; this writes the
ones no well-behaved sender would, for the unit tests, the hostile corpus and the fuzz seeds."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from bridge.core.envelope import ENVELOPE, PAYLOAD_FORMAT

# The members a released event must carry, in the order build_envelope writes them; then every
# member an envelope may carry (the country is optional).
REQUIRED_MEMBERS = (
    "envelope",
    "message_id",
    "mrn",
    "event",
    "event_time",
    "declaration_version",
    "payload_format",
    "payload",
)
ENVELOPE_MEMBERS = (*REQUIRED_MEMBERS, "country")
EVENT_TIME = "2026-03-02T09:30:00+00:00"


def envelope_document(
    *,
    message_id: str,
    mrn: str,
    payload: str | None = None,
    event: str = "released",
    version: int = 1,
    event_time: str = EVENT_TIME,
    **changes: Any,
) -> dict[str, Any]:
    """The members of an envelope (version 1 of a released declaration unless told otherwise)
    with `changes` made to them: a member changed to None is left out, as is the payload when
    there is none."""
    document: dict[str, Any] = {
        "envelope": ENVELOPE,
        "message_id": message_id,
        "mrn": mrn,
        "event": event,
        "event_time": event_time,
        "declaration_version": version,
        "payload_format": PAYLOAD_FORMAT,
        "payload": payload,
    }
    document.update(changes)
    return {member: value for member, value in document.items() if value is not None}


def dump_envelope(document: Any, *, ascii_only: bool = False) -> bytes:
    """`document` as the bytes of a message: UTF-8 JSON, non-ASCII characters as they are (or
    escaped, as some senders write them, with `ascii_only`)."""
    if ascii_only:
        return json.dumps(document, ensure_ascii=True).encode("ascii")
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def dump_members(pairs: Iterable[tuple[str, Any]]) -> bytes:
    """Members written in the order given, a repeated one as often as it comes: the JSON object
    no dict can hold (a member that appears twice)."""
    inner = ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in pairs)
    return ("{" + inner + "}").encode("utf-8")


def with_member_twice(document: dict[str, Any], member: str, value: Any = "GB") -> list:
    """The members of `document` with `member` repeated at the end (added first, as `value`,
    when the document lacks it): write them with `dump_members`."""
    pairs = list(document.items())
    if member not in document:
        pairs.append((member, value))
    return [*pairs, (member, dict(pairs)[member])]
