"""napari reader contribution: sections, collections of sections and H&E images before sequencing.

- a legacy ST counts table whose spot file or image is not found beside it (outside the her2st
  layout): nothing is read yet; :func:`~napari_scr2st._napari._counts_dialog.ask_counts_companions`
  asks for them (the spot file is required, the image optional) and adds the layers on OK;
- one section (legacy ST counts table, Space Ranger folder, ``.h5ad``, SpatialData ``.zarr``,
  a collection folder holding a single section): read at once into image + spots layers;
- a collection (her2st or HEST folder, a folder of section inputs) with several sections:
  nothing is read; the reader returns napari's "no layers" value and docks a
  :class:`~napari_scr2st._napari._section_chooser.SectionChooser` that opens the chosen
  sections in a thread worker;
- an H&E image (TIFF family, JPEG, PNG): the image layer is returned at once (a whole slide as
  its lazy pyramid) and :func:`~napari_scr2st._napari._open_dialog.ask_slide_options` asks the
  platform and scale before the spots are laid.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

#: what napari's reader protocol takes for "read, but no layers to add" (a dock was opened)
NO_LAYERS = [(None,)]


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
        if fmt == "image":
            return read_image_layers
        if fmt == "legacy_st" and _missing_companions(path) is not None:
            return read_counts_table_asking
        if collection_openers(path, fmt):
            return read_collection_lazily
    except Exception:  # noqa: BLE001 - napari's reader hook must never raise
        return None
    if fmt is None:
        return None
    return read_layers_in_background


def _one_path(path: str | list[str]) -> str:
    return path[0] if isinstance(path, list) else path


def _named_error(path, e: Exception):
    from ..data.model import SectionError

    # napari shows reader errors as notifications; make the message name the file
    return SectionError(f"napari-scr2st could not open {Path(path).name}: {e}")


def read_layers(path: str | list[str]):
    """Read a path into image + spot layers (one pair per section), in the calling thread."""
    from ..progress import drive

    return drive(iter_read_layers(_one_path(path)), use_tqdm=False)


def read_layers_in_background(path: str | list[str]):
    """In a viewer: read the section in a thread worker (a progress dock with Cancel while it
    reads; the layers appear when it is read) and return napari's "no layers" value at once.
    Without a viewer, or with ``SCR2ST_SYNC_WORKERS=1``: :func:`read_layers`."""
    import napari

    from . import _workers as W

    path = _one_path(path)
    viewer = napari.current_viewer()
    if viewer is None or W.sync_workers():
        return read_layers(path)
    W.load_layers_in_background(viewer, f"SCR2-ST: opening {Path(path).name}", lambda: iter_read_layers(path))
    return NO_LAYERS


def iter_read_layers(path):
    """:func:`read_layers` as a progress generator: read, then build the layers (image
    pyramid, spots); returns the layer-data tuples."""
    from ..data.model import SectionError
    from ..io import read
    from ..layers import section_layers
    from ..progress import Progress

    name = Path(path).name
    yield Progress(0, 2, f"reading {name}")
    try:
        out = read(path)
    except SectionError as e:
        raise _named_error(path, e) from e
    sections = out if isinstance(out, dict) else {None: out}
    yield Progress(1, 2, f"building the layers of {len(sections)} section(s)")
    layers = [lt for a in sections.values() for lt in section_layers(a)]
    yield Progress(2, 2, "adding the layers")
    return layers


# ------------------------------------------------------------------ counts tables without companions
def _missing_companions(path) -> dict | None:
    """:func:`napari_scr2st.io.find_companions` of a counts table outside the her2st layout when
    its spot file or image was not found beside it, else ``None``."""
    from ..io import find_companions

    comp = find_companions(path)
    if comp["her2st_root"] is not None or (comp["spots"] is not None and comp["image"] is not None):
        return None
    return comp


def read_counts_table_asking(path: str | list[str]):
    """Ask for the spot file and image of a counts table that lacks them; nothing is read yet.

    Without a viewer to ask in, the table is read as it is (an error naming the file when the
    spot file is missing).
    """
    path = _one_path(path)
    comp = _missing_companions(path)
    import napari

    viewer = napari.current_viewer()
    if comp is None or viewer is None:
        return read_layers(path)
    from ._counts_dialog import ask_counts_companions

    ask_counts_companions(viewer, path, spots=comp["spots"], image=comp["image"])
    return NO_LAYERS


# ------------------------------------------------------------------ collections
def collection_openers(path, fmt: str | None = None) -> dict[str, Callable] | None:
    """``{section id: reader}`` when ``path`` is a collection folder, else ``None``.

    Her2st and HEST folders list their section ids from file names; another folder lists its
    entries that :func:`napari_scr2st.io.sniff` reads as sections (images excluded). Nothing is
    read; each reader reads one entry with :func:`napari_scr2st.io.read`.
    """
    from ..io import list_her2st_sections, list_hest_samples, read, sniff

    p = Path(path)
    if not p.is_dir():
        return None
    fmt = sniff(p) if fmt is None else fmt
    if fmt in ("her2st", "hest"):
        ids = list_her2st_sections(p) if fmt == "her2st" else list_hest_samples(p)
        openers = {s: functools.partial(read, p, section=s) for s in ids}
    elif fmt in (None, "folder"):
        openers = {c.name: functools.partial(read, c) for c in sorted(p.iterdir())
                   if sniff(c) not in (None, "image")}
    else:
        return None
    return openers


def read_collection_lazily(path: str | list[str]):
    """Dock a section chooser for a collection of several sections (nothing is read); a
    collection of one section is read at once."""
    path = _one_path(path)
    openers = collection_openers(path) or {}
    if len(openers) <= 1:
        return _read_single_entry(path, openers)
    import napari

    from ._section_chooser import open_chooser

    viewer = napari.current_viewer()
    if viewer is None:
        raise _named_error(path, RuntimeError("a collection of sections needs a napari viewer to choose from"))
    open_chooser(viewer, path, openers)
    return NO_LAYERS


def _read_single_entry(path: str, openers: dict[str, Callable]):
    from ..data.model import SectionError
    from ..layers import section_layers

    try:
        if not openers:
            raise SectionError(f"{path}: no readable sections found")
        got = next(iter(openers.values()))()
    except SectionError as e:
        raise _named_error(path, e) from e
    sections = got if isinstance(got, dict) else {None: got}
    return [lt for a in sections.values() for lt in section_layers(a)]


# ------------------------------------------------------------------ images before sequencing
def section_name_for_image(path) -> str:
    """The section name of an image: its file name without the suffix (``.ome.tif`` as one)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def read_image_layers(path: str | list[str]):
    """The image layer of an H&E image at once; the platform and scale dialog lays the spots.

    A whole slide is shown as its lazy pyramid. The image is opened once
    (:func:`napari_scr2st.data.images.open_slide` is cached): laying the spots reuses it.
    """
    from ..data.images import open_slide
    from ..data.model import SectionError
    from ..layers import slide_image_layer

    path = _one_path(path)
    try:
        slide = open_slide(path)
    except SectionError as e:
        raise _named_error(path, e) from e
    section = section_name_for_image(path)
    layer = slide_image_layer(slide, section=section)
    import napari

    from . import _open_dialog

    viewer = napari.current_viewer()
    if viewer is not None:
        _open_dialog.ask_slide_options(viewer, path, section=section, um_per_px=slide.um_per_px)
    return [layer]
