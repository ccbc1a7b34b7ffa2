"""Within-slide prediction: sequence part of THIS slide, predict the rest of THIS slide.

For each fully measured section (with a vision embedding in ``obsm["X_vision"]``), a fixed
random 20 % of the spots is the common test set (the same for every model, budget and seed;
never measured). From the other spots a random ``budget`` fraction is "sequenced" (seeded); the
gene panel (``n_genes`` most expressed) is chosen on those spots only. Models, all trained on
the sequenced spots of the section and scored on the test set:

- ``scr2net``: SCR2Net on the frozen embedding with its within-slide correction
  (``TrainConfig.spatial_residual``: :class:`~napari_scr2st.model.spatial.SpatialResidual` on
  out-of-fold residuals from ``folds`` refits);
- ``scr2net_histology``: the same SCR2Net without the spatial correction (histology only);
- ``ridge``: ridge regression (penalty by leave-one-out) on the standardised frozen embedding;
- ``knn``: the untrained cosine k-nearest-neighbour mean (k = 8) in the embedding;
- ``spatial_kernel``: kernel interpolation of the sequenced spots of the section (bandwidth and
  shrinkage to the mean chosen by leave-one-out on the sequenced spots).

Scores: per-gene Pearson correlation averaged over the panel (``pcc_all``) and over its 50 most
expressed genes in the test truth (``pcc_heg50``), and the MSE, on log1p-normalised counts.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import pandas as pd

from ..progress import Progress

__all__ = ["MODELS", "COLUMNS", "test_split", "iter_within_slide"]

MODELS = ("scr2net", "scr2net_histology", "ridge", "knn", "spatial_kernel")
COLUMNS = ["dataset", "test_section", "model", "budget", "seed", "pcc_all", "pcc_heg50", "mse", "n_train", "n_test"]


def test_split(adata, frac: float = 0.2, *, salt: int = 20261201) -> np.ndarray:
    """The fixed test mask of a section (seeded by its name, the same for every run)."""
    import zlib

    name = str(adata.obs["section"].iloc[0]) if "section" in adata.obs else "section"
    rng = np.random.default_rng([zlib.crc32(name.encode()), salt])
    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[rng.choice(adata.n_obs, int(round(frac * adata.n_obs)), replace=False)] = True
    return mask


def _scores(y_true: np.ndarray, y_pred: np.ndarray, genes: Sequence[str]) -> dict[str, float]:
    from ..evaluation.metrics import regression_metrics

    m = regression_metrics(y_true, y_pred, list(genes), n_top=50)
    return {"pcc_all": float(m["pcc_all"]), "pcc_heg50": float(m["pcc_heg50"]), "mse": float(m["mse"])}


def _standardise(V: np.ndarray, rows: np.ndarray) -> np.ndarray:
    mu, sd = V[rows].mean(axis=0), V[rows].std(axis=0)
    return (V - mu) / np.where(sd > 1e-8, sd, 1.0)


def _ridge(V, train, Y) -> np.ndarray:
    from sklearn.linear_model import RidgeCV

    Z = _standardise(V, train)
    return RidgeCV(alphas=np.logspace(-1, 5, 13)).fit(Z[train], Y).predict(Z)


def _knn(V, train, Y, k: int = 8) -> np.ndarray:
    Z = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    S = Z @ Z[train].T
    own = np.flatnonzero(train)
    S[own, np.arange(len(own))] = -np.inf  # a sequenced spot never retrieves itself
    k = min(k, max(1, len(own) - 1))
    nn = np.argpartition(-S, k - 1, axis=1)[:, :k]
    return Y[nn].mean(axis=1)


def _scr2net_predict(adata, train_idx: np.ndarray, genes, *, epochs: int, seed: int, spatial: bool,
                     folds: int) -> np.ndarray:
    from ..config import TrainConfig
    from ..model import SCR2NetPredictor

    mask = np.zeros(adata.n_obs, dtype=bool)
    mask[train_idx] = True
    cfg = TrainConfig(epochs=epochs, genes=list(genes), seed=seed, batch_size=32, cell_type_key=None,
                      spatial_residual=spatial, spatial_folds=folds)
    return SCR2NetPredictor(cfg).fit(adata, mask).predict(adata).astype(np.float64)


def iter_within_slide(sections: dict, *, budgets: Sequence[float] = (0.1, 0.15, 0.3), seeds: Sequence[int] = (0, 1, 2),
                      n_genes: int = 250, epochs: int = 30, folds: int = 3, dataset: str = "her2st",
                      models: Sequence[str] = MODELS) -> Generator[Progress, None, pd.DataFrame]:
    """Run the protocol of the module docstring; yields progress, returns the tidy table."""
    from ..data.expression import log1p_normalized
    from ..data.model import SPATIAL_KEY
    from ..model.panel import select_panel
    from ..model.spatial import SpatialResidual, spot_pitch

    rows = []
    total = len(sections) * len(budgets) * len(seeds)
    step = 0
    for name, a in sections.items():
        a = a.copy()
        test = test_split(a)
        pool = np.flatnonzero(~test)
        V = np.asarray(a.obsm["X_vision"], dtype=np.float64)
        xy = np.asarray(a.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
        secs = np.full(a.n_obs, name)
        pitch = spot_pitch(xy)
        for budget in budgets:
            for seed in seeds:
                rng = np.random.default_rng([seed, 7])
                n_tr = max(8, int(round(budget * len(pool))))
                train_idx = np.sort(rng.choice(pool, min(n_tr, len(pool)), replace=False))
                train = np.zeros(a.n_obs, dtype=bool)
                train[train_idx] = True
                genes = select_panel(a, train, n_genes, method="heg")
                Y_tr = log1p_normalized(a, genes, rows=train_idx)
                Y_te = log1p_normalized(a, genes, rows=test)
                preds: dict[str, np.ndarray] = {}
                if "ridge" in models:
                    preds["ridge"] = _ridge(V, train, Y_tr)
                if "knn" in models:
                    preds["knn"] = _knn(V, train, Y_tr)
                ids = np.asarray(a.obs_names).astype(str)
                xy_m, secs_m, ids_m = xy[train_idx], secs[train_idx], ids[train_idx]
                if "spatial_kernel" in models:
                    resid = Y_tr - Y_tr.mean(axis=0)
                    sk = SpatialResidual(pitch=pitch).fit(xy_m, secs_m, ids_m, resid)
                    preds["spatial_kernel"] = Y_tr.mean(axis=0) + sk.correction(xy, secs, ids, xy_m, secs_m, ids_m, resid)
                if "scr2net_histology" in models:
                    preds["scr2net_histology"] = _scr2net_predict(a, train_idx, genes, epochs=epochs, seed=seed,
                                                                  spatial=False, folds=folds)
                if "scr2net" in models:
                    preds["scr2net"] = _scr2net_predict(a, train_idx, genes, epochs=epochs, seed=seed, spatial=True,
                                                        folds=folds)
                for model, P in preds.items():
                    if model not in models:
                        continue
                    rows.append({"dataset": dataset, "test_section": name, "model": model, "budget": float(budget),
                                 "seed": int(seed), **_scores(Y_te, np.asarray(P)[test], genes),
                                 "n_train": int(train.sum()), "n_test": int(test.sum())})
                step += 1
                yield Progress(step, total, f"{name} {budget:.0%} seed {seed}")
    return pd.DataFrame(rows, columns=COLUMNS)
