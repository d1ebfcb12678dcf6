"""The shape the project promises. The layers and what each may import are import-linter
contracts (pyproject.toml, [tool.importlinter]); these tests show that `lint-imports` keeps
them and catches a breach, and check what import-linter cannot say: no import cycles at all,
every module in a layer folder, no module too long to read, DAG files that only wire."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "bridge"
DAGS = ROOT / "dags"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LAYERS = ("core", "adapters", "services", "entrypoints")
MAX_LINES = 800  # a module longer than this wants a table of contents: it is two modules

LAYERS_CONTRACT = "Layers: entrypoints -> services -> adapters -> core"
CORE_CONTRACT = "The core touches no outside thing"
ADAPTERS_CONTRACT = "Adapters decide nothing: no write-off rules, envelopes or settings"


def _contracts_copy(root: Path) -> Path:
    """The package and pyproject.toml (whose [tool.importlinter] holds the contracts), copied
    under `root`; returns the copy's config."""
    shutil.copytree(PACKAGE, root / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    config = shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    contracts = tomllib.loads(config.read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert len(contracts["contracts"]) == 4
    return config


def _lint_imports(root: Path, config: Path) -> subprocess.CompletedProcess[str]:
    # The copy first on the path, so the graph is built from it and not from the installed tree.
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", str(config)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_imports_keeps_every_contract_on_the_package_as_it_is(tmp_path):
    done = _lint_imports(tmp_path, _contracts_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout
    assert "Contracts: 4 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "chain"),
    [
        ("core/units.py", "import sqlalchemy", CORE_CONTRACT, "bridge.core.units -> sqlalchemy"),
        ("core/model.py", "import socket", CORE_CONTRACT, "bridge.core.model -> socket"),
        (
            "adapters/store/alerts.py",
            "import bridge.core.manual",
            ADAPTERS_CONTRACT,
            "bridge.adapters.store.alerts -> bridge.core.manual",
        ),
        (
            "core/errors.py",
            "import bridge.services.config",
            LAYERS_CONTRACT,
            "bridge.core.errors -> bridge.services.config",
        ),
    ],
    ids=["core-imports-sqlalchemy", "core-imports-socket", "adapter-imports-rules", "core-up"],
)
def test_lint_imports_fails_when_an_import_breaks_a_contract(
    tmp_path, module, line, contract, chain
):
    config = _contracts_copy(tmp_path)
    target = tmp_path / "bridge" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", "utf-8")
    done = _lint_imports(tmp_path, config)
    assert done.returncode != 0
    assert f"{contract} BROKEN" in done.stdout
    assert chain in done.stdout, done.stdout


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside a function (absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_bridge_modules_import_each_other_without_cycles():
    # Import-linter forbids climbing the layers; a cycle inside one layer is ours to catch.
    graph = {_module_name(path): _imported(path) for path in PACKAGE.rglob("*.py")}
    modules = set(graph)
    edges = {m: {i for i in imported if i in modules and i != m} for m, imported in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_every_module_lives_in_a_layer_folder_or_the_test_kit():
    homes = {*LAYERS, "testkit"}
    strays = sorted(
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if path.parent != PACKAGE and path.relative_to(PACKAGE).parts[0] not in homes
    )
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert (strays, loose) == ([], [])


def test_no_module_is_too_long_to_read():
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_dag_files_only_wire_entrypoints_to_services():
    # A rule that only runs inside Airflow cannot be tested or benchmarked: DAG files reach the
    # bridge through its Airflow wiring and its services, never a store, an adapter or a rule.
    reached = {
        path.name: sorted(
            name
            for name in _imported(path)
            if name.split(".")[0] == "bridge"
            and not name.startswith(("bridge.entrypoints.", "bridge.services."))
        )
        for path in sorted(DAGS.glob("*.py"))
    }
    assert reached and {name: found for name, found in reached.items() if found} == {}
