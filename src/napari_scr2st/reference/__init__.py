"""Single-cell reference: reading, gene matching, the shared embedding space, label transfer.

See :mod:`napari_scr2st.reference.core`, :mod:`napari_scr2st.reference.genes` and METHOD
section 3.
"""

from .core import (
    GeneOverlap,
    LabelTransfer,
    PreparedReference,
    ReferenceDataError,
    ReferenceSpace,
    ReferenceWarning,
    default_n_clusters,
    list_celltype_columns,
    prepare_reference,
    read_reference,
    reference_counts,
)
from .genes import GeneMatch, match_genes, strip_ensembl_version

__all__ = [
    "GeneMatch",
    "GeneOverlap",
    "LabelTransfer",
    "PreparedReference",
    "ReferenceDataError",
    "ReferenceSpace",
    "ReferenceWarning",
    "default_n_clusters",
    "list_celltype_columns",
    "match_genes",
    "prepare_reference",
    "read_reference",
    "reference_counts",
    "strip_ensembl_version",
]
