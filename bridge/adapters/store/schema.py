"""The ledger's tables (SQLAlchemy Core). SQLite by default, PostgreSQL by URL.

Quantities and amounts are stored as exact integers of millionths (`Micro`), so sums are exact
on every database and Decimal never passes through a float. Balances are derived from
`movement` rows (the audit trail): `line_total` holds each line's sums, kept by the database
itself in the same transaction as every movement (bridge.adapters.store.line_totals), so that
reading a balance costs one row whatever the line's history; `usage` only records, per declaration
key, what is written off now so that redeliveries, amendments and invalidations know what to
adjust."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

SCALE = 6  # n..16,6 in the customs data model: six decimals are enough for every quantity


class Micro(TypeDecorator):
    """A Decimal with up to six decimals, stored as an integer count of millionths."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        scaled = Decimal(value).scaleb(SCALE)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than {SCALE} decimals")
        return int(scaled)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return (Decimal(int(value)).scaleb(-SCALE)).normalize() if value else Decimal(0)


metadata = MetaData()

UTC = DateTime(timezone=True)


def chain_columns() -> tuple[Column, ...]:
    """A row's link in its licence's hash chain (bridge.core.ledger_chain, docs/ledger-audit.md):
    its sequence number in the chain, the hash of the link before it and its own hash. Written
    with the row by the store (bridge.adapters.store.chain); NULL only in a row written around
    the bridge, which `elbridge audit verify` names."""
    return (
        Column("chain_seq", Integer),
        Column("chain_prev", String(64)),
        Column("chain_hash", String(64)),
    )


licence = Table(
    "licence",
    metadata,
    Column("number", String(70), primary_key=True),
    Column("current_version", Integer, nullable=False),
    Column("type", String(20), nullable=False),
    Column("status", String(20), nullable=False),
    Column("issuing_member_state", String(2), nullable=False),
    Column("issuing_authority", String(200), nullable=False),
    Column("holder_name", String(200), nullable=False),
    Column("holder_eori", String(17), nullable=False, index=True),
    Column("valid_from", Date, nullable=False),
    Column("valid_to", Date),
    Column("general_authorisation", String(10)),
    Column("updated_at", UTC, nullable=False),
)

licence_version = Table(
    "licence_version",
    metadata,
    Column("number", String(70), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("content_hash", String(64), nullable=False),
    Column("document", Text, nullable=False),  # canonical licence as JSON
    Column("source", String(500), nullable=False),
    Column("ingested_at", UTC, nullable=False),
    ForeignKeyConstraint(["number"], ["licence.number"]),
)

# The current version's lines; movements refer to (number, line_number).
licence_line = Table(
    "licence_line",
    metadata,
    Column("number", String(70), primary_key=True),
    Column("line_number", Integer, primary_key=True),
    Column("control_list_entry", String(40), nullable=False),
    Column("cn_code", String(10)),
    Column("description", Text, nullable=False),
    Column("quantity", Micro),
    Column("unit", String(8)),
    Column("value", Micro),
    Column("currency", String(3)),
    Column("destinations", Text, nullable=False, default=""),  # space-separated ISO codes
    ForeignKeyConstraint(["number"], ["licence.number"]),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("kind", String(20), nullable=False),  # certificate | status
    Column("licence_number", String(70), nullable=False, index=True),
    Column("licence_version", Integer, nullable=False),
    Column("document", Text, nullable=False),
    Column("status", String(12), nullable=False, index=True),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTC, nullable=False),
    Column("last_error", Text),
    Column("acknowledgement", String(200)),  # ACCEPTED | DUPLICATE, as customs answered
    Column("receipt_id", String(64)),  # customs' reference for the stored certificate
    Column("last_attempt_at", UTC),
    Column("created_at", UTC, nullable=False),
    Column("delivered_at", UTC),
    # The first failed attempt since the row was queued (or sent again by `elbridge outbox
    # retry`): the retry budget is counted from it. Why a failed row failed: refused (by
    # customs), budget (spent on transient failures), invalid (as built), orphan (a status
    # update whose certificate failed). Who last sent it again, and when (migration 0005).
    Column("first_failed_at", UTC),
    Column("failure", String(20)),
    Column("retried_at", UTC),
    Column("retried_by", String(200)),
    Index("ix_outbox_licence_version", "licence_number", "licence_version"),
    # Answers "did customs acknowledge a certificate of these licences" (every write-off batch
    # asks) and "where is the current version's certificate" (reconciliation) from the index
    # alone, without reading the rows, whose documents are large.
    Index("ix_outbox_certificate_state", "licence_number", "kind", "licence_version", "status"),
)

