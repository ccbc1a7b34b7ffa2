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
