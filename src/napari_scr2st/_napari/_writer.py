"""npe2 writer: File > Save Layers on a section's selection (or spots) layer writes the lab's
table of the round (CSV or QuPath GeoJSON, by extension) and the run's state beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import layers as L
from ._sessions import SESSION_KEY, get_session


def session_of_layer(meta: dict, viewer=None):
    """The acquisition session behind a layer's ``metadata``: its own (a spots layer) or that
    of the spots layer of the same section in ``viewer`` (default: the current viewer)."""
    s = meta.get(SESSION_KEY)
    if s is not None:
        return s
    section = meta.get("section")
    if section is None:
        return None
    if viewer is None:
        import napari

        viewer = napari.current_viewer()
    name = L.layer_name(section, "spots")
    if viewer is None or name not in viewer.layers:
        return None
    return get_session(viewer.layers[name], create=False)


def write_selection(path: str, data: Any, attributes: dict) -> list[str]:  # noqa: ARG001 - npe2 signature
    """Write the selection of the layer's section to ``path`` (``.csv`` or ``.geojson``).

    Goes through :meth:`~napari_scr2st.session.AcquisitionSession.export_round`, as the export
    dock's default does: the shown proposal is committed (sent for sequencing) and the spots
    still to sequence are written; once every selected spot is sequenced, all of them are. The
    run's state is written beside it (``name.scr2st-state.npz``). A layer without a prepared
    section raises ``ValueError`` saying what to do.
    """
    from ._export_widget import state_path_for

    meta = attributes.get("metadata", {}) or {}
    name = attributes.get("name", "layer")
    s = session_of_layer(meta)
    if s is None or not s.is_prepared:
        raise ValueError(
            f"layer {name!r} is not the selection of a prepared section: open a section, press "
            "'Prepare section' in the Spot sampling dock, then save its selection layer"
        )
    out = Path(path)
    which = "pending" if s.commit_for_export().pending.any() else "all"
    _, written = s.export_round(out, state_path=state_path_for(out), which=which)
    return [str(written)]
