"""napari reader contribution: legacy ST, Space Ranger ``outs/`` and ``.h5ad`` sections."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def get_reader(path: str | list[str]) -> Callable | None:
    """Return a reader function if ``path`` is a format we read, else ``None`` (napari asks the
    next plugin)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    from ..io import sniff

    try:
        fmt = sniff(path)
    except Exception:
        return None
    if fmt is None:
        return None
    return read_layers


def read_layers(path: str | list[str]):
    """Read a path into image + spot layers (one pair per section)."""
    from ..data.model import SectionError
    from ..io import read
    from ..layers import section_layers

    if isinstance(path, list):
        path = path[0]
    try:
        out = read(path)
    except SectionError as e:
        # napari shows reader errors as notifications; make the message name the file
        raise SectionError(f"napari-scr2st could not open {Path(path).name}: {e}") from e
    sections = out if isinstance(out, dict) else {None: out}
    layers = []
    for adata in sections.values():
        layers.extend(section_layers(adata))
    return layers
