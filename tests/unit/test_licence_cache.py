"""The cache of licence version documents already read (bridge.adapters.store.licences): the
same text gives the same licence, any other text a licence read from it, and the text held
stays within its budget, the least recently used going first."""

import json
from dataclasses import replace

from bridge.adapters.store.licences import _ReadLicences
from bridge.core.model import licence_from_dict, licence_to_dict
from bridge.testkit.licences import licences


def _documents(count: int) -> list[str]:
    return [json.dumps(licence_to_dict(x), sort_keys=True) for x in licences(count, seed=5)]


def test_the_same_text_is_read_once_and_equals_a_fresh_read():
    cache = _ReadLicences(budget=10**7)
    for document in _documents(50):
        first = cache(document)
        assert first == licence_from_dict(json.loads(document))
        assert cache(document.encode().decode()) is first  # equal text, other row: not read again


def test_a_changed_document_is_never_served_from_the_cache():
    cache = _ReadLicences(budget=10**7)
    original = next(licences(1, seed=6))
    held = cache(json.dumps(licence_to_dict(original), sort_keys=True))
    changed_line = replace(original.lines[0], description=original.lines[0].description + " X")
    for changed in (
        replace(original, version=original.version + 1),
        replace(original, holder_name=original.holder_name + " Ltd"),
        replace(original, lines=(changed_line, *original.lines[1:])),
    ):
        read = cache(json.dumps(licence_to_dict(changed), sort_keys=True))
        assert read == changed
        assert read != held


def test_the_text_held_stays_within_the_budget_least_recently_used_first():
    documents = _documents(40)
    budget = sum(map(len, documents[:10]))
    cache = _ReadLicences(budget=budget)
    kept = cache(documents[0])
    for document in documents[1:]:
        cache(document)
        assert cache(documents[0]) is kept  # used again each time: never the one to go
        assert cache._chars <= budget
    assert 2 <= len(cache) <= 10
    assert cache(documents[1]) is not None and len(cache) <= 10  # evicted earlier, read again
