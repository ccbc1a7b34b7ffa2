"""The public API: scanpy-style functions over AnnData, one per step of the job.

=====================  ================================================================
:func:`read`           a section (or a ``{section: AnnData}`` collection) from any input
                       the readers know (legacy ST, Space Ranger, Visium HD, h5ad,
                       SpatialData, HEST, an H&E image before sequencing)
:func:`embed`          the vision embedding of every spot (``obsm["X_vision"]``)
:func:`fit_reference`  the single-cell reference space (PCA + clusters + label transfer)
:func:`select`         choose the spots to sequence: an :class:`AcquisitionSession`
:func:`import_counts`  the lab's counts into a session or a saved state file
:func:`train`          SCR2Net on the sequenced spots
:func:`predict`        expression of every spot (``obsm["X_pred"]``)
:func:`evaluate`       PCC / MSE / MAE of predictions against measured spots
=====================  ================================================================

Each function is a thin, documented entry to the module that owns the step; heavy
dependencies (torch, timm, scanpy) load only when a function runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_ENCODER, SamplingSettings, TrainConfig
from .session import AcquisitionSession

__all__ = ["read", "embed", "fit_reference", "select", "import_counts", "train", "predict", "evaluate",
           "AcquisitionSession", "SamplingSettings", "TrainConfig"]


def read(path: str | Path, **kwargs):
    """Read ``path`` as a section AnnData (or a dict of them); see :func:`napari_scr2st.io.read`."""
    from .io import read as _read

    return _read(path, **kwargs)


def embed(adata, encoder: str = DEFAULT_ENCODER, *, key: str = "X_vision", device: str = "auto",
          progress: bool = False) -> str:
    """Make sure ``adata.obsm[key]`` holds a vision embedding of every spot's crop.

    ``encoder``: a timm name (``efficientnet_lite0`` has offline ImageNet weights; ``hf-hub:``
    names need local weights), ``patch-stats`` (an instant colour/texture stand-in). An
    existing embedding is kept. Returns a description of the embedding.
    """
    from .features import ensure_vision_embedding
    from .torch_runtime import triton_blocked

    with triton_blocked():
        return ensure_vision_embedding(adata, encoder, key=key, device=device, progress=progress)


def fit_reference(reference, spots, *, celltype_key: str | None = None, embedding_key: str | None = None,
                  seed: int = 0):
    """The single-cell reference space shared by reference cells and sequenced spots.

    ``reference``: an AnnData of single cells (raw counts, cell types in ``obs``) or the path
    of one; ``spots``: the section AnnData (or its gene names). Returns a
    :class:`~napari_scr2st.reference.ReferenceSpace`.
    """
    from .session import fit_reference_space

    if isinstance(reference, (str, Path)):
        from .reference import read_reference

        reference = read_reference(reference, celltype_key=celltype_key)
    return fit_reference_space(reference, spots, celltype_key=celltype_key, embedding_key=embedding_key, seed=seed)


def select(adata, *, reference=None, space=None, budget: str | int | None = None, rounds: int | None = None,
           sampler: str | None = None, weights: Any = None, seed: int = 0, lock: Sequence[str] = (),
           exclude: Sequence[str] = (), policy: Any = None, simulate: bool | None = None,
           state: str | Path | None = None, encoder: str = DEFAULT_ENCODER) -> AcquisitionSession:
    """Choose the spots to sequence; returns the :class:`AcquisitionSession` of the run.

    In simulation (``simulate=True``, or by default for a fully measured section) every round
    is run, revealing the section's own counts round by round; otherwise the first (or, with a
    saved ``state``, the next) round is committed for the lab: ``session.export_round(csv,
    state_path=...)`` writes it, :func:`import_counts` brings the counts back, and
    ``session.commit()`` continues. ``lock``/``exclude``: spot ids that must / must never be
    sequenced. ``budget``, ``rounds`` and ``sampler`` default to :class:`SamplingSettings`'.
    """
    d = SamplingSettings()
    settings = SamplingSettings(budget=d.budget if budget is None else str(budget),
                                rounds=d.rounds if rounds is None else rounds,
                                sampler=sampler or d.sampler, seed=seed, encoder=encoder)
    if weights is not None:
        from .sampling.reward import RewardWeights

        settings = settings.with_weights(RewardWeights.parse(weights))
    s = AcquisitionSession(adata, reference=reference, space=space, settings=settings, simulate=simulate)
    if state is not None and Path(state).exists():
        s.load(state)
    s.prepare(policy=policy)
    if exclude:
        s.exclude(list(exclude))
    if lock:
        s.lock(list(lock))
    if s.simulate:
        for _ in s.iter_run_simulated():
            pass
    else:
        s.commit_for_export()
    return s


def import_counts(target, counts_file: str | Path, *, section: str | None = None,
                  overwrite: bool = False) -> np.ndarray:
    """The lab's counts file (spots x genes) into ``target``: an :class:`AcquisitionSession`
    or a saved state file (updated in place). Returns the pool indices of the imported spots."""
    if isinstance(target, AcquisitionSession):
        return target.import_results(counts_file, section=section, overwrite=overwrite)
    from .session import import_counts_into

    idx, _ = import_counts_into(target, counts_file, section=section, overwrite=overwrite)
    return idx


def train(adata, train_mask=None, config: TrainConfig | None = None, **options):
    """Train SCR2Net on the spots of ``train_mask`` (default: every spot with counts).

    ``config``: a :class:`TrainConfig` (``options`` override its fields). Returns the fitted
    :class:`~napari_scr2st.model.SCR2NetPredictor`.
    """
    from .model import SCR2NetPredictor
    from .torch_runtime import triton_blocked

    cfg = (config or TrainConfig()).replace(**options).validate()
    mask = np.asarray(adata.X.sum(axis=1)).ravel() > 0 if train_mask is None else np.asarray(train_mask, dtype=bool)
    with triton_blocked():
        return SCR2NetPredictor(cfg).fit(adata, mask)


def predict(predictor, adata, *, mc_samples: int = 0, **kwargs):
    """Predicted expression of every spot into ``adata.obsm["X_pred"]`` (a DataFrame, log1p
    normalised); ``mc_samples`` MC-dropout passes add ``obsm["X_pred_sd"]``. Returns the DataFrame."""
    from .model import predict_expression

    predict_expression(predictor, adata, mc_samples=mc_samples, **kwargs)
    return adata.obsm["X_pred"]


def evaluate(adata, mask=None, **kwargs) -> dict:
    """PCC (all genes, top-50 expressed, top-50 variable), MSE and MAE of ``obsm["X_pred"]``
    against the measured counts of the ``mask`` spots; see
    :func:`napari_scr2st.evaluation.evaluate_adata`."""
    from .evaluation import evaluate_adata

    return evaluate_adata(adata, mask, **kwargs)
