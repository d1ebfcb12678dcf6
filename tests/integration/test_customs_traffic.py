"""Customs traffic as customs systems send it, end to end: the corpus of
bridge.testkit.customs_traffic (over 200 declarations of 20 kinds: full exports, pre-lodged then
arrived, partial amendments raising, lowering, adding and removing a dual-use document or
touching other sections, cancellations, imports of several types, transit, exports needing no
licence, national transport wrappers...) published on a real mosquitto, taken by the real
consumer into a real ledger (SQLite and PostgreSQL), and compared kind by kind with the
corpus's independent oracle (bridge.testkit.customs_traffic_oracle).

One broker and one consumer run per database over the whole corpus (module fixture), then one
test per kind; every payload is first checked against the published WCO DEC-DMS schema (a
wrapper schema importing the metadata and declaration schemas of ../shared, built in a
temporary folder: the schema is never copied into the project)."""

from __future__ import annotations

import itertools
import os
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal

import pytest
from lxml import etree
from sqlalchemy import text

from bridge.adapters.mqtt.broker import start_broker
from bridge.adapters.mqtt.client import unique_client_id
from bridge.adapters.store.db import make_engine
from bridge.adapters.store.reconciliation import reconciliation_rows
from bridge.core.envelope import parse_result
from bridge.services import mqtt_endpoints
from bridge.services.config import Settings
from bridge.services.consumer import ConsumeReport, consume
from bridge.services.customs_events import publish_events
from bridge.testkit.customs_traffic import IRRELEVANT_KINDS, KINDS, TrafficCorpus, traffic_corpus
from bridge.testkit.known_licences import store_known_licences
from tests.conftest import DEFAULT_DATABASES, SHARED_FIXTURES
from tests.fixtures_mqtt import RELEASED_AT

XSD = SHARED_FIXTURES / "wco-dec-dms" / "xsd"
ZERO = Decimal(0)
_databases = itertools.count(1)


def _wanted_databases() -> list[str]:
    wanted = os.environ.get("ELBRIDGE_TEST_DATABASES", DEFAULT_DATABASES).split(",")
    return [w.strip() for w in wanted if w.strip()]


@pytest.fixture(scope="module")
def corpus() -> TrafficCorpus:
    return traffic_corpus(seed=11)


@pytest.fixture(scope="module")
def wco_schema(tmp_path_factory) -> etree.XMLSchema:
    if not XSD.is_dir():
        pytest.fail(f"the shared WCO DEC-DMS schema is missing at {XSD}")
    folder = tmp_path_factory.mktemp("wco-schema")
    # The metadata root holds the Declaration through a strict wildcard: both schemas needed.
    wrapper = folder / "wco-dec-dms.xsd"
    wrapper.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">\n'
        '<xs:import namespace="urn:wco:datamodel:WCO:DocumentMetaData-DMS:2"'
        f' schemaLocation="{(XSD / "DocumentMetaData_2_DMS.xsd").as_uri()}"/>\n'
        '<xs:import namespace="urn:wco:datamodel:WCO:DEC-DMS:2"'
        f' schemaLocation="{(XSD / "WCO_DEC_2_DMS.xsd").as_uri()}"/>\n'
        "</xs:schema>\n",
        encoding="utf-8",
    )
    return etree.XMLSchema(etree.parse(str(wrapper)))


def _wco_document(payload: bytes):
    """The WCO document inside whatever transport wrapper: the MetaData, else the Declaration."""
    root = etree.fromstring(payload)
    for name in ("MetaData", "Declaration"):
        found = root.xpath(f"descendant-or-self::*[local-name()='{name}']")
        if found:
            return found[0]
    raise AssertionError("no WCO document in the payload")


# ------------------------------------------------------------------------- the corpus


def test_the_corpus_is_real_shaped_wco_dec_dms(corpus: TrafficCorpus, wco_schema):
    invalid = []
    for message in corpus.messages:
        if message.payload is None:
            continue
        if not wco_schema.validate(etree.ElementTree(_wco_document(message.payload))):
            invalid.append(
                f"{message.kind} {message.message_id}: {wco_schema.error_log.last_error}"
            )
    counts = corpus.counts()
    assert not invalid, "\n".join(invalid[:10])
    assert corpus.declarations >= 200
    assert set(counts) == set(KINDS) and len(KINDS) >= 10
    partial = [m for m in corpus.messages if m.partial_amendment]
    # Partial amendments carry no exporter ID and no destination: only what changes.
    assert len(partial) >= 40
    assert all(m.declaration.exporter is None for m in partial)
    assert all(m.declaration.destination is None for m in partial)
    assert all(item.destination is None for m in partial for item in m.declaration.items)


