"""The declarative mapping engine: national licence exports (CSV, JSON, XML) described by
mappings/*.yaml become canonical licences, with every problem of every record reported.

    mapping = parse_mapping(yaml_text, origin="mappings/de_bafa.yaml")
    for record in translate(mapping, data, "bafa_2026-11.csv"):
        record.licence or record.problems

The language is documented in docs/mappings.md."""

from bridge.core.mapping.engine import MappedRecord, mapping_for, translate
from bridge.core.mapping.language import (
    LICENCE_FIELDS,
    LINE_FIELDS,
    PARTY_FIELDS,
    FieldRule,
    Mapping,
    compile_mapping,
    parse_mapping,
)
from bridge.core.mapping.records import EncodingProblem, UnreadableFile

__all__ = [
    "LICENCE_FIELDS",
    "LINE_FIELDS",
    "PARTY_FIELDS",
    "EncodingProblem",
    "FieldRule",
    "MappedRecord",
    "Mapping",
    "UnreadableFile",
    "compile_mapping",
    "mapping_for",
    "parse_mapping",
    "translate",
]
