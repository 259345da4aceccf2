"""No import cycle among the portal's modules: a module imports downward only.

The graph is read from the source with ``ast``, so every import counts: at the top of a module, inside a
function, under ``if TYPE_CHECKING``. An import that only runs later is still a dependency a reader must follow
both ways, and a cycle hidden in a function is one refactor away from an ImportError at start-up. Importing
``a.b.c`` runs ``a`` and ``a.b`` first, so it depends on them too, except on the importer's own packages (they
ran before it). The packages are the ones pyproject.toml installs.
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def portal_modules() -> dict[str, Path]:
    """Dotted name → file, for every module of the packages pyproject.toml installs."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    modules: dict[str, Path] = {}
    for where in find["where"]:
        base = ROOT / where
        for top in sorted(base.iterdir()):
            if (top / "__init__.py").exists() and any(fnmatch.fnmatch(top.name, p) for p in find["include"]):
                _walk(top, top.name, modules)
    return modules


def _walk(directory: Path, name: str, modules: dict[str, Path]) -> None:
    modules[name] = directory / "__init__.py"
    for path in sorted(directory.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            _walk(path, f"{name}.{path.name}", modules)
        elif path.suffix == ".py" and path.name != "__init__.py":
            modules[f"{name}.{path.stem}"] = path


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The portal modules that importing ``name`` runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:  # a submodule, or a name of the module ``base``
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    own_packages = _prefixes(name)
    found: set[str] = set()
    for target in targets:
        loaded = [prefix for prefix in _prefixes(target) if prefix in modules]
        if loaded:
            found.add(loaded[-1])
            found.update(prefix for prefix in loaded[:-1] if prefix not in own_packages)
    found.discard(name)
    return found


def _prefixes(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle (its modules in import order, the first repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return []


def test_the_packages_are_found():
    modules = portal_modules()
    for expected in ("agents.handoff.relay", "agents.services.dispatch", "signin.outcomes", "pta_protocol",
                     "tenant.models", "config.settings.base"):
        assert expected in modules


def test_a_cycle_is_found_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def import_graph() -> dict[str, set[str]]:
    modules = portal_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_no_import_cycle_among_the_portals_modules():
    graph = import_graph()
    assert graph["agents.consumers"] >= {"agents.handoff.relay", "agents.connections"}  # the reader works
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " → ".join(cycle)


def test_agents_never_import_signin_and_the_protocol_imports_neither_side():
    graph = import_graph()
    for name, targets in graph.items():
        if name.split(".")[0] == "agents":
            assert not {t for t in targets if t.split(".")[0] == "signin"}, name
    assert graph["pta_protocol"] == set()
