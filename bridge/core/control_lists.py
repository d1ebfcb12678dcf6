"""Control lists: the EU dual-use list (Annex I), the Common Military List and national lists,
each with its own entry syntax, declared in mappings/reference/control-lists.yaml.

A licence line records which list its control list entry belongs to and the entry in that
list's normal spelling. Annex I entries are normalised exactly as before (bridge.core.codes);
every other list is declared by a pattern for the entry's head and a rule for its sub-items,
so a deployment adds a national list with a table row, not code.

Pure apart from `project_control_lists`, which reads that project file once (as correlation.py
reads its table)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from bridge.core.codes import MAX_CLE_TEXT, cle_problem, normalise_cle
from bridge.core.errors import ConfigError
from bridge.core.model import ANNEX_I_LIST
from bridge.core.paths import MAPPINGS_DIR

CONTROL_LISTS_FILE = MAPPINGS_DIR / "reference" / "control-lists.yaml"
REFERENCE_NAME = "control-lists.yaml"

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
# Sub-items after the head: a letter first, then number and letter alternating, each after an
# optional dot. Digit runs are bounded by letters, so the pattern cannot backtrack badly, and
# text is capped at MAX_CLE_TEXT characters before it is matched.
_SUB_ITEMS = {
    "letter-first": r"(?:\.?[A-Za-z](?:\.?[0-9]+\.?[A-Za-z])*(?:\.?[0-9]+)?)?",
    "none": "",
}
_TOKEN = re.compile(r"[a-z]|[0-9]+")
_BLANKS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ControlList:
    """One list: its id (recorded on the line), its name, and how its entries are spelt."""

    id: str
    name: str
    syntax: str  # for people: "annex-i" or the stem and sub-item rule
    normalise: Callable[[str], str | None]  # the list's normal spelling, or None: not an entry

    def problem(self, raw: str) -> str | None:
        """Why `raw` is not an entry of this list, or None."""
        if self.normalise(raw) is not None:
            return None
        if self.id == ANNEX_I_LIST:
            return cle_problem(raw)
        length = len(_BLANKS.sub("", raw or ""))
        if length > MAX_CLE_TEXT:
            return f"a control list entry has at most 40 characters, not {length}"
        return f"not an entry of the {self.name} ({self.syntax})"


def _pattern_normaliser(stem: str, sub_items: str) -> Callable[[str], str | None]:
    full = re.compile(f"(?P<stem>(?i:{stem}))(?P<rest>{_SUB_ITEMS[sub_items]})")

    @lru_cache(maxsize=8192)  # entries repeat across licences
    def normalise(raw: str) -> str | None:
        text = _BLANKS.sub("", raw or "")
        if not text or len(text) > MAX_CLE_TEXT:
            return None
        match = full.fullmatch(text)
        if match is None:
            return None
        tokens = _TOKEN.findall(match.group("rest").lower())
        return ".".join([match.group("stem").upper(), *tokens])

    return normalise


_annex_i = lru_cache(maxsize=8192)(normalise_cle)


@dataclass(frozen=True)
class ControlLists:
    """The lists a deployment knows, in the table's order; the first is the default."""

    lists: Mapping[str, ControlList]

    @property
    def default(self) -> str:
        return next(iter(self.lists))

    def get(self, list_id: str) -> ControlList | None:
        return self.lists.get(list_id)

    def ids(self) -> str:
        return ", ".join(self.lists)

    def accepting(self, raw: str, among: Iterable[str]) -> list[tuple[str, str]]:
        """(list id, normal spelling) for each list of `among` whose syntax accepts `raw`."""
        found = []
        for list_id in among:
            control_list = self.lists.get(list_id)
            normal = control_list.normalise(raw) if control_list else None
            if normal is not None:
                found.append((list_id, normal))
        return found

    def spelling(self, list_id: str, raw: str) -> str | None:
        """`raw` in the normal spelling of the list `list_id` (ML1a and ml1.a are ML1.a on the
        Common Military List; 5A002a1 is 5A002.a.1 on Annex I), or None when it is no entry of
        that list. A list these tables do not declare keeps `raw` without blanks, upper-cased:
        its entries are compared as written, never read with another list's syntax."""
        control_list = self.lists.get(list_id)
        if control_list is not None:
            return control_list.normalise(raw)
        text = _BLANKS.sub("", raw or "").upper()
        return text or None

    def merged(self, other: ControlLists, origin: str) -> ControlLists:
        """These lists followed by `other`'s; a list declared in both raises ConfigError."""
        twice = sorted(set(self.lists) & set(other.lists))
        if twice:
            raise ConfigError(f"{origin}: the control list {', '.join(twice)} is declared twice")
        return ControlLists({**self.lists, **other.lists})


