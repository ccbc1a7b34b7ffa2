"""Single-cell reference: reading, gene overlap, the shared embedding space, label transfer.

See :mod:`napari_scr2st.reference.core` and METHOD section 3.
"""

from .core import (
    GeneOverlap,
    LabelTransfer,
    PreparedReference,
    ReferenceDataError,
    ReferenceSpace,
    default_n_clusters,
    prepare_reference,
    read_reference,
)

__all__ = [
    "GeneOverlap",
    "LabelTransfer",
    "PreparedReference",
    "ReferenceDataError",
    "ReferenceSpace",
    "default_n_clusters",
    "prepare_reference",
    "read_reference",
]
