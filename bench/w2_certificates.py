"""W2 certificates: national licence records through the real pipeline's pure part: the mapping
engine (mappings/*.yaml) with validation, the certificate XML (bridge.core.certificate) and its XSD
validation (`certified`: built, parsed once, validated), in one process, licences per second.

Limit: lxml parsing and validating the same certificates against the same XSD, and nothing
else: the one step of the pipeline that is already all C. The target is absolute (10,000
licences a second at 100,000)."""

from __future__ import annotations

import time

from lxml import etree

from bench.common import Result, Run, ratio
from bridge.core.certificate import SCHEMA_FILE, certified
from bridge.core.mapping import mapping_for, translate
from bridge.core.paths import SCHEMAS_DIR
from bridge.core.xmlsafe import schema_from_file
from bridge.services.ingest import load_mappings
from bridge.testkit.licences import licences as synthetic_licences
from bridge.testkit.national_files import national_files

SIZES = {"tiny": 1000, "small": 20000, "full": 100000}
TARGET = 10_000
PER_DATABASE = False


def run(run: Run, database: str) -> list[Result]:
    n = SIZES[run.size]
    run.log(f"W2: generating {n} licences in the national formats")
    files = national_files(synthetic_licences(n, seed=21))
    mappings = load_mappings()
    chosen = {name: mapping_for(name, mappings) for name in files}

    certificates: list[bytes] = []
    rejected = problems = 0
    started = time.perf_counter()
    for name, data in files.items():
        for record in translate(chosen[name], data, name):
            if record.licence is None:
                rejected += 1
                continue
            # Built, parsed once, XSD-validated and checked against the contract's other
            # rules: what build_certificate + certificate_problems say, from one parse.
            xml, found = certified(record.licence, source=record.licence.number)
            problems += len(found)
            certificates.append(xml)
    bridge_seconds = time.perf_counter() - started
    if rejected or problems or len(certificates) != n:
        raise AssertionError(f"W2: {rejected} rejected, {problems} certificate problems")

    schema = schema_from_file(str(SCHEMAS_DIR / SCHEMA_FILE))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    started = time.perf_counter()
    for xml in certificates:
        if not schema.validate(etree.fromstring(xml, parser)):
            raise AssertionError("W2: a certificate the bridge passed fails the XSD")
    limit_seconds = time.perf_counter() - started

    bridge_rate = n / bridge_seconds
    limit_rate = n / limit_seconds
    return [
        Result(
            workload="W2 certificates",
            database="-",
            bridge=bridge_rate,
            bridge_unit="licences/s",
            limit=limit_rate,
            limit_unit="XSD-validated/s",
            ratio=ratio(bridge_rate, limit_rate),
            target=f">= {TARGET:,} licences/s",
            met=bridge_rate >= TARGET,
            seconds=bridge_seconds + limit_seconds,
            details={
                "licences": n,
                "lines": sum(x.count(b"<Line>") for x in certificates),
                "files": {name: len(data) for name, data in files.items()},
                "bridge_seconds": bridge_seconds,
                "limit_seconds": limit_seconds,
            },
        )
    ]
