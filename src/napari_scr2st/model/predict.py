"""Write predictions (and MC-dropout uncertainty) of a trained predictor into an AnnData.

Storage (chosen to keep ONE AnnData per section, as the rest of the package does):

- ``adata.obsm["X_pred"]``: ``pandas.DataFrame`` (index ``obs_names``, columns = panel genes),
  the final prediction on the log1p-normalised scale (deterministic pass, no dropout);
- ``adata.obsm["X_pred_sd"]``: same shape, per-spot per-gene standard deviation over ``T``
  MC-dropout passes (dropout on, everything else in eval mode; in retrieval-augmented modes the
  retrieved neighbours may change between passes, which is part of the uncertainty);
- ``adata.obs["pred_uncertainty"]``: the mean of ``X_pred_sd`` over genes;
- ``adata.uns["scr2st_prediction"]``: ``genes``, ``mode``, ``k``, ``m``, ``alpha``,
  ``mc_samples``, ``n_bank`` (measured spots in the memory bank) and ``config`` (JSON string).

With ``mc_samples=0`` no uncertainty is written.
"""

from __future__ import annotations

import json
from collections.abc import Generator

import numpy as np

from .._engine import CancelToken, Progress

__all__ = [
    "iter_predict_expression",
    "predict_expression",
    "PRED_KEY",
    "SD_KEY",
    "UNCERTAINTY_KEY",
    "UNS_KEY",
]

PRED_KEY = "X_pred"
SD_KEY = "X_pred_sd"
UNCERTAINTY_KEY = "pred_uncertainty"
UNS_KEY = "scr2st_prediction"


def iter_predict_expression(
    predictor,
    adata,
    *,
    mc_samples: int = 20,
    k: int | None = None,
    m: int | None = None,
    alpha: float | None = None,
    cancel: CancelToken | None = None,
    key: str = PRED_KEY,
) -> Generator[Progress, None, object]:
    """Progress generator of :func:`predict_expression` (one event per pass); returns ``adata``.

    Cancelling during the MC passes keeps the prediction and writes no uncertainty.
    """
    import pandas as pd

    inputs = predictor.image_inputs(adata)
    total = 1 + max(0, int(mc_samples))
    kw = dict(k=k, m=m, alpha=alpha, inputs=inputs)
    pred = predictor.infer(adata, **kw).final
    yield Progress(1, total, "prediction")
    samples = []
    for t in range(int(mc_samples)):
        if cancel is not None and cancel.cancelled:
            samples = []
            break
        samples.append(predictor.infer(adata, mc_dropout=True, **kw).final)
        yield Progress(2 + t, total, f"MC-dropout pass {t + 1}/{mc_samples}")
    genes = [str(g) for g in predictor.genes]
    adata.obsm[key] = pd.DataFrame(
        pred.astype(np.float32), index=adata.obs_names.copy(), columns=genes
    )
    if samples:
        sd = np.std(np.stack(samples), axis=0).astype(np.float32)
        adata.obsm[SD_KEY if key == PRED_KEY else f"{key}_sd"] = pd.DataFrame(
            sd, index=adata.obs_names.copy(), columns=genes
        )
        adata.obs[UNCERTAINTY_KEY] = sd.mean(axis=1)
    cfg = predictor.config
    adata.uns[UNS_KEY] = {
        "genes": genes,
        "mode": cfg.mode,
        "k": int(cfg.k if k is None else k),
        "m": int(cfg.m if m is None else m),
        "alpha": float(cfg.alpha if alpha is None else alpha),
        "mc_samples": len(samples),
        "n_bank": int(len(predictor.bank.expr)) if predictor.bank is not None else 0,
        "config": json.dumps(cfg.to_dict()),
    }
    return adata


def predict_expression(predictor, adata, **kwargs):
    """Predict the panel for every spot of ``adata`` and store it (see the module docstring)."""
    from .._engine import drive

    return drive(iter_predict_expression(predictor, adata, **kwargs), use_tqdm=False)
