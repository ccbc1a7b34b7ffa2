"""Metrics of predicted expression against measured truth (log1p-normalised scale).

All functions take dense ``(n_spots, n_genes)`` arrays on ONE scale, that of
:func:`napari_scr2st.data.expression.log1p_normalized`, and compare them gene by gene.

Conventions (chosen so that no model is rewarded for saying nothing):

- **PCC per gene** is Pearson's r between truth and prediction across the spots of the test set,
  then averaged over genes.
- A gene whose TRUTH is constant over the test spots (e.g. never detected there) has no signal to
  correlate: its r is NaN and it is LEFT OUT of every mean; ``n_genes_scored`` says how many
  genes were averaged. (Such genes also fall to the bottom of the HEG/HVG rankings.)
- A gene whose PREDICTION is constant while the truth varies gets r = 0 (the model carries no
  information about it), not NaN, so a degenerate predictor cannot drop its hard genes.
- **Top-50 HEG / HVG** are the genes with the highest mean / variance of the TEST truth
  (log1p scale), ties broken by panel order; the sets are defined by the truth, never by the
  prediction, so every model is scored on the same genes.
- **MSE / MAE** are averaged over all spots and all panel genes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "pearson_per_gene",
    "top_genes",
    "regression_metrics",
    "evaluate_adata",
    "METRIC_KEYS",
    "format_metrics_table",
]

METRIC_KEYS = ("pcc_all", "pcc_heg50", "pcc_hvg50", "mse", "mae")

_EPS = 1e-12


def _as_2d(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (spots x genes), got shape {a.shape}")
    return a


def pearson_per_gene(y_true, y_pred) -> np.ndarray:
    """Pearson r per gene (column) across spots (rows); see the module docstring for NaN rules.

    Returns a float64 array of length ``n_genes``: NaN where the truth is constant (or fewer
    than 2 spots), 0 where only the prediction is constant.
    """
    t = _as_2d(y_true, "y_true")
    p = _as_2d(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"shape mismatch: truth {t.shape} vs prediction {p.shape}")
    n = t.shape[0]
    if n < 2:
        return np.full(t.shape[1], np.nan)
    tc = t - t.mean(axis=0)
    pc = p - p.mean(axis=0)
    st = np.sqrt((tc**2).sum(axis=0))
    spred = np.sqrt((pc**2).sum(axis=0))
    cov = (tc * pc).sum(axis=0)
    truth_const = st <= _EPS * max(1.0, float(np.abs(t).max(initial=0.0)))
    pred_const = spred <= _EPS * max(1.0, float(np.abs(p).max(initial=0.0)))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / (st * spred)
    r = np.where(pred_const, 0.0, r)
    r = np.where(truth_const, np.nan, r)
    return np.clip(r, -1.0, 1.0)


def top_genes(y_true, n: int = 50, by: str = "mean") -> np.ndarray:
    """Column indices of the ``n`` genes with the highest ``mean`` or ``var`` of the truth.

    Ties are broken by column order (stable sort), so the result is deterministic.
    """
    t = _as_2d(y_true, "y_true")
    if by == "mean":
        score = t.mean(axis=0)
    elif by in ("var", "variance"):
        score = t.var(axis=0)
    else:
        raise ValueError(f"by must be 'mean' or 'var', got {by!r}")
    order = np.argsort(-score, kind="stable")
    return order[: min(n, t.shape[1])]


def regression_metrics(
    y_true,
    y_pred,
    genes: Sequence[str] | None = None,
    *,
    n_top: int = 50,
    per_gene: bool = False,
) -> dict:
    """PCC (all / top-``n_top`` HEG / top-``n_top`` HVG), MSE and MAE of a prediction.

    Keys: ``pcc_all``, ``pcc_heg50``, ``pcc_hvg50`` (the suffix is always "50" in the key names
    for a stable JSON format; ``n_top`` is reported), ``mse``, ``mae``, ``n_spots``, ``n_genes``,
    ``n_genes_scored`` (genes with a defined PCC), ``n_top``; with ``per_gene`` also
    ``pcc_per_gene`` (a dict gene -> r, NaN as None) when ``genes`` is given.
    """
    t = _as_2d(y_true, "y_true")
    p = _as_2d(y_pred, "y_pred")
    r = pearson_per_gene(t, p)

    def _mean(idx) -> float:
        v = r[idx]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    out = {
        "pcc_all": _mean(np.arange(t.shape[1])),
        "pcc_heg50": _mean(top_genes(t, n_top, "mean")),
        "pcc_hvg50": _mean(top_genes(t, n_top, "var")),
        "mse": float(np.mean((t - p) ** 2)) if t.size else float("nan"),
        "mae": float(np.mean(np.abs(t - p))) if t.size else float("nan"),
        "n_spots": int(t.shape[0]),
        "n_genes": int(t.shape[1]),
        "n_genes_scored": int(np.isfinite(r).sum()),
        "n_top": int(n_top),
    }
    if per_gene:
        names = list(genes) if genes is not None else [str(i) for i in range(t.shape[1])]
        out["pcc_per_gene"] = {
            g: (None if not np.isfinite(v) else float(v)) for g, v in zip(names, r, strict=True)
        }
    return out


def evaluate_adata(
    adata,
    mask=None,
    *,
    pred_key: str = "X_pred",
    truth=None,
    n_top: int = 50,
    per_gene: bool = False,
) -> dict:
    """Score ``adata.obsm[pred_key]`` (a DataFrame with gene columns) against measured truth.

    ``mask`` selects the evaluated spots (e.g. the unmeasured / test spots; default all).
    ``truth`` is an optional AnnData holding the measured counts (default ``adata`` itself);
    rows are matched by ``obs_names``. Truth is ``log1p_normalized`` of the panel genes.
    """
    import pandas as pd

    from ..data.expression import log1p_normalized

    pred = adata.obsm[pred_key]
    if not isinstance(pred, pd.DataFrame):
        raise TypeError(f"obsm[{pred_key!r}] must be a DataFrame with gene columns")
    genes = [str(g) for g in pred.columns]
    rows = np.ones(adata.n_obs, dtype=bool) if mask is None else np.asarray(mask)
    if rows.dtype != bool:
        m = np.zeros(adata.n_obs, dtype=bool)
        m[rows] = True
        rows = m
    src = adata if truth is None else truth
    names = adata.obs_names[rows]
    if src is adata:
        y_true = log1p_normalized(adata, genes, rows=rows)
    else:
        pos = src.obs_names.get_indexer(names)
        if (pos < 0).any():
            raise KeyError(
                f"{int((pos < 0).sum())} evaluated spots are missing from the truth data"
            )
        y_true = log1p_normalized(src, genes, rows=pos)
    y_pred = pred.to_numpy(dtype=np.float64)[rows]
    return regression_metrics(y_true, y_pred, genes, n_top=n_top, per_gene=per_gene)


def format_metrics_table(rows: dict[str, dict], keys: Sequence[str] = METRIC_KEYS) -> str:
    """A plain-text table: one row per name, columns ``keys`` (values ``x`` or ``mean±sd``)."""
    head = ["name", *keys]
    lines = []
    for name, m in rows.items():
        cells = [str(name)]
        for k in keys:
            v = m.get(k, float("nan"))
            if isinstance(v, (tuple, list)) and len(v) == 2:
                cells.append(f"{v[0]:.3f}±{v[1]:.3f}")
            else:
                cells.append(f"{float(v):.3f}")
        lines.append(cells)
    widths = [max(len(r[i]) for r in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*r) for r in lines)])
