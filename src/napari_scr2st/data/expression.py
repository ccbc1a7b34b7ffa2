"""One expression scale everywhere: log1p of counts normalised to ``TARGET_SUM`` per spot.

Targets of the predictor, retrieval soft labels, reward embeddings and evaluation metrics all
use :func:`log1p_normalized`, so no part of the pipeline mixes raw counts with log values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

TARGET_SUM = 1e4

__all__ = ["TARGET_SUM", "log1p_normalized", "gene_indices"]


def gene_indices(var_names, genes: Sequence[str], *, where: str = "data") -> np.ndarray:
    """Column indices of ``genes`` in ``var_names``; a clear error names missing genes."""
    import pandas as pd

    index = pd.Index(var_names)
    idx = index.get_indexer(list(genes))
    if (idx < 0).any():
        missing = [g for g, i in zip(genes, idx, strict=True) if i < 0]
        raise KeyError(f"{len(missing)} gene(s) not found in {where}: {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return idx


def log1p_normalized(adata, genes: Sequence[str] | None = None, *, rows=None, layer: str | None = None) -> np.ndarray:
    """Dense ``log1p(counts / total * TARGET_SUM)`` for ``genes`` (all genes if None).

    Totals are computed over ALL genes of the spot (as ``scanpy.pp.normalize_total`` does), then
    the panel is sliced. ``rows`` selects spots (boolean mask or indices) before any work.
    """
    X = adata.layers[layer] if layer else adata.X
    if rows is not None:
        X = X[rows]
    if sp.issparse(X):
        X = X.tocsr()
        totals = np.asarray(X.sum(axis=1)).ravel()
    else:
        X = np.asarray(X)
        totals = X.sum(axis=1)
    scale = np.divide(TARGET_SUM, totals, out=np.zeros_like(totals, dtype=np.float64), where=totals > 0)
    if genes is not None:
        X = X[:, gene_indices(adata.var_names, genes)]
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.log1p(X * scale[:, None]).astype(np.float32)