def test_the_corpus_is_the_same_for_the_same_seed(corpus: TrafficCorpus):
    again = traffic_corpus(seed=11)
    assert [m.envelope for m in again.messages] == [m.envelope for m in corpus.messages]
    assert traffic_corpus(seed=12).messages[0].envelope != corpus.messages[0].envelope


# --------------------------------------------------------------------- one run per database


@dataclass
class TrafficRun:
    database: str
    report: ConsumeReport
    outcomes: dict[str, str]  # message id -> outcome recorded
    quarantined: int
    by_document: dict[tuple[str, int, str, str], tuple[Decimal, Decimal]]
    by_line: dict[tuple[str, int], tuple[Decimal, Decimal]]
    remaining: dict[tuple[str, int], tuple[Decimal | None, Decimal | None]]
    results: Counter  # in_reply_to -> results received
    result_outcomes: dict[str, list[str]]

    def outcome(self, message_id: str) -> str | None:
        """The outcome recorded for a message: under its id, or (a message quarantined, kept
        under the hash of its bytes) the last result customs got for it."""
        if message_id in self.outcomes:
            return self.outcomes[message_id]
        answers = self.result_outcomes.get(message_id)
        return answers[-1] if answers else None


def _micro(value) -> Decimal:
    return ZERO if not value else Decimal(int(value)).scaleb(-6).normalize()


@pytest.fixture(scope="module", params=_wanted_databases())
def traffic(request, corpus: TrafficCorpus, tmp_path_factory) -> TrafficRun:
    database = request.param
    folder = tmp_path_factory.mktemp(f"traffic-{database}")
    if database == "postgresql":
        url = request.getfixturevalue("postgres_cluster").create_database(
            f"traffic_{next(_databases)}"
        )
    else:
        url = f"sqlite:///{folder / 'ledger.db'}"
    broker = start_broker(folder / "mosquitto")
    engine = make_engine(url)
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        home=folder,
        database_url=url,
        mqtt_host=broker.host,
        mqtt_port=broker.port,
        mqtt_client_id=f"elbridge-traffic-{tag}",
        mqtt_topic=f"traffic/{tag}/declarations",
        mqtt_result_topic=f"traffic/{tag}/results",
        batch_size=200,
        batch_wait_ms=50,
    )
    try:
        with engine.begin() as conn:
            store_known_licences(conn, corpus.licences, now=RELEASED_AT, source="traffic")
        mqtt_endpoints.open_session(settings)
        results = mqtt_endpoints.subscriber(
            settings, client_id=unique_client_id("customs"), topic=settings.mqtt_result_topic
        ).start()
        publish_events(settings, [m.envelope for m in corpus.messages])
        report = consume(settings, engine, idle_seconds=1.5, max_seconds=240)
        received: list = []
        while batch := results.take(10_000, 0.2, 2.0):
            results.ack(batch)
            received += [parse_result(m.payload) for m in batch]
        results.close()
        yield _read_run(database, report, engine, received)
    finally:
        engine.dispose()
        broker.stop()


def _read_run(database, report, engine, received) -> TrafficRun:
    with engine.connect() as conn:
        outcomes = dict(
            conn.execute(text("SELECT message_id, outcome FROM processed_message")).all()
        )
        quarantined = conn.execute(text("SELECT count(*) FROM quarantine")).scalar_one()
        by_document = {
            (mrn, item, code, ref): (_micro(q), _micro(v))
            for mrn, item, code, ref, q, v in conn.execute(
                text(
                    "SELECT mrn, goods_item, document_code, document_ref, SUM(quantity),"
                    " SUM(value) FROM movement WHERE mrn IS NOT NULL"
                    " GROUP BY mrn, goods_item, document_code, document_ref"
                )
            )
        }
        by_line = {
            (number, line): (_micro(q), _micro(v))
            for number, line, q, v in conn.execute(
                text(
                    "SELECT licence_number, line_number, SUM(quantity), SUM(value) FROM movement"
                    " GROUP BY licence_number, line_number"
                )
            )
        }
        remaining = {
            (row.licence_number, row.line_number): (row.remaining_quantity, row.remaining_value)
            for row in reconciliation_rows(conn)
        }
    answered: Counter = Counter(r.in_reply_to for r in received)
    result_outcomes: dict[str, list[str]] = defaultdict(list)
    for result in received:
        result_outcomes[result.in_reply_to].append(result.outcome)
    return TrafficRun(
        database,
        report,
        outcomes,
        quarantined,
        by_document,
        by_line,
        remaining,
        answered,
        dict(result_outcomes),
    )


