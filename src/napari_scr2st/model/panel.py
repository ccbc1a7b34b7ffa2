"""The gene panel the predictor learns: chosen on the TRAINING spots only.

Candidates are the genes detected (count > 0) in at least ``min_frac`` (default 10 %) and
``min_spots`` of the training spots; among them ``method`` picks ``n_genes``:

- ``"heg"``: the highest mean log1p-normalised expression (highly expressed genes);
- ``"hvg"``: the most highly variable genes (scanpy ``highly_variable_genes``, flavour
  ``seurat``, on the log1p-normalised expression of the training spots, ranked within sections
  when ``batch_key`` is given);
- ``"union"``: the top ``ceil(n/2)`` HEG, then HVG in rank order (skipping genes already in)
  until the panel has ``n`` genes: half HEG, half HVG, deduplicated, filled to ``n``.

The default (:data:`~napari_scr2st.config.DEFAULT_PANEL_METHOD`) is the kind that measured best
across data (``benchmarks/bench_panel.py``, docs/benchmarks.md "Gene panel").
The detection filter matters on sparse platforms: on legacy ST (her2st) the unfiltered
dispersion ranking is dominated by genes that are zero in 75 % of spots, whose expression no
image model can predict (measured: ridge PCC on C6 0.028 unfiltered vs 0.038 with the 10 %
filter; see docs/benchmarks.md). Test spots never influence the panel, so a benchmark
cannot leak through gene choice. An explicit list of genes is accepted as is (checked against
``var_names``). The result is deterministic (stable sorts, no randomness).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import DEFAULT_PANEL_METHOD, PANEL_METHODS

__all__ = ["PANEL_METHODS", "select_panel"]


def select_panel(
    adata,
    train_mask,
    n_genes: int = 250,
    *,
    method: str = DEFAULT_PANEL_METHOD,
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
    if method not in PANEL_METHODS:
        raise ValueError(f"panel method must be one of {', '.join(PANEL_METHODS)}; got {method!r}")
    if int(n_genes) < 1:
        raise ValueError(f"n_genes must be >= 1, got {n_genes}")
    mask = np.asarray(train_mask, dtype=bool)
    if mask.shape != (adata.n_obs,):
        raise ValueError(f"train_mask must be a boolean mask of the {adata.n_obs} spots, got shape {mask.shape}")
    if mask.sum() < 2:
        raise ValueError("need at least 2 training spots to choose a gene panel")
    X = adata.X[mask]
    detected = np.asarray((X > 0).sum(axis=0)).ravel()
    need = max(min(min_spots, int(mask.sum())), int(np.ceil(min_frac * mask.sum())))
    keep = np.flatnonzero(detected >= need)
    if keep.size == 0:
        raise ValueError(f"no gene is detected in {need} or more of the {int(mask.sum())} training spots")
    logx = log1p_normalized(adata, rows=mask)[:, keep]
    names = np.asarray(adata.var_names)[keep]
    n = min(int(n_genes), keep.size)
    if method == "heg":
        order = _heg_rank(logx)[:n]
    elif method == "hvg":
        order = _hvg_rank(logx, names, adata.obs, mask, batch_key, n)[:n]
    else:
        n_heg = (n + 1) // 2
        first = _heg_rank(logx)[:n_heg]
        rest = _hvg_rank(logx, names, adata.obs, mask, batch_key, n - n_heg)
        rest = rest[~np.isin(rest, first)][: n - n_heg]
        order = np.concatenate([first, rest])
    chosen = set(names[order].tolist())
    return [str(g) for g in adata.var_names if g in chosen]


def _heg_rank(logx: np.ndarray) -> np.ndarray:
    """Candidate columns by decreasing mean expression (ties: ``var_names`` order)."""
    return np.argsort(-logx.mean(axis=0), kind="stable")


def _hvg_rank(
    logx: np.ndarray, names: np.ndarray, obs, mask: np.ndarray, batch_key, n: int
) -> np.ndarray:
    """Every candidate column, most variable first: scanpy's ``n`` highly variable genes, then
    by normalised dispersion (within-section counts first when batched), then by variance."""
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    var = logx.var(axis=0)
    if logx.shape[1] <= 1:
        return np.arange(logx.shape[1])
    obs_sub = pd.DataFrame(index=[str(i) for i in range(logx.shape[0])])
    if batch_key is not None and batch_key in obs and obs[batch_key][mask].nunique() > 1:
        obs_sub[batch_key] = obs[batch_key].astype(str).to_numpy()[mask]
    else:
        batch_key = None
    tmp = ad.AnnData(
        X=logx.astype(np.float32), obs=obs_sub, var=pd.DataFrame(index=names.astype(str))
    )
    n_top = int(min(max(n, 1), logx.shape[1]))
    sc.pp.highly_variable_genes(tmp, flavor="seurat", n_top_genes=n_top, batch_key=batch_key)
    hv = tmp.var["highly_variable"].to_numpy(dtype=bool)
    disp = tmp.var["dispersions_norm"].to_numpy(dtype=np.float64)
    disp = np.where(np.isfinite(disp), disp, -np.inf)
    nb = (tmp.var["highly_variable_nbatches"].to_numpy(dtype=np.float64)
          if "highly_variable_nbatches" in tmp.var else np.zeros(len(disp)))
    # np.lexsort: the LAST key is the primary one
    return np.lexsort((np.arange(len(var)), -var, -disp, -nb, ~hv))
