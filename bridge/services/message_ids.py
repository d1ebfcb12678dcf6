"""The message ids the outbox gives what it sends customs: derived from what the message is, so
a resend always carries the id customs already know (and the consumer, which queues status
updates, needs no SOAP client to name them)."""

from __future__ import annotations

import uuid

from bridge.adapters.store.outbox import CERTIFICATE, STATUS

_MESSAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:elicensing-bridge:outbox")


def message_id_for(licence_number: str, version: int, kind: str = CERTIFICATE) -> str:
    """The message id of one licence version's message of `kind`: always the same for the
    same three, so a resend carries the id customs already know."""
    return str(uuid.uuid5(_MESSAGE_IDS, f"{kind}\x1f{licence_number}\x1f{version}"))


def status_message_id(licence_number: str, version: int, status: str, sequence: int) -> str:
    """The message id of the `sequence`-th status change of a licence (to `status`, at
    `version`): the same four always give the same id, so a resend is recognised."""
    key = f"{licence_number}\x1f{version}\x1f{status}\x1f{sequence}"
    return str(uuid.uuid5(_MESSAGE_IDS, f"{STATUS}\x1f{key}"))