def _fail(origin: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{origin}: {key}: {message}")


def _one_list(origin: str, list_id: Any, spec: Any) -> ControlList:
    key = f"lists.{list_id}"
    if not isinstance(list_id, str) or not _ID.fullmatch(list_id):
        raise _fail(origin, key, "a list id is lower-case letters, digits and '-' (eu-military)")
    if not isinstance(spec, dict):
        raise _fail(origin, key, "must be a mapping with name and syntax or stem")
    unknown = set(spec) - {"name", "syntax", "stem", "sub_items", "examples"}
    if unknown:
        raise _fail(origin, f"{key}.{sorted(unknown)[0]}", "unknown key")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(origin, f"{key}.name", "is required: the list's name, for people")
    if spec.get("syntax") == "annex-i":
        if "stem" in spec or "sub_items" in spec:
            raise _fail(origin, key, "syntax: annex-i takes no stem or sub_items")
        control_list = ControlList(list_id, name, "Annex I syntax", _annex_i)
    elif "syntax" in spec:
        raise _fail(origin, f"{key}.syntax", "the only built-in syntax is annex-i")
    else:
        stem = spec.get("stem")
        if not isinstance(stem, str) or not stem:
            raise _fail(origin, f"{key}.stem", "is required: a pattern for the entry's head")
        sub_items = spec.get("sub_items", "letter-first")
        if sub_items not in _SUB_ITEMS:
            raise _fail(origin, f"{key}.sub_items", f"one of {', '.join(_SUB_ITEMS)}")
        try:
            normalise = _pattern_normaliser(stem, sub_items)
        except re.error as error:
            raise _fail(origin, f"{key}.stem", f"{stem!r} is not a pattern: {error}") from None
        examples = spec.get("examples")
        shown = ", ".join(str(e) for e in examples[:3]) if isinstance(examples, list) else ""
        control_list = ControlList(list_id, name, f"entries such as {shown}", normalise)
    examples = spec.get("examples", [])
    if not isinstance(examples, list) or (control_list.id != ANNEX_I_LIST and not examples):
        raise _fail(origin, f"{key}.examples", "list the entries this list must accept")
    for example in examples:
        if control_list.normalise(str(example)) is None:
            raise _fail(origin, f"{key}.examples", f"{example!r} is not accepted by the list")
    return control_list


def parse_control_lists(text: str, *, origin: str = "control lists") -> ControlLists:
    """The lists of a table shaped as mappings/reference/control-lists.yaml; ConfigError
    naming the key of the first mistake."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{origin}: not YAML: {error}") from None
    table = document.get("lists") if isinstance(document, dict) else None
    if not isinstance(table, dict) or not table:
        raise ConfigError(f"{origin}: needs `lists:`, a mapping of list ids to their syntax")
    return ControlLists({key: _one_list(origin, key, spec) for key, spec in table.items()})


@cache
def project_control_lists(path: Path = CONTROL_LISTS_FILE) -> ControlLists:
    """The project's table (Annex I first, the default), read once."""
    lists = parse_control_lists(Path(path).read_text(encoding="utf-8"), origin=str(path))
    if lists.default != ANNEX_I_LIST:
        raise ConfigError(f"{path}: the first list must be {ANNEX_I_LIST}, the default")
    return lists
