"""The package's import graph: no circle between modules, and no import that runs back up a layer.

Every ``import`` statement of ``dhmrec_pyg`` counts, at module level or inside a function (a
deferred import still ties the two modules together). The graph is read with ``ast``, without
importing the package, so a circle fails here even where a deferred import hides it at run time.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

PACKAGE = "dhmrec_pyg"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

#: The layers, bottom first. A module may import from its own layer or a lower one, never from a
#: higher one. A module's layer is that of its longest listed prefix (``dhmrec_pyg.nn.sparse``:
#: ``nn``). ``ranking`` holds the top-k ranking the models and the evaluator share, so it sits
#: beside the models and imports none of them; the package root (``dhmrec_pyg/__init__.py``)
#: hands out ``load_run`` from ``training`` and so sits with the command line on top.
LAYERS: List[List[str]] = [
    ["errors", "files", "checks"],
    ["schema"],
    ["nn"],
    ["data"],
    ["models", "ranking"],
    ["training"],
    ["recommend", "plot", "tuning"],
    ["cli", ""],
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> Dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name of a ``from ... import`` statement's ``from`` part."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """The package modules that ``name`` imports anywhere in its source (``from P import m`` of a
    submodule ``m`` is an import of ``P.m``; of a name defined in ``P``, of ``P``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in modules else source)
    return {m for m in found if m in modules and m != name}


@functools.lru_cache(maxsize=None)
def import_graph() -> Dict[str, Set[str]]:
    """``{module: the package modules it imports}`` over every module of the package."""
    sources = _sources()
    return {name: _imports(name, path, set(sources)) for name, path in sources.items()}


def layer_of(module: str) -> Optional[int]:
    """Index in :data:`LAYERS` of ``module`` (a full ``dhmrec_pyg...`` name), ``None`` if unlisted."""
    rest = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    best: Optional[int] = None
    best_len = -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            hit = rest == prefix or (prefix != "" and rest.startswith(prefix + ".")) or (prefix == "" and rest == "")
            if hit and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def find_circle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One circle of the graph as ``[a, b, ..., a]``, or ``None`` when it has none."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_reads_the_imports_it_should():
    graph = import_graph()
    # module level, a submodule taken by ``from P import m``, and a relative import
    assert "dhmrec_pyg.files" in graph["dhmrec_pyg.recommend"]
    assert "dhmrec_pyg.errors" in graph["dhmrec_pyg.data.errors"]
    assert "dhmrec_pyg.training.distributed" in graph["dhmrec_pyg.training.run"]
    # inside a function: cli imports the trainer only when a command runs
    assert "dhmrec_pyg.training.trainer" in graph["dhmrec_pyg.cli"]


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_every_module_has_a_layer():
    unlisted = sorted(m for m in import_graph() if layer_of(m) is None)
    assert not unlisted, f"modules in no layer of LAYERS (add them where they belong): {unlisted}"


def test_no_circle_between_modules():
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize("module", sorted(_sources()))
def test_no_import_runs_back_up_a_layer(module):
    graph = import_graph()
    own = layer_of(module)
    upward = sorted(m for m in graph[module] if (layer_of(m) or 0) > (own or 0))
    assert not upward, (
        f"{module} (layer {LAYERS[own or 0]}) imports from a higher layer: "
        + ", ".join(f"{m} ({LAYERS[layer_of(m) or 0]})" for m in upward)
    )
