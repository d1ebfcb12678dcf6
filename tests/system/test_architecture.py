"""The shape the project promises: no import cycles, and a core that touches no outside thing."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"

# The functional core: plain Python, no sockets, files, databases or clocks.
CORE = {
    "bridge.core.model",
    "bridge.core.codes",
    "bridge.core.units",
    "bridge.core.errors",
    "bridge.core.validation",
    "bridge.core.certificate",
    "bridge.core.declaration",
    "bridge.core.envelope",
    "bridge.core.writeoff",
    "bridge.core.correlation",
    "bridge.core.reconcile",
    "bridge.core.retry",
    "bridge.core.manual",
    "bridge.core.history",
    "bridge.core.lifecycle",
    "bridge.core.availability",
}
OUTSIDE_THINGS = (
    "sqlalchemy",
    "paho",
    "zeep",
    "requests",
    "socket",
    "http",
    "urllib",
    "airflow",
    "subprocess",
    "bridge.adapters.store",
    "bridge.adapters.soap",
    "bridge.adapters.mqtt",
    "bridge.entrypoints",
    "bridge.services.ingest",
    "bridge.services.outbox",
    "bridge.services.consumer",
    "bridge.entrypoints.demo",
    "bridge.entrypoints.cli",
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = found
    return graph


def test_the_core_imports_no_adapter_and_no_io_library():
    graph = _imports()
    offences = {
        module: sorted(
            i
            for i in imported
            if i.split(".")[0] in OUTSIDE_THINGS
            or any(i == o or i.startswith(o + ".") for o in OUTSIDE_THINGS)
        )
        for module, imported in graph.items()
        if module in CORE
    }
    assert {m: o for m, o in offences.items() if o} == {}


def test_bridge_modules_import_each_other_without_cycles():
    graph = _imports()
    modules = set(graph)
    edges = {m: {i for i in imported if i in modules and i != m} for m, imported in graph.items()}
    # A package's __init__ importing its own submodules is not a cycle of concern.
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
