"""SCR2Net, the expression predictor: model, losses, training engine, prediction, inspection.

Importing this package does NOT import torch (napari must start fast): the public names are
resolved lazily on first access (PEP 562). Modules that need torch are imported only then.

Public API
----------
- :class:`TrainConfig`, :func:`iter_train`, :class:`TrainResult` (``.train``; ``train.train`` runs it)
- :class:`SCR2NetPredictor` (``.predictor``): ``fit`` / ``predict`` / ``save`` / ``load``
- :func:`predict_expression`, :func:`iter_predict_expression` (``.predictor``): predictions into an AnnData
- :func:`inspect_spot`, :class:`SpotInspection` (``.inspect``)
- :func:`select_panel` (``.panel``), :func:`adaptive_resampling_weights` (``.resampling``)
- :class:`SCR2Net` (``.scr2net``), :func:`energy_distance`, :func:`clip_loss` (``.losses``)
"""

from __future__ import annotations

import importlib

_LAZY = {
    "TrainConfig": ".train",
    "TrainResult": ".train",
    "TrainData": ".train",
    "iter_train": ".train",
    "SCR2NetPredictor": ".predictor",
    "predict_expression": ".predictor",
    "iter_predict_expression": ".predictor",
    "inspect_spot": ".inspect",
    "SpotInspection": ".inspect",
    "Neighbour": ".inspect",
    "select_panel": ".panel",
    "adaptive_resampling_weights": ".resampling",
    "SCR2Net": ".scr2net",
    "energy_distance": ".losses",
    "ExpressionPredictor": ".protocol",
    "clip_loss": ".losses",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
