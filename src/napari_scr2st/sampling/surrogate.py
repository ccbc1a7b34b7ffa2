"""The samplers' surrogate of expression: fast predictors trained on the measured spots.

The reward-aware samplers (greedy maximiser, SCRL) score candidates on PREDICTED expression.
:class:`RidgePredictor` implements :class:`napari_scr2st.model.protocol.ExpressionPredictor`:
vision embedding (standardised, PCA-reduced) + section-normalised coordinates -> log1p panel,
by ridge regression with the penalty chosen by efficient leave-one-out (``RidgeCV``).
``fit`` reads counts ONLY of ``train_mask`` rows; ``predict`` reads no counts.

:class:`SpacePredictor` turns "predict expression of every spot, then project into the
reference space" into one object used by the samplers. With no user predictor it regresses the
reference-space coordinates of the measured spots directly on the same design: for a ridge
this is the same as predicting the space's genes and projecting (the projection is affine and
ridge solutions are linear in the targets; only the ``max_value`` clip of the scaling differs,
and it is rarely active), and it is ``n_genes / n_dims`` times cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.expression import log1p_normalized
from ..data.model import SPATIAL_KEY, VISION_KEY

__all__ = ["RidgePredictor", "SpacePredictor", "design_matrix"]

_ALPHAS = np.logspace(-1, 4, 11)


def design_matrix(vision: np.ndarray | None, coords: np.ndarray, sections: np.ndarray, *, n_components: int = 32) -> np.ndarray:
    """Features for the ridge: standardised PCA of the vision embedding + normalised coords.

    Coordinates are centred and scaled per section (RMS radius), so the design is comparable
    across sections. Uses no expression.
    """
    coords = np.asarray(coords, dtype=np.float64)[:, :2]
    sections = np.asarray(sections).astype(str)
    xy = np.zeros_like(coords)
    for s in np.unique(sections):
        m = sections == s
        c = coords[m] - coords[m].mean(axis=0)
        r = np.sqrt((c**2).sum(axis=1).mean()) or 1.0
        xy[m] = c / r
    parts = [xy]
    if vision is not None:
        V = np.asarray(vision, dtype=np.float64)
        sd = V.std(axis=0)
        V = (V - V.mean(axis=0)) / np.where(sd > 1e-8, sd, 1.0)
        k = int(min(n_components, V.shape[1], max(1, V.shape[0] - 1)))
        if k < V.shape[1]:
            from sklearn.decomposition import PCA

            V = PCA(n_components=k, random_state=0, svd_solver="full" if len(V) <= 5000 else "randomized").fit_transform(V)
            V /= V[:, :1].std() or 1.0
        parts.append(V)
    return np.concatenate(parts, axis=1).astype(np.float64)


def _ridge(X: np.ndarray, Y: np.ndarray):
    from sklearn.linear_model import Ridge, RidgeCV

    if len(X) >= 3:
        return RidgeCV(alphas=_ALPHAS).fit(X, Y)
    return Ridge(alpha=10.0).fit(X, Y)


class RidgePredictor:
    """Ridge regression vision (+ coordinates) -> log1p-normalised expression of ``genes``.

    Implements the ``ExpressionPredictor`` protocol. The design (:func:`design_matrix`) is built
    from ``adata.obsm[vision_key]`` and ``obsm['spatial']`` of ALL rows (no expression), so the
    PCA of the vision embedding may use unmeasured spots; the targets use counts of
    ``train_mask`` rows only.
    """

    def __init__(self, genes: Sequence[str], *, vision_key: str = VISION_KEY, n_components: int = 32) -> None:
        self.genes = [str(g) for g in genes]
        self.vision_key = vision_key
        self.n_components = n_components
        self._model = None

    def _design(self, adata) -> np.ndarray:
        vision = adata.obsm[self.vision_key] if self.vision_key in adata.obsm else None
        sections = adata.obs["section"].astype(str).to_numpy() if "section" in adata.obs else np.zeros(adata.n_obs, str)
        return design_matrix(vision, adata.obsm[SPATIAL_KEY], sections, n_components=self.n_components)

    def fit(self, adata, train_mask: np.ndarray) -> RidgePredictor:
        m = np.asarray(train_mask, dtype=bool)
        if m.shape != (adata.n_obs,):
            raise ValueError(f"train_mask must have {adata.n_obs} entries")
        if m.sum() < 2:
            raise ValueError(f"RidgePredictor needs at least 2 measured spots, got {int(m.sum())}")
        Y = log1p_normalized(adata, self.genes, rows=m)  # counts of training rows ONLY
        X = self._design(adata)
        self._model = _ridge(X[m], Y)
        return self

    def predict(self, adata) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("RidgePredictor.predict called before fit")
        return np.asarray(self._model.predict(self._design(adata)), dtype=np.float32)


class SpacePredictor:
    """Predicted reference-space coordinates of every pool spot from the measured spots.

    ``__call__(pool, state, measured_z)`` returns ``(n_pool, dims)`` or ``None`` when fewer than
    ``min_train`` spots are measured. ``predictor``: an optional ``ExpressionPredictor`` factory
    (``callable(genes) -> predictor``); its predictions of the space's genes are projected with
    the space. Without it, a ridge maps the design to the measured spots' coordinates (see
    module docstring). Reads only the pool (no expression) and the measured spots' data.
    """

    def __init__(self, space, predictor=None, *, min_train: int = 5, n_components: int = 32) -> None:
        self.space = space
        self.predictor = predictor
        self.min_train = min_train
        self.n_components = n_components

    def design(self, pool) -> np.ndarray:
        key = f"design_{self.n_components}"
        if key not in pool._cache:
            pool._cache[key] = design_matrix(pool.vision, pool.coords, pool.sections, n_components=self.n_components)
        return pool._cache[key]

    def __call__(self, pool, state, measured_index: np.ndarray, measured_z: np.ndarray) -> np.ndarray | None:
        if len(measured_index) < self.min_train:
            return None
        if self.predictor is None:
            X = self.design(pool)
            model = _ridge(X[measured_index], np.asarray(measured_z, dtype=np.float64))
            return np.asarray(model.predict(X), dtype=np.float32)
        if not self.space.is_gene_space:
            raise ValueError("a gene-expression predictor needs a PCA reference space (not an obsm-key space)")
        adata = pool.training_adata(state)
        mask = np.zeros(pool.n, dtype=bool)
        mask[measured_index] = True
        pred = self.predictor(self.space.genes) if callable(self.predictor) and not hasattr(self.predictor, "fit") else self.predictor
        pred.fit(adata, mask)
        Y = np.asarray(pred.predict(adata), dtype=np.float32)
        genes = list(pred.genes)
        if genes != list(self.space.genes):
            # align: genes the predictor lacks get the reference mean (0 after centring)
            import pandas as pd

            gi = pd.Index(genes).get_indexer(self.space.genes)
            full = np.tile(self.space.mean, (len(Y), 1)).astype(np.float32)
            ok = gi >= 0
            full[:, ok] = Y[:, gi[ok]]
            Y = full
        return self.space.transform(Y)
