"""The acquisition session of a spots layer (one per section layer, created on first use).

The docks share it: each one reads and changes the same
:class:`~napari_scr2st.session.AcquisitionSession` and listens to its signals.
"""

from __future__ import annotations

from ..session import AcquisitionSession

SESSION_KEY = "scr2st_session"


def get_session(layer, *, create: bool = True) -> AcquisitionSession | None:
    """The session stored with a spots layer (created from its section on first use)."""
    meta = layer.metadata
    s = meta.get(SESSION_KEY)
    if s is None and create and "adata" in meta:
        from ._dock_kit import plugin_defaults

        sampling, training = plugin_defaults()
        s = AcquisitionSession(meta["adata"], library=meta.get("section"), reference=meta.get("reference"),
                               settings=sampling, training=training)
        meta[SESSION_KEY] = s
    return s
