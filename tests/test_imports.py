"""No import cycles among the package's modules, and the control layer imports none of its users.

The graph is built from the source with ``ast`` (nothing is imported): every
``import`` / ``from ... import`` naming a ``warmserve`` module counts,
wherever it is written -- at module level, under ``if TYPE_CHECKING`` or
inside a function -- because a cycle hidden behind a deferred import is still
two modules that cannot be understood, tested or moved apart. An edge goes to
the deepest module the statement names (``from warmserve.sim import outputs``
-> ``warmserve.sim.outputs``; ``from warmserve.cluster.ledger import KV`` ->
``warmserve.cluster.ledger``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from warmserve.config import REPO_ROOT

PACKAGE = REPO_ROOT / "artifact" / "warmserve"

# Cycles still in the code, each with why it is left (a cycle found must lie inside one of these).
KNOWN_CYCLES: dict[frozenset[str], str] = {}

# Layers below others: the control layer (seam, controller, policies) must not import what uses it, nor
# must the cluster book (warmserve.cluster), which both backends build on.
LAYERS = {"warmserve.control": ("warmserve.forecast", "warmserve.sim", "warmserve.testbed", "warmserve.run",
                                "warmserve.experiments", "warmserve.analysis"),
          "warmserve.cluster": ("warmserve.forecast", "warmserve.sim", "warmserve.testbed", "warmserve.run",
                                "warmserve.experiments", "warmserve.analysis")}
# The cluster book reads and writes the seam's state types and nothing else of the control layer (so the
# seam can never import it back, and policies stay free to use its rules).
CLUSTER_MAY_IMPORT = ("warmserve.cluster", "warmserve.control.seam")


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under ``root`` (a package directory)."""
    out = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring for what counts)."""
    mods = module_names(root)
    top = root.name

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"), str(p))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package, up ``level - 1``
                    base = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in mods else src for a in node.names]
            else:
                continue
            for t in targets:
                r = resolve(t) if t.split(".")[0] == top else None
                if r is not None and r != m:
                    graph[m].add(r)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (each sorted), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def a_cycle(graph: dict[str, set[str]], comp: list[str]) -> str:
    """One concrete import loop inside ``comp``, as ``a -> b -> a``."""
    inside = set(comp)
    path = [comp[0]]
    seen = {comp[0]: 0}
    while True:
        nxt = sorted(graph[path[-1]] & inside)[0]
        if nxt in seen:
            return " -> ".join(path[seen[nxt]:] + [nxt])
        seen[nxt] = len(path)
        path.append(nxt)


def test_the_graph_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "warmserve"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from warmserve.sub import a\n")
    (pkg / "c.py").write_text("from warmserve.sub.a import x\n")
    g = import_graph(pkg)
    assert g["warmserve.c"] == {"warmserve.sub.a"}
    assert cycles(g) == [["warmserve.sub.a", "warmserve.sub.b"]]
    assert a_cycle(g, ["warmserve.sub.a", "warmserve.sub.b"]) == "warmserve.sub.a -> warmserve.sub.b -> warmserve.sub.a"


def test_no_import_cycles() -> None:
    g = import_graph(PACKAGE)
    assert len(g) > 100 and g["warmserve.sim.backend"], "the graph did not see the package"
    new = [c for c in cycles(g) if not any(set(c) <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycles:\n" + "\n".join(f"  {a_cycle(g, c)}   (modules: {', '.join(c)})" for c in new)


def test_the_control_layer_imports_none_of_its_users() -> None:
    g = import_graph(PACKAGE)
    assert all(layer in g and any(m.startswith(layer + ".") for m in g) for layer in LAYERS), \
        "the graph did not see the layers' packages"
    # a layer is its package (its __init__) and every module under it
    bad = [f"{m} -> {t}" for layer, users in LAYERS.items() for m in sorted(g)
           if m == layer or m.startswith(layer + ".") for t in sorted(g[m]) if t.startswith(users)]
    assert not bad, "layering broken:\n  " + "\n  ".join(bad)


def test_the_cluster_book_imports_only_the_seam() -> None:
    g = import_graph(PACKAGE)
    assert "warmserve.cluster.book" in g, "the graph did not see the cluster package"
    bad = [f"{m} -> {t}" for m in sorted(g) if m.startswith("warmserve.cluster")
           for t in sorted(g[m]) if not t.startswith(CLUSTER_MAY_IMPORT)]
    assert not bad, "the cluster book imports more than the seam:\n  " + "\n  ".join(bad)
