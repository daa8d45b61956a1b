"""The simulator's layers import one way only (issue #25): no cycles among `sim.*` modules,
the core imports nothing above it, and the policies import only the core.

Every import statement counts, wherever it stands (module level, inside a function, under
`if TYPE_CHECKING:`): a lazy import still ties the layers together, it only hides the cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sim.core.serving import ServingKnobs

ROOT = Path(__file__).resolve().parents[2]
SIM = ROOT / "sim"

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sim_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SIM.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, name: str, is_pkg: bool) -> str:
    """The absolute module an `ImportFrom` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    package = name if is_pkg else name.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The `sim.*` modules `name` imports anywhere in its file. `from a import b` counts as
    importing `a.b` when that is a module, else `a`; an unknown dotted name counts as its
    longest known prefix."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    targets: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve_from(node, name, is_pkg)
            targets += [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
    out = set()
    for t in targets:
        while t and t not in known:
            t = t.rpartition(".")[0]
        if t and t != name:
            out.add(t)
    return out


def import_graph() -> Graph:
    mods = sim_modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def violations(graph: Graph, layer: str, allowed: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {t}"
        for m, ts in graph.items()
        if in_layer(m, layer)
        for t in ts
        if not any(in_layer(t, a) for a in allowed)
    )


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph()


def leaves(graph: Graph) -> tuple[str, ...]:
    """`sim.errors` may be imported from any layer while it imports nothing from sim."""
    return ("sim.errors",) if not graph.get("sim.errors") else ()


def test_the_scan_sees_the_layers(graph):
    assert {"sim.core.engine", "sim.config", "sim.policies.registry", "sim.runner"} <= set(graph)
    assert "sim.core.scheduler" in graph["sim.core.engine"]
    assert "sim.policies.builtin" in graph["sim.policies.registry"]  # a lazy import counts


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_core_imports_only_the_core(graph):
    bad = violations(graph, "sim.core", ("sim.core", *leaves(graph)))
    assert not bad, "the core must not import the layers above it:\n" + "\n".join(bad)


def test_config_does_not_reach_the_policies(graph):
    """Checks that need the registry are handed in at the edge (sim.runner, the CLI)."""
    bad = violations(graph, "sim.config", ("sim.core", *leaves(graph)))
    assert not bad, "the config layer may import only the core:\n" + "\n".join(bad)


def test_policies_import_only_the_core(graph):
    bad = violations(graph, "sim.policies", ("sim.core", "sim.policies", *leaves(graph)))
    assert not bad, "the policies may import only the core:\n" + "\n".join(bad)


def test_resolution_of_import_forms(tmp_path):
    known = {"sim", "sim.a", "sim.a.b", "sim.a.c", "sim.d"}
    src = tmp_path / "c.py"
    src.write_text(
        "import sim.a.b as x\n"
        "from sim.a import c, something\n"
        "from . import b\n"
        "from .. import d\n"
        "def f():\n    from sim import a\n"
        "if False:\n    import sim.d.nonexistent\n"
    )
    assert imports_of("sim.a.c", src, known) == {"sim.a.b", "sim.a", "sim.d"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_serving_config_converts_to_the_cores_knobs():
    """The seam: the validated schema and the core's plain knobs carry the same fields."""
    from dataclasses import fields

    from sim.config import ServingCfg

    cfg = ServingCfg(max_loras_per_batch=3, max_loaded_loras=5, copy_mode="flat")
    knobs = cfg.knobs()
    assert isinstance(knobs, ServingKnobs)
    from sim.core.serving import DERIVED

    assert {f.name for f in fields(ServingKnobs)} - set(DERIVED) == set(ServingCfg.model_fields)
    assert all(getattr(knobs, k) == getattr(cfg, k) for k in ServingCfg.model_fields)
    assert ServingKnobs.of(cfg) == knobs and ServingKnobs.of(knobs) is knobs
