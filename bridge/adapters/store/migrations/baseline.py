"""The ledger's schema as the last release before migrations made it (commit 1fad7cf:
`metadata.create_all` plus its in-place upgrade): frozen here, never edited, so that the first
migration (versions/0001_release_baseline.py) creates and completes exactly that schema whatever
the live tables (bridge.adapters.store.schema) have become since. Amounts are BigInteger (the
live schema's `Micro` stores integer millionths in one).

Also what tests build "a ledger from the previous release" from."""

from __future__ import annotations

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
    UniqueConstraint,
)

metadata = MetaData()

UTC = DateTime(timezone=True)

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
    Column("quantity", BigInteger),
    Column("unit", String(8)),
    Column("value", BigInteger),
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
    Column("quantity", BigInteger, nullable=False),  # in the licence line's unit
    Column("value", BigInteger, nullable=False),  # in the licence line's currency
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
    # release, and for declarations released before this column was added in place.
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
    Column("quantity", BigInteger, nullable=False),  # signed, in the line's unit
    Column("value", BigInteger, nullable=False),  # signed, in the line's currency
    Column("declared_quantity", BigInteger),
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
    # (added in place by db.upgrade_schema) and in manual movements: an ordinary movement.
    Column("contingency", Integer),
    Index("ix_movement_line", "licence_number", "line_number"),
    Index("ix_movement_mrn", "mrn"),
    Index("ix_movement_contingency", "contingency"),
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
    Column("quantity", BigInteger, nullable=False),  # signed sum, in the line's unit
    Column("value", BigInteger, nullable=False),  # signed sum, in the line's currency
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
)
