"""The ``ExpressionPredictor`` protocol (structural typing only): what every expression predictor
offers, SCR2Net (:class:`~napari_scr2st.model.predictor.SCR2NetPredictor`) and the samplers'
ridge surrogate (:class:`~napari_scr2st.sampling.surrogate.RidgePredictor`) alike."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ExpressionPredictor(Protocol):
    """Predicts log1p-normalised expression (see ``data.expression``) of a gene panel.

    ``fit`` may read the counts ``adata.X`` ONLY of rows where ``train_mask`` is True (the
    sequenced spots); ``predict`` reads no counts at all (histology features, location).
    """

    genes: list[str]

    def fit(self, adata, train_mask: np.ndarray) -> ExpressionPredictor: ...

    def predict(self, adata) -> np.ndarray:
        """(n_obs, len(genes)) float32 on the log1p-normalised scale."""
        ...
