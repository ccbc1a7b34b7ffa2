"""Interfaces shared by the sampling and model packages (structural typing only)."""

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
