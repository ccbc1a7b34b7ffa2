"""The core imports without napari, Qt or torch; the plugin layer is the only Qt user."""

import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_scr2st"


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_every_core_module_imports_without_qt_or_napari():
    out = _run(
        """
        import sys, pkgutil, importlib
        import napari_scr2st
        core = [m.name for m in pkgutil.walk_packages(napari_scr2st.__path__, 'napari_scr2st.')
                if '._napari' not in m.name]
        for name in core:
            importlib.import_module(name)
        bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'PySide6', 'vispy') if m in sys.modules]
        print('IMPORTED', len(core), 'BAD', bad)
        """
    )
    assert "BAD []" in out
    assert int(out.split()[1]) > 10


def test_package_entry_points_import_without_torch():
    """napari starts fast: the plugin's packages, layers and CLI parser do not import torch."""
    out = _run(
        """
        import sys, importlib
        for name in ('napari_scr2st', 'napari_scr2st.data', 'napari_scr2st.io', 'napari_scr2st.features',
                     'napari_scr2st.reference', 'napari_scr2st.sampling', 'napari_scr2st.model',
                     'napari_scr2st.evaluation', 'napari_scr2st.layers', 'napari_scr2st.plotting'):
            importlib.import_module(name)
        from napari_scr2st.cli import build_parser
        build_parser()
        print('BAD', [m for m in ('torch', 'timm', 'napari', 'qtpy') if m in sys.modules])
        """
    )
    assert "BAD []" in out


def test_no_qt_binding_imported_directly():
    offenders = []
    for py in SRC.rglob("*.py"):
        text = py.read_text()
        for binding in ("PyQt5", "PyQt6", "PySide2", "PySide6"):
            if f"import {binding}" in text or f"from {binding}" in text:
                offenders.append(f"{py.name}: {binding}")
    assert not offenders, "import Qt only through qtpy: " + ", ".join(offenders)


def test_manifest_is_valid():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(SRC / "napari.yaml")
    pm.validate_imports()  # every python_name resolves to a callable
    assert {c.key for c in pm.contributions.sample_data} >= {"synthetic", "her2st_c3"}


# ------------------------------------------------------------------------- import graph
#: layer of each top-level module/subpackage; a module may import only its own or lower layers.
LAYERS = {
    "progress": 0, "atomic": 0, "device": 0, "palette": 0, "config": 0, "torch_runtime": 0,
    "data": 1,
    "io": 2,
    "datasets": 3,
    "features": 4,
    "reference": 5,
    "evaluation": 6,
    "model": 7,
    "sampling": 8,
    "plotting": 9, "layers": 9, "session": 9,
    "api": 10, "__init__": 10,  # the public facade (the package imports api lazily)
    "cli": 10, "_napari": 10, "benchmark": 10,
}  # fmt: skip
#: packages outside the core: no core module imports them
SHELLS = ("cli", "_napari", "benchmark")


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` under the package folder ``root``
    (a package is named by its ``__init__.py``)."""
    out = {}
    for py in sorted(root.rglob("*.py")):
        parts = list(py.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = py
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Edges module -> imported module of the package at ``root``, from EVERY import statement
    (module level, inside functions, under ``if TYPE_CHECKING``). Relative imports are resolved;
    ``from X import name`` is an edge to ``X.name`` when that is a module, else to ``X``; an edge
    to a package is an edge to its ``__init__``; a module not found resolves to its longest
    existing parent."""
    import ast

    mods = _modules(root)
    pkg = root.name

    def existing(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {existing(a.name) for a in node.names if a.name.split(".")[0] == pkg}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                if src.split(".")[0] != pkg:
                    continue
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.add(sub if sub in mods else existing(src))
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycle():
    cycle = find_cycle(import_graph(SRC))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_core_never_imports_cli_napari_or_benchmark():
    bad = [f"{m} imports {t}" for m, ts in import_graph(SRC).items() if _top(m) not in SHELLS
           for t in sorted(ts) if _top(t) in SHELLS]
    assert not bad, "the core imports a shell package: " + "; ".join(bad)


def test_every_module_imports_only_its_layer_or_below():
    graph = import_graph(SRC)
    unranked = sorted({_top(m) for m in graph} - set(LAYERS))
    assert not unranked, f"give these top-level modules a layer in LAYERS: {unranked}"
    up = [f"{m} (layer {LAYERS[_top(m)]}) imports {t} (layer {LAYERS[_top(t)]})"
          for m, ts in sorted(graph.items()) for t in sorted(ts) if LAYERS[_top(t)] > LAYERS[_top(m)]]
    assert not up, "imports up the layers: " + "; ".join(up)


def test_baseline_samplers_never_reach_scrl():
    graph = import_graph(SRC)
    seen, todo = set(), ["napari_scr2st.sampling.baselines"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    assert not [m for m in seen if m.startswith("napari_scr2st.sampling.scrl")]


def test_cycle_checker_catches_a_cycle_through_a_function_level_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n    return g\n")
    (pkg / "c.py").write_text("import os\n\nimport pkg.a\n\ng = 1\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"pkg.a", "pkg.sub.b", "pkg.c"}
    (pkg / "c.py").write_text("from . import sub\n\ng = 1\n")  # an edge to a package is its __init__
    graph = import_graph(pkg)
    assert graph["pkg.c"] == {"pkg.sub"} and find_cycle(graph) is None
