"""docs/settings.md cannot drift: its table is what the code generates, every setting has its
meaning, and every ELBRIDGE_* variable the bridge reads is in it."""

from __future__ import annotations

import re
from dataclasses import fields

from bridge.core.paths import PROJECT_ROOT
from bridge.entrypoints.cli_config import DOCS, TABLE_END, TABLE_START, settings_markdown
from bridge.services.config import Settings
from bridge.services.settings_docs import MEANINGS, OTHER_VARIABLES

REGENERATE = "run: python -m bridge.entrypoints.cli_config --write-docs"
# Named in the code but not read from the environment: a message label, placeholders, the
# setup script's switch.
NOT_VARIABLES = {"ELBRIDGE_SOAP", "ELBRIDGE_X", "ELBRIDGE_WITH_POSTGRES"}


def test_the_settings_table_in_the_docs_is_the_generated_one():
    text = DOCS.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START), text.index(TABLE_END) + len(TABLE_END) + 1
    assert text[start:end] == settings_markdown(), f"docs/settings.md is out of date; {REGENERATE}"


def test_every_setting_has_its_meaning_and_no_meaning_is_left_over():
    names = [f.name for f in fields(Settings)]
    assert [name for name in names if name not in MEANINGS] == [], (
        "describe the new settings in bridge/services/settings_docs.py, then " + REGENERATE
    )
    assert sorted(set(MEANINGS) - set(names)) == []


def test_every_variable_the_bridge_reads_is_documented():
    documented = {f"ELBRIDGE_{f.name.upper()}" for f in fields(Settings)} | set(OTHER_VARIABLES)
    pattern = re.compile(r"(?<![A-Z0-9_])ELBRIDGE_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_])")
    named: dict[str, str] = {}
    for path in sorted((PROJECT_ROOT / "bridge").rglob("*.py")):
        for variable in pattern.findall(path.read_text(encoding="utf-8")):
            if variable not in documented:  # ELBRIDGE_<NAME>_FILE: the file form of <NAME>
                variable = variable.removesuffix("_FILE")
            named.setdefault(variable, str(path))
    assert len(named) > 20  # the scan found the code's variables
    missing = {
        variable: where
        for variable, where in named.items()
        if variable not in documented and variable not in NOT_VARIABLES
    }
    assert missing == {}, "document them in bridge/services/settings_docs.py, then " + REGENERATE
    table = DOCS.read_text(encoding="utf-8")
    assert all(f"`{variable}`" in table for variable in documented)
