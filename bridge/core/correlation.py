"""The CN code to control list entry correlation: indicative only, it warns and never decides.

A CN code covers far more goods than a control list entry (CLE), so a goods item is matched to
a licence line by line item number or CN code, and this table only says when the line's CLE is
not one the declared CN code is usually linked to. The table is
mappings/reference/cn-cle-correlation.yaml (the project's own small one; a deployment may put
the Commission's table in its place).

Pure apart from `load_correlation`, which reads that project file once, as certificate.py reads
its XSD."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import yaml

from bridge.core.codes import normalise_cle, normalise_cn
from bridge.core.errors import ConfigError
from bridge.core.paths import MAPPINGS_DIR

CORRELATION_FILE = MAPPINGS_DIR / "reference" / "cn-cle-correlation.yaml"
WARNING = "cn-cle-correlation"
_CN_PREFIX = re.compile(r"[0-9]{2,10}")


@dataclass(frozen=True, slots=True)
class Correlation:
    """CN code prefixes with the CLEs (Annex I spelling) each is indicatively linked to."""

    entries: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def entries_for(self, cn_code: str) -> tuple[str, frozenset[str]] | None:
        """(the longest prefix of `cn_code` the table knows, its CLEs), or None."""
        code = _cn(cn_code)
        for length in range(len(code), 1, -1):
            cles = self.entries.get(code[:length])
            if cles is not None:
                return code[:length], cles
        return None

    def warning(self, cn_code: str | None, control_list_entry: str | None) -> str | None:
        """Why the CLE looks unlikely for goods of `cn_code`, or None when it agrees, or when
        the table does not know the CN code, or the CLE is not an Annex I entry (a military
        list entry, say): the table says nothing then."""
        if not cn_code or not control_list_entry:
            return None
        cle = _cle(control_list_entry)
        found = self.entries_for(cn_code)
        if cle is None or found is None:
            return None
        prefix, cles = found
        if any(_covers(cle, listed) for listed in cles):
            return None
        return (
            f"CN {cn_code} is indicatively linked to {', '.join(sorted(cles))} (table entry"
            f" {prefix}), not to {cle}; indicative only, nothing refused"
        )


# Every write-off asks about its goods' CN code and its line's CLE: normalise each text once.
_cn = lru_cache(maxsize=4096)(normalise_cn)
_cle = lru_cache(maxsize=4096)(normalise_cle)


def _covers(a: str, b: str) -> bool:
    # One entry covers its sub-items: 5A002 and 5A002.a.1 agree, 5A002 and 5A003 do not.
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def parse_correlation(text: str, *, origin: str = "correlation") -> Correlation:
    """The table in YAML `text` (shaped as mappings/reference/cn-cle-correlation.yaml);
    ConfigError with every bad entry at once."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}: not YAML: {error}") from None
    table = document.get("correlation") if isinstance(document, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: needs a mapping `correlation: {{CN prefix: [CLE, ...]}}`")
    entries: dict[str, frozenset[str]] = {}
    problems = []
    for raw_cn, raw_cles in table.items():
        cn = normalise_cn(str(raw_cn))
        if not _CN_PREFIX.fullmatch(cn):
            problems.append(f"{raw_cn!r} is not a CN code or prefix (2 to 10 digits)")
            continue
        cles = raw_cles if isinstance(raw_cles, list) else [raw_cles]
        normalised = [normalise_cle(str(cle)) for cle in cles]
        bad = [str(cle) for cle, norm in zip(cles, normalised, strict=True) if norm is None]
        if bad or not cles:
            problems.append(f"{raw_cn}: {', '.join(bad) or 'no entry'} is not a control list entry")
            continue
        entries[cn] = frozenset(n for n in normalised if n is not None)
    if problems:
        raise ConfigError(f"{origin}: " + "; ".join(problems))
    return Correlation(entries)


@cache
def load_correlation(path: Path = CORRELATION_FILE) -> Correlation:
    """The table in `path` (the project's own file by default), read once."""
    return parse_correlation(Path(path).read_text(encoding="utf-8"), origin=str(path))
