"""``SCR2NetPredictor`` and its predictions written into an AnnData.

:class:`SCR2NetPredictor` is the trained model as an
:class:`~napari_scr2st.model.protocol.ExpressionPredictor`:
``fit(adata, train_mask)`` trains with :func:`.train.iter_train` (``iter_fit`` is the same as a
progress generator for the GUI) and keeps the memory bank of ALL measured spots (expression of
the panel, cell types, spot keys). ``predict(adata)`` reads no counts: only the image inputs
(the frozen embedding or, after fine-tuning, crops of the image). A query spot that is itself
in the bank never retrieves itself (keys ``"{section}|{obs_name}"``), so predictions on
measured spots are what the model says without their own measurement. The computation itself is
:func:`.inference.run_inference`, shared with training-time validation and :mod:`.inspect`.

``save(path)`` writes one ``torch.save`` file holding only tensors and plain values (loadable
with ``weights_only=True``): network weights and constructor arguments, config, panel, bank
and history. ``load(path)`` restores it.

:func:`predict_expression` (:func:`iter_predict_expression` as a progress generator) writes the
predictions (and MC-dropout uncertainty) of a predictor into an AnnData.
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..device import pick_device
from ..progress import CancelToken, Progress, drive
from .inference import Bank, InferenceOutput, run_inference
from .inputs import as_index, crop_inputs, embedding_inputs, spot_keys
from .train import TrainConfig, TrainResult, build_net, iter_train, metrics_record, plain

__all__ = [
    "SCR2NetPredictor",
    "iter_predict_expression",
    "predict_expression",
    "PRED_KEY",
    "SD_KEY",
    "UNCERTAINTY_KEY",
    "UNS_KEY",
]

SAVE_FORMAT = "scr2st-predictor"
SAVE_VERSION = 1


class SCR2NetPredictor:
    """Train, apply, save and load SCR2Net; see the module docstring.

    Construct with a :class:`TrainConfig` or keyword overrides of its fields, e.g.
    ``SCR2NetPredictor(mode="regression", epochs=20, device="cpu")``.
    """

    def __init__(self, config: TrainConfig | None = None, **overrides: Any) -> None:
        self.config = (config or TrainConfig()).replace(**overrides).validate()
        self.genes: list[str] = []
        self.net = None
        self.bank: Bank | None = None
        self.type_names: list[str] = []
        self.history: list[dict[str, float]] = []
        self.result: TrainResult | None = None
        self.device = None
        self.spatial: dict | None = None  # the within-slide correction (see _iter_fit_spatial)

    # ------------------------------------------------------------------ training
    def iter_fit(
        self,
        adata,
        train_mask,
        cancel: CancelToken | None = None,
        resume_from: str | Path | None = None,
    ) -> Generator[Progress, None, SCR2NetPredictor]:
        """Progress generator of :meth:`fit` (returns ``self``)."""
        result = yield from iter_train(
            adata, train_mask, self.config, cancel=cancel, resume_from=resume_from
        )
        self._from_result(result)
        if self.config.spatial_residual and not self.config.fine_tune and not result.cancelled:
            yield from self._iter_fit_spatial(adata, result.data, cancel=cancel)
        return self

    def _iter_fit_spatial(self, adata, data, *, cancel: CancelToken | None = None) -> Generator[Progress, None, None]:
        """The within-slide correction (:mod:`.spatial`): out-of-fold predictions of the measured
        spots from ``spatial_folds`` refits on the other folds, residuals, bandwidth and
        shrinkage by leave-one-out. Too few measured spots (< 10): no correction."""
        from ..data.model import SPATIAL_KEY
        from .spatial import SpatialResidual, spot_pitch

        self.spatial = None
        rows = np.asarray(data.rows, dtype=np.int64)
        folds = int(self.config.spatial_folds)
        if len(rows) < max(10, 2 * folds) or SPATIAL_KEY not in adata.obsm:
            return
        Y = np.asarray(data.targets, dtype=np.float64)
        fold_of = np.random.default_rng([int(self.config.seed), 11]).permutation(len(rows)) % folds
        oof = np.empty_like(Y)
        cfg = self.config.replace(spatial_residual=False, genes=list(self.genes), checkpoint_dir=None)
        for k in range(folds):
            inner = np.zeros(adata.n_obs, dtype=bool)
            inner[rows[fold_of != k]] = True
            sub = SCR2NetPredictor(cfg)
            for _ in sub.iter_fit(adata, inner, cancel=cancel):
                pass
            if cancel is not None and cancel.cancelled:
                return
            held = rows[fold_of == k]
            oof[fold_of == k] = sub.infer(adata, held).final
            yield Progress(k + 1, folds, f"spatial residuals: fold {k + 1}/{folds}")
        xy_all = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[:, :2]
        secs_all = _section_names(adata)
        pitches = [spot_pitch(xy_all[secs_all == s]) for s in np.unique(secs_all[rows])]
        resid = Y - oof
        model = SpatialResidual(pitch=float(np.median(pitches))).fit(
            xy_all[rows], secs_all[rows], spot_keys(adata, rows), resid)
        self.spatial = {"model": model, "xy": xy_all[rows], "sections": secs_all[rows],
                        "keys": spot_keys(adata, rows), "resid": resid.astype(np.float32)}

    def spatial_correction(self, adata, rows: np.ndarray | None = None) -> np.ndarray | None:
        """The additive within-slide correction of ``rows`` (all spots if None), or None when
        the predictor has none; zero for spots of sections without measured spots."""
        sp = self.spatial
        if not sp or not np.isfinite(sp["model"].shrinkage):
            return None
        from ..data.model import SPATIAL_KEY

        r = np.arange(adata.n_obs) if rows is None else as_index(rows, adata.n_obs)
        xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[r, :2]
        return sp["model"].correction(xy, _section_names(adata)[r], spot_keys(adata, r), sp["xy"], sp["sections"],
                                      sp["keys"], sp["resid"])

    def fit(
        self, adata, train_mask, *, cancel: CancelToken | None = None, resume_from=None
    ) -> SCR2NetPredictor:
        """Train on the spots of ``train_mask`` (reads their counts only)."""
        return drive(
            self.iter_fit(adata, train_mask, cancel=cancel, resume_from=resume_from), use_tqdm=False
        )

    def _from_result(self, result: TrainResult) -> None:
        self.result = result
        self.config = result.config
        self.net = result.net
        self.genes = list(result.data.panel)
        self.type_names = list(result.data.type_names)
        d = result.data
        self.bank = Bank(
            torch.as_tensor(d.targets),
            None if d.types is None else torch.as_tensor(d.types),
            np.asarray(d.keys),
        )
        self.history = list(result.history)
        self.device = None

    def _check(self) -> None:
        if self.net is None:
            raise RuntimeError("the predictor is not trained: call fit() or load()")

    def _device(self):
        if self.device is None:
            self.device = pick_device(self.config.device)
            self.net.to(self.device)
        return self.device

    # ------------------------------------------------------------------ inference
    def image_inputs(self, adata, rows: np.ndarray | None = None) -> np.ndarray:
        """The image inputs of ``rows`` (all spots if None): embedding or crops."""
        if self.config.fine_tune:
            r = np.arange(adata.n_obs) if rows is None else np.asarray(rows)
            return crop_inputs(adata, r, self.config.crop_px, self.config.image_size)
        return embedding_inputs(adata, rows, self.config.embedding_key)

    def exclusion(self, adata, rows: np.ndarray | None = None) -> np.ndarray:
        """Bank row of each query spot that is itself measured (-1 otherwise)."""
        keys = spot_keys(adata, rows)
        lut = (
            {str(k): i for i, k in enumerate(self.bank.keys)}
            if self.bank is not None and self.bank.keys is not None
            else {}
        )
        return np.array([lut.get(str(k), -1) for k in keys], dtype=np.int64)

    def infer(
        self,
        adata,
        rows=None,
        *,
        k: int | None = None,
        m: int | None = None,
        alpha: float | None = None,
        return_neighbours: bool = False,
        mc_dropout: bool = False,
        inputs: np.ndarray | None = None,
        exclude_self: bool = True,
        retrieve_always: bool = False,
    ) -> InferenceOutput:
        """Everything the model computes for ``rows`` (default all): see :func:`.inference.run_inference`.

        ``k``, ``m`` and ``alpha`` override the trained settings without retraining.
        """
        self._check()
        r = None if rows is None else as_index(rows, adata.n_obs)
        x = self.image_inputs(adata, r) if inputs is None else inputs
        return run_inference(
            self.net,
            x,
            self.bank,
            mode=self.config.mode,
            k=self.config.k if k is None else int(k),
            m=self.config.m if m is None else int(m),
            alpha=self.config.alpha if alpha is None else float(alpha),
            device=self._device(),
            exclude=self.exclusion(adata, r) if exclude_self else None,
            return_neighbours=return_neighbours,
            mc_dropout=mc_dropout,
            retrieve_always=retrieve_always,
        )

    def predict(
        self, adata, *, k: int | None = None, m: int | None = None, alpha: float | None = None
    ) -> np.ndarray:
        """(n_obs, len(genes)) float32 log1p-normalised expression, with the within-slide
        correction where the section has measured spots; reads no counts of ``adata``."""
        out = self.infer(adata, k=k, m=m, alpha=alpha).final.astype(np.float32)
        corr = self.spatial_correction(adata)
        return out if corr is None else out + corr

    def metrics(self) -> dict[str, Any]:
        """The training metrics record (same format as ``metrics.json``)."""
        if self.result is None:
            return {"history": self.history, "config": self.config.to_dict()}
        return metrics_record(self.result)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        self._check()
        net = self.net
        return {
            "format": SAVE_FORMAT,
            "version": SAVE_VERSION,
            "config": plain(self.config.to_dict()),
            "in_dim": int(net.in_dim),
            "genes": [str(g) for g in self.genes],
            "model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "bank_expr": self.bank.expr.cpu(),
            "bank_types": None if self.bank.types is None else self.bank.types.cpu(),
            "bank_keys": [str(k) for k in self.bank.keys],
            "type_names": [str(t) for t in self.type_names],
            "history": plain(self.history),
            "spatial": _spatial_state(self.spatial),
        }

    def save(self, path: str | Path) -> Path:
        """Write the trained predictor atomically to ``path`` (a ``.pt`` file)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)
        return path

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> SCR2NetPredictor:
        """Load a predictor written by :meth:`save` (``device`` overrides the saved choice)."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        st = torch.load(path, map_location="cpu", weights_only=True)
        if st.get("format") != SAVE_FORMAT:
            raise ValueError(f"{path} is not a saved SCR2Net predictor")
        config = TrainConfig.from_dict(st["config"])
        if device is not None:
            config = config.replace(device=device)
        self = cls(config)
        # a fine-tuned backbone's weights are in the state dict: no need for pretrained ones
        net = build_net(config, st["in_dim"], len(st["genes"]), pretrained=False)
        net.load_state_dict(st["model"])
        net.eval()
        self.net = net
        self.genes = list(st["genes"])
        self.bank = Bank(st["bank_expr"], st["bank_types"], np.asarray(st["bank_keys"]))
        self.type_names = list(st["type_names"])
        self.history = list(st["history"])
        self.spatial = _spatial_from_state(st.get("spatial"))
        return self


def _section_names(adata) -> np.ndarray:
    from ..data.model import SECTION_KEY

    if SECTION_KEY in adata.obs:
        return adata.obs[SECTION_KEY].astype(str).to_numpy()
    return np.full(adata.n_obs, "")


def _spatial_state(sp: dict | None) -> dict | None:
    """The within-slide correction as tensors and plain values (``torch.load(weights_only=True)``)."""
    if not sp:
        return None
    m = sp["model"]
    return {"bandwidth": float(m.bandwidth), "shrinkage": float(m.shrinkage), "pitch": float(m.pitch or 1.0),
            "loo_mse": float(m.loo_mse), "base_loo_mse": float(m.base_loo_mse),
            "xy": torch.as_tensor(np.asarray(sp["xy"], dtype=np.float64)),
            "sections": [str(x) for x in sp["sections"]], "keys": [str(x) for x in sp["keys"]],
            "resid": torch.as_tensor(np.asarray(sp["resid"], dtype=np.float32))}


def _spatial_from_state(st: dict | None) -> dict | None:
    if not st:
        return None
    from .spatial import SpatialResidual

    m = SpatialResidual(bandwidth=st["bandwidth"], shrinkage=st["shrinkage"], pitch=st["pitch"],
                        loo_mse=st["loo_mse"], base_loo_mse=st["base_loo_mse"])
    return {"model": m, "xy": st["xy"].numpy(), "sections": np.asarray(st["sections"]),
            "keys": np.asarray(st["keys"]), "resid": st["resid"].numpy()}


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
    corr = predictor.spatial_correction(adata)
    if corr is not None:
        pred = pred + corr
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
        "spatial_correction": corr is not None,
        "config": json.dumps(cfg.to_dict()),
    }
    return adata


def predict_expression(predictor, adata, **kwargs):
    """Predict the panel for every spot of ``adata`` and store it (see the module docstring)."""
    return drive(iter_predict_expression(predictor, adata, **kwargs), use_tqdm=False)
