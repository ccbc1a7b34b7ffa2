"""Fixtures for the reader tests: the her2st folder and sections read once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from _spaceranger import write_spaceranger_outs


@pytest.fixture(scope="session")
def her2st_root(shared_data: Path) -> Path:
    root = shared_data / "her2st"
    if not (root / "data" / "ST-cnts").is_dir():
        pytest.skip(f"her2st data not found under {root.resolve()}")
    return root


@pytest.fixture(scope="session")
def c3(her2st_root):
    """her2st section C3 with its image and annotations (read once; do not modify)."""
    from napari_scr2st.io import read_her2st

    return read_her2st(her2st_root, "C3")


@pytest.fixture
def spaceranger(tmp_path) -> dict:
    """A tiny Space Ranger run in ``tmp_path/sample1/outs`` (new positions format)."""
    return write_spaceranger_outs(tmp_path / "sample1")