processed_message = Table(
    "processed_message",
    metadata,
    Column("message_id", String(200), primary_key=True),
    Column("mrn", String(35), index=True),
    Column("event", String(20)),
    Column("outcome", String(20), nullable=False),  # applied | ignored | refused | quarantined
    Column("received_at", UTC, nullable=False),
    # The result message answering it on the MQTT result topic (docs/envelope.md), written in
    # the batch's transaction and published after the commit: pending until the broker took it.
    Column("result", LargeBinary),
    Column("result_state", String(10), index=True),  # pending | published | NULL (none)
    Column("result_published_at", UTC),
)

# What is written off now for one (MRN, goods item, document): the state that makes write-offs
# idempotent and lets an amendment or invalidation adjust by the difference.
usage = Table(
    "usage",
    metadata,
    Column("mrn", String(35), primary_key=True),
    Column("goods_item", Integer, primary_key=True),
    Column("document_code", String(4), primary_key=True),
    Column("document_ref", String(70), primary_key=True),
    Column("licence_number", String(70), nullable=False),
    Column("line_number", Integer, nullable=False),
    Column("quantity", Micro, nullable=False),  # in the licence line's unit
    Column("value", Micro, nullable=False),  # in the licence line's currency
    Column("declaration_version", Integer, nullable=False),
    Column("event", String(20), nullable=False),
    Column("updated_at", UTC, nullable=False),
)

# Where each declaration stands: the version last applied, whether it was invalidated (so that a
# release arriving after its invalidation writes nothing), amendments held until their release,
# and the declaration the bridge acts on (the release with every amendment merged onto it).
declaration = Table(
    "declaration",
    metadata,
    Column("mrn", String(35), primary_key=True),
    Column("version", Integer, nullable=False),  # 0: nothing applied yet
    Column("event", String(20)),
    Column("invalidated", Integer, nullable=False, default=0),
    Column("message_id", String(200)),
    Column("held_version", Integer),  # the newest held amendment's
    # The held amendment's message as received; several held: a JSON array of the messages
    # (each as a string), oldest version first.
    Column("held_message", LargeBinary),
    Column("updated_at", UTC, nullable=False),
    # JSON (bridge.core.acted_on, docs/envelope.md "The declaration acted on"); NULL before the
    # release, and for declarations released before this column existed (the first migration
    # adds it to older ledgers).
    Column("acted_on", Text),
)

movement = Table(
    "movement",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("licence_number", String(70), nullable=False),
    Column("line_number", Integer, nullable=False),
    # write_off | adjustment | reversal (customs); manual_write_off | correction | reversal (by
    # hand: actor is the person, a reversal's message_id names what it undoes: reversal-of:ID)
    Column("kind", String(20), nullable=False),
    Column("quantity", Micro, nullable=False),  # signed, in the line's unit
    Column("value", Micro, nullable=False),  # signed, in the line's currency
    Column("declared_quantity", Micro),
    Column("declared_unit", String(8)),
    Column("mrn", String(35)),
    Column("goods_item", Integer),
    Column("document_code", String(4)),
    Column("document_ref", String(70)),
    Column("message_id", String(200)),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    Column("at", UTC, nullable=False),
    # 1: a contingency write-off, recorded after the goods left without customs holding the
    # licence's certificate (docs/contingency.md); 0, or NULL in rows from before this column
    # (the first migration adds it to older ledgers) and in manual movements: an ordinary movement.
    Column("contingency", Integer),
    *chain_columns(),
    Index("ix_movement_line", "licence_number", "line_number"),
    Index("ix_movement_mrn", "mrn"),
    Index("ix_movement_contingency", "contingency"),
    Index("ix_movement_chain", "licence_number", "chain_seq", unique=True),
)

# Per licence line, the sums of its movements: what `SELECT sum(quantity), sum(value), count(*)
# FROM movement GROUP BY licence_number, line_number` gives, maintained by triggers on movement
# (bridge.adapters.store.line_totals) in the transaction that writes the movement. Never written by
# the bridge's code; a line without movements has no row.
line_total = Table(
    "line_total",
    metadata,
    Column("licence_number", String(70), primary_key=True),
    Column("line_number", Integer, primary_key=True),
    Column("quantity", Micro, nullable=False),  # signed sum, in the line's unit
    Column("value", Micro, nullable=False),  # signed sum, in the line's currency
    Column("movements", Integer, nullable=False),
)
# Created after movement: its triggers are on movement.
line_total.add_is_dependent_on(movement)