def _pair(amounts) -> str:
    return "/".join("-" if a is None else format(a, "f") for a in amounts)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_end_to_end(traffic: TrafficRun, corpus: TrafficCorpus, kind: str):
    """What each message of the kind was answered, and what its MRNs wrote off per document,
    against the oracle's (expected vs got)."""
    messages = corpus.of_kind(kind)
    problems = []
    for message in messages:
        got = traffic.outcome(message.message_id)
        if message.expected.outcomes == {"duplicate"}:
            continue  # a redelivery: its message id's first answer is checked once
        if got not in message.expected.outcomes:
            problems.append(
                f"{message.message_id} ({message.event or 'no event'} v{message.version}):"
                f" expected {message.expected}, got {got}"
            )
        answers = traffic.results.get(message.message_id, 0)
        if answers < message.expected.results:
            problems.append(
                f"{message.message_id}: {answers} result(s) reached customs,"
                f" expected {message.expected.results}"
            )
    mrns = corpus.mrns_of_kind(kind)
    expected = {k: v for k, v in corpus.oracle.document_write_offs().items() if k[0] in mrns}
    got = {k: v for k, v in traffic.by_document.items() if k[0] in mrns and v != (ZERO, ZERO)}
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key, (ZERO, ZERO)), got.get(key, (ZERO, ZERO))
        if want != have:
            problems.append(
                f"{key[0]} item {key[1]} {key[2]} {key[3]}: written off {_pair(have)},"
                f" oracle {_pair(want)}"
            )
    assert not problems, (
        f"{kind} on {traffic.database}: {len(problems)} difference(s)\n" + "\n".join(problems)
    )
    if kind in IRRELEVANT_KINDS:
        assert all(traffic.outcome(m.message_id) == "ignored" for m in messages)


def test_every_irrelevant_declaration_is_ignored_none_quarantined(
    traffic: TrafficRun, corpus: TrafficCorpus
):
    irrelevant = [m for m in corpus.messages if m.irrelevant]
    outcomes = Counter(traffic.outcome(m.message_id) for m in irrelevant)
    assert len(irrelevant) >= 60
    assert outcomes == {"ignored": len(irrelevant)}, f"irrelevant declarations: {dict(outcomes)}"
    print(f"{traffic.database}: {len(irrelevant)} irrelevant declarations, {dict(outcomes)}")


def test_every_partial_amendment_is_applied_and_balances_are_the_oracles(
    traffic: TrafficRun, corpus: TrafficCorpus
):
    partial = [
        m
        for m in corpus.messages
        if m.partial_amendment and m.event != "released" and m.expected.outcomes != {"duplicate"}
    ]
    wrong = [
        f"{m.kind} {m.message_id}: {traffic.outcome(m.message_id)}, expected {m.expected}"
        for m in partial
        if traffic.outcome(m.message_id) not in m.expected.outcomes
    ]
    lines = []
    for key, want in sorted(corpus.oracle.line_totals().items()):
        have = traffic.by_line.get(key, (ZERO, ZERO))
        if have != want:
            lines.append(f"{key[0]} line {key[1]}: written off {_pair(have)}, oracle {_pair(want)}")
    for key, want in sorted(corpus.oracle.balances().items()):
        have = traffic.remaining.get(key)
        if have != want:
            lines.append(
                f"{key[0]} line {key[1]}: balance {have and _pair(have)}, oracle {_pair(want)}"
            )
    assert not wrong and not lines, "\n".join(wrong + lines)
    print(
        f"{traffic.database}: {len(partial)} partial amendments as expected;"
        f" {len(corpus.oracle.line_totals())} licence lines at the oracle's balance;"
        f" {traffic.report}"
    )


def test_nothing_is_quarantined(traffic: TrafficRun, corpus: TrafficCorpus):
    """The corpus holds nothing unreadable: only a contradicted event may be refused."""
    allowed = {m.message_id for m in corpus.messages if "quarantined" in m.expected.outcomes}
    wrongly = sorted(
        i
        for i, outcomes in traffic.result_outcomes.items()
        if "quarantined" in outcomes and i not in allowed
    )
    assert traffic.quarantined <= len(allowed) and not wrongly, (
        f"{traffic.quarantined} quarantined; unexpected: {wrongly[:20]}"
    )
