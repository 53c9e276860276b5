"""The package's shape: small modules, no import cycle, no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

from apimsync.transform.refs import cyclic

PACKAGE = Path(__file__).resolve().parents[2] / "apimsync"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for file in PACKAGE.rglob("*.py"):
        parts = list(file.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = file
    return out


def _imports(file: Path, modules: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """(module imported, names) of every apimsync import in the file: module level, TYPE_CHECKING blocks and
    function bodies alike (a cycle through a lazy import is a cycle of concepts)."""
    found = []
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("apimsync") \
                and node.level == 0:
            names = [a.name for a in node.names]
            submodules = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in modules]
            found += [(m, []) for m in submodules]
            rest = [n for n in names if f"{node.module}.{n}" not in modules]
            if rest:
                found.append((node.module, rest))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("apimsync")]
    return found


def test_no_module_is_longer_than_the_limit() -> None:
    long = {name: n for name, file in _modules().items()
            if (n := len(file.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these (at most {MAX_LINES} lines): {long}"


def test_no_module_imports_another_modules_private_names() -> None:
    modules = _modules()
    reaching = [(name, target, n) for name, file in modules.items() for target, names in _imports(file, modules)
                for n in names if n.startswith("_") and not n.startswith("__") and target != name]
    assert not reaching


def test_the_import_graph_has_no_cycle_outside_the_emulators() -> None:
    modules = _modules()
    graph = {name: {t for t, _ in _imports(file, modules) if t in modules and t != name}
             for name, file in modules.items()}
    assert sum(len(v) for v in graph.values()) > 100  # the graph was read
    on_cycles = cyclic(graph)
    assert not {m for m in on_cycles if not m.startswith("apimsync.emulators")}