refusal = Table(
    "refusal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mrn", String(35), index=True),
    Column("goods_item", Integer),
    Column("document_code", String(4)),
    # As the declaration wrote them (up to bridge.core.declaration.MAX_REFERENCE characters): a
    # reference too long for a licence number is refused, and the refusal keeps it whole.
    Column("document_ref", Text),
    Column("licence_number", Text, index=True),
    Column("line_number", Integer),
    Column("code", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("message_id", String(200)),
    Column("at", UTC, nullable=False),
    UniqueConstraint("message_id", "goods_item", "document_code", "document_ref", "code"),
)

# What an authority must look at: over-use attempts, ceilings lowered below usage, exhausted
# licences, CN/CLE mismatches. Raised by the bridge, never by hand.
alert = Table(
    "alert",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False, index=True),  # over-use, ceiling-below-usage...
    Column("licence_number", String(70), index=True),
    Column("line_number", Integer),
    Column("mrn", String(35)),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=False, default="{}"),  # JSON
    Column("at", UTC, nullable=False),
    # open until a licensing officer acknowledges it (who and when: migration 0006)
    Column("state", String(20), nullable=False, server_default="open", index=True),
    Column("acknowledged_by", String(200)),
    Column("acknowledged_at", UTC),
)

# Every status change of a licence (suspend, reinstate, revoke, annul, expire, exhaust), with
# who did it and why: the lifecycle's audit trail.
licence_event = Table(
    "licence_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("licence_number", String(70), nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("from_status", String(20), nullable=False),
    Column("to_status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", UTC, nullable=False),
    *chain_columns(),
    Index("ix_licence_event_chain", "licence_number", "chain_seq", unique=True),
)

# National licence records that failed validation, kept with every reason.
reject = Table(
    "reject",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(500), nullable=False),  # file and record/line
    Column("format", String(100), nullable=False),
    Column("record", Text, nullable=False),  # the record as read, for the authority to fix
    # A record that text columns cannot hold (NUL, lone surrogates), exactly, as UTF-8 (a lone
    # surrogate in its 3-byte form); `record` then shows it with those escaped (store/rejects.py).
    Column("record_bytes", LargeBinary),
    Column("problems", Text, nullable=False),  # JSON list of Problem.as_dict()
    Column("at", UTC, nullable=False),
)

# Messages that could not be read at all, kept byte for byte with the reason.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(200)),
    Column("topic", String(500)),
    Column("payload", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("problems", Text, nullable=False),  # JSON list of Problem.as_dict()
    Column("received_at", UTC, nullable=False),
    # An operator's replay through the rules of the day (bridge.services.quarantine): when last,
    # how many times, what came of it (an outcome of processed_message; `quarantined` while it
    # still cannot be read, with the reasons of that replay), the result message that answered it.
    Column("replayed_at", UTC),
    Column("replays", Integer),
    Column("replay_outcome", String(20)),
    Column("replay_result_id", String(250)),
    Column("replay_problems", Text),  # JSON list of Problem.as_dict(), when still quarantined
    Column("replayed_by", String(200)),  # who asked for the last replay (migration 0007)
)

# Every question put to the query service, answered or refused: who asked (the access file's
# name for the caller, and how it proved it), when, what about, and what came of it
# (bridge.adapters.store.query_audit, docs/security.md). Written by the service, never by hand.
query_audit = Table(
    "query_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTC, nullable=False, index=True),
    Column("identity", String(200), index=True),  # the access file's name; NULL: not identified
    Column("authentication", String(20), nullable=False),  # certificate | username-token | none
    # What the caller presented: the certificate's subject, or the token's username.
    Column("credential", String(500)),
    Column("client_address", String(100)),
    Column("operation", String(60), nullable=False),  # CheckAvailability | ListSupportingDocuments
    Column("holder_eori", String(40)),  # as asked (ListSupportingDocuments, ExporterEORI)
    Column("licence_number", String(70)),  # as asked (CheckAvailability's Reference)
    Column("outcome", String(20), nullable=False),  # answered | refused | failed
    Column("code", String(40)),  # the fault's code: AUTHENTICATION_FAILED, ACCESS_DENIED...
    Column("reason", Text),
)
