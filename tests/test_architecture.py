"""The package reads as its architecture: layers, arrows only downward, no import cycle.

Every import of every module counts, at the top or inside a function (a lazy import is an arrow
too), read from the source with `ast`. docs/architecture.md draws the same layers.
"""
from __future__ import annotations

import ast
from pathlib import Path

import ticketlab

ROOT = Path(ticketlab.__file__).parent
# lowest first; packages of one rank do not import each other
LAYERS: dict[str, int] = {
    "core": 0,
    "data": 1, "nets": 1,
    "pruning": 2, "training": 2,
    "store": 3,
    "experiments": 4,
    "execution": 5,
    "analysis": 6,
}
TOP = 7  # cli, bench, reproduce, the public-API modules results and numerics, __init__, __main__


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("ticketlab",) + (parts[:-1] if parts[-1] == "__init__" else parts))
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The ticketlab modules `name` imports (a package import resolves to its __init__)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = set()  # imports under `if TYPE_CHECKING:` are for annotations, not arrows at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import mod` is an arrow to pkg.mod; `from pkg import name` one to pkg
            candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in modules and c != name}
    return found


def _rank(module: str) -> tuple[int, str]:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS):
        return LAYERS[parts[1]], parts[1]
    return TOP, parts[-1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_subpackage_is_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(LAYERS)


def test_arrows_only_run_downward():
    upward = []
    for module, targets in _graph().items():
        rank, room = _rank(module)
        for target in targets:
            t_rank, t_room = _rank(target)
            # the top level's modules (the command line and what it runs) may use each other
            if t_rank > rank or (t_rank == rank and t_room != room and rank != TOP):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycle():
    graph = _graph()
    # a package's __init__ importing its own modules is its face, not an arrow back: leave those out
    for module in graph:
        graph[module] = {t for t in graph[module] if not (t.startswith(module + ".") and _modules()[module].name == "__init__.py")}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, path: list[str]) -> bool:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
                return True
            if nxt not in state and visit(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if start not in state and visit(start, [start]):
            break
    assert cycle == [], " -> ".join(cycle)


def test_the_checks_see_an_upward_arrow_and_a_cycle(tmp_path, monkeypatch):
    # the two checks above must be able to fail: a store module importing analysis is caught
    graph = _graph()
    assert "ticketlab.analysis.table" in graph["ticketlab.results"]
    rank, _ = _rank("ticketlab.store.files")
    assert _rank("ticketlab.analysis.table")[0] > rank
    modules = _modules()
    fake = tmp_path / "fake.py"
    fake.write_text("from ..analysis import table\nfrom . import runs\n")
    found = _imports("ticketlab.store.fake", fake, {**modules, "ticketlab.store.fake": fake})
    assert found == {"ticketlab.analysis.table", "ticketlab.store.runs"}
