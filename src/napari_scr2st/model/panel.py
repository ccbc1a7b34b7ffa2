"""The gene panel the predictor learns: chosen on the TRAINING spots only.

Default: the 250 most highly variable genes (scanpy ``highly_variable_genes``, flavour
``seurat``, on log1p-normalised expression of the training spots), after dropping genes detected
(count > 0) in fewer than ``min_frac`` (default 10 %) or ``min_spots`` of the training spots.
The detection filter matters on sparse platforms: on legacy ST (her2st) the unfiltered
dispersion ranking is dominated by genes that are zero in 75 % of spots, whose expression no
image model can predict (measured: ridge PCC on C6 0.028 unfiltered vs 0.038 with the 10 %
filter; see docs/benchmarks.md). Test spots never influence the panel, so a benchmark
cannot leak through gene choice. ``method="heg"`` picks the highest mean expression instead, and
an explicit list of genes is accepted as is (checked against ``var_names``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["select_panel"]


def select_panel(
    adata,
    train_mask,
    n_genes: int = 250,
    *,
    method: str = "hvg",
    genes: Sequence[str] | None = None,
    min_spots: int = 3,
    min_frac: float = 0.1,
    batch_key: str | None = None,
) -> list[str]:
    """Return the panel (gene names, in ``var_names`` order) chosen from the training spots.

    Reads counts of ``train_mask`` rows only. ``batch_key`` (e.g. ``"section"``) is passed to
    scanpy so that variability is ranked within sections (only with several sections present).
    """
    from ..data.expression import gene_indices, log1p_normalized

    if genes is not None:
        idx = gene_indices(adata.var_names, list(genes), where="the data (explicit panel)")
        return [str(adata.var_names[i]) for i in idx]
    mask = np.asarray(train_mask, dtype=bool)
    if mask.sum() < 2:
        raise ValueError("need at least 2 training spots to choose a gene panel")
    X = adata.X[mask]
    detected = np.asarray((X > 0).sum(axis=0)).ravel()
    need = max(min(min_spots, int(mask.sum())), int(np.ceil(min_frac * mask.sum())))
    keep = np.flatnonzero(detected >= need)
    if keep.size == 0:
        raise ValueError("no gene is detected in the training spots")
    logx = log1p_normalized(adata, rows=mask)[:, keep]
    names = np.asarray(adata.var_names)[keep]
    n = min(n_genes, keep.size)
    if method == "heg":
        order = np.argsort(-logx.mean(axis=0), kind="stable")[:n]
    elif method == "hvg":
        order = _hvg_order(logx, names, adata.obs, mask, batch_key, n)
    else:
        raise ValueError(f"method must be 'hvg' or 'heg', got {method!r}")
    chosen = set(names[order].tolist())
    return [str(g) for g in adata.var_names if g in chosen]


def _hvg_order(
    logx: np.ndarray, names: np.ndarray, obs, mask: np.ndarray, batch_key, n: int
) -> np.ndarray:
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    obs_sub = pd.DataFrame(index=[str(i) for i in range(logx.shape[0])])
    if batch_key is not None and batch_key in obs and obs[batch_key][mask].nunique() > 1:
        obs_sub[batch_key] = obs[batch_key].astype(str).to_numpy()[mask]
    else:
        batch_key = None
    tmp = ad.AnnData(
        X=logx.astype(np.float32), obs=obs_sub, var=pd.DataFrame(index=names.astype(str))
    )
    if n >= logx.shape[1]:
        return np.arange(logx.shape[1])
    sc.pp.highly_variable_genes(tmp, flavor="seurat", n_top_genes=n, batch_key=batch_key)
    hv = tmp.var["highly_variable"].to_numpy()
    idx = np.flatnonzero(hv)
    if idx.size < n:  # scanpy may return fewer (NaN dispersions); fill by variance
        var_order = np.argsort(-logx.var(axis=0), kind="stable")
        idx = np.concatenate([idx, var_order[~np.isin(var_order, idx)][: n - idx.size]])
    return idx[:n]
