"""Every call from the napari plugin into the colleagues' core packages, in one place.

The widgets and the session (:mod:`._state`) never import ``features``, ``reference``,
``sampling`` or ``model`` directly: they call the functions below. When a core API changes, this
is the only file to adapt. Heavy imports (torch, scanpy, sklearn) happen inside the functions.
Nothing here imports Qt or napari.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import numpy as np

from ..progress import CancelToken, Progress


def guard_triton() -> bool:
    """Keep torch from loading Triton into a process whose OpenGL is Mesa's llvmpipe.

    ``torch.optim`` imports ``torch._dynamo``, which imports ``triton`` when installed; Triton's
    bundled LLVM (``libtriton.so``) segfaults when loaded after Mesa's ``libLLVM`` (software GL:
    napari under Xvfb, VMs, machines without a GPU driver). Measured here: optimizer creation
    after ``napari.Viewer(show=True)`` crashes, and works with Triton blocked. Nothing in this
    package uses ``torch.compile``, so when Mesa's LLVM is mapped and Triton is not yet loaded we
    make ``import triton`` fail (torch then reports it as absent). Returns True when blocked.
    """
    import sys

    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    try:
        with open("/proc/self/maps") as fh:
            llvm = "libLLVM" in fh.read()
    except OSError:  # not Linux
        return False
    if llvm:
        sys.modules["triton"] = None  # import triton -> ImportError
        return True
    return False


#: vision encoders offered in the docks; "patch-stats" is the instant colour/texture stand-in
PATCH_STATS = "patch-stats"
DEFAULT_ENCODER = "efficientnet_lite0"
ENCODERS = (DEFAULT_ENCODER, PATCH_STATS, "resnet18", "hf-hub:MahmoodLab/UNI")
SAMPLERS = ("scrl", "greedy", "kcenter", "typiclust", "grid", "random", "ar")
SAMPLER_LABELS = {
    "scrl": "SCRL policy (reward-weighted, live)",
    "greedy": "greedy reward maximiser (slow)",
    "kcenter": "k-center greedy (coreset, vision)",
    "typiclust": "TypiClust (vision)",
    "grid": "regular grid",
    "random": "random",
    "ar": "adaptive resampling (vision)",
}


# ------------------------------------------------------------------ features
def iter_vision(adata, encoder: str, *, key: str = "X_vision", device: str = "auto", batch_size: int = 64,
                out_size: int | None = 224) -> Generator[Progress, None, str]:
    """Fill ``adata.obsm[key]`` with the embedding of ``encoder``; returns the encoder name."""
    guard_triton()
    if encoder == PATCH_STATS:
        from ..features.patch_stats import patch_statistics_embedding

        yield Progress(0, 1, "patch colour/texture statistics")
        adata.obsm[key] = patch_statistics_embedding(adata)
        yield Progress(1, 1, "patch colour/texture statistics")
        return encoder
    from ..features import iter_vision_embeddings

    yield from iter_vision_embeddings(adata, encoder, key_added=key, device=device, batch_size=batch_size,
                                      out_size=out_size)
    return encoder


# ------------------------------------------------------------------ reference
def fit_reference_space(reference, spot_genes, *, celltype_key: str | None = None, seed: int = 0):
    """Prepared single-cell reference -> :class:`ReferenceSpace` (PCA + k-means)."""
    guard_triton()
    from ..reference import ReferenceSpace, prepare_reference

    kw = {}
    if celltype_key is not None:
        kw["celltype_key"] = celltype_key
    elif "celltype_major" not in reference.obs:
        # take the first categorical obs column as the cell-type label
        cats = [c for c in reference.obs.columns if str(reference.obs[c].dtype) in ("category", "object")]
        if cats:
            kw["celltype_key"] = cats[0]
    n_top = int(min(2000, len(spot_genes)))
    prepared = prepare_reference(reference, list(spot_genes), n_top_genes=n_top,
                                 min_shared=min(200, max(20, len(spot_genes) // 2)), **kw)
    return ReferenceSpace.fit(prepared, seed=seed)


def read_reference(path):
    from ..reference import read_reference as _read

    return _read(path)


# ------------------------------------------------------------------ sampling
def make_pool(adata, excluded: np.ndarray | None = None, *, vision_key: str = "X_vision"):
    from ..sampling.pool import Pool

    pool = Pool.from_adata(adata, vision_key=vision_key)
    if excluded is not None and np.any(excluded):
        pool.exclude(np.asarray(excluded, dtype=bool))
    return pool


def new_state(pool):
    from ..sampling.state import SelectionState

    return SelectionState.for_pool(pool)


def make_oracle(adata, pool):
    from ..sampling.oracle import SimulatedOracle

    return SimulatedOracle(adata, pool)


def plan_round(pool, state, budget, rounds: int) -> tuple[int, int]:
    """(total budget, number of NEW picks of the current round) for the remaining rounds."""
    from ..sampling.loop import plan_rounds
    from ..sampling.pool import SelectionRequest

    left = max(1, int(rounds) - int(state.current_round))
    total, schedule = plan_rounds(pool, SelectionRequest(budget=budget, rounds=int(rounds)), state, n_rounds=left)
    first = schedule[0] if schedule else 0
    if isinstance(first, dict):
        first = int(sum(first.values()))
    return int(total), int(first)


def resolve_budget(budget, n_available: int) -> int:
    from ..sampling.pool import resolve_budget as _rb

    return _rb(budget, n_available)


def reward_weights(sc: float, type_: float, sp: float):
    from ..sampling.reward import RewardWeights

    return RewardWeights(float(sc), float(type_), float(sp))


def make_sampler(name: str, *, space=None, weights=None, policy=None, seed: int = 0):
    from ..sampling.registry import make_sampler as _mk

    return _mk(name, seed=seed, space=space, weights=weights, policy=policy)


def new_policy(space, *, seed: int = 0):
    guard_triton()
    from ..sampling.scrl import SCRLPolicy

    return SCRLPolicy.for_space(space, seed=seed)


def load_policy(path):
    guard_triton()
    from ..sampling.scrl import SCRLPolicy

    return SCRLPolicy.load(path)


def save_policy(policy, path):
    return policy.save(path)


def policy_features(sampler, pool, state, available):
    """Round features of the SCRL sampler (expensive part, cached by the session)."""
    with torch_single_thread():
        return sampler.features(pool, state, available)


@contextlib.contextmanager
def torch_single_thread():
    """Run small torch work on one intra-op thread (restored after).

    The policy head on a few thousand spots is ~1 ms single-threaded but 10-50x slower with a
    busy intra-op pool on a loaded machine (measured: 1.3 ms vs 47 ms per pass on 2 shared
    cores), so the live re-selection uses one thread."""
    import torch

    n = torch.get_num_threads()
    try:
        if n != 1:
            torch.set_num_threads(1)
        yield
    finally:
        if n != 1:
            torch.set_num_threads(n)


def policy_select(policy, feats, weights, k: int, available) -> tuple[np.ndarray, np.ndarray]:
    """The live re-selection: one weight-conditioned head pass per sub-step."""
    with torch_single_thread():
        idx = policy.select(feats, weights, int(k), available=available)
    return idx, np.asarray(policy.last_scores, dtype=float)


def sampler_select(sampler, pool, state, n: int, available=None) -> tuple[np.ndarray, np.ndarray | None]:
    idx = sampler.select(pool, int(n), state, candidates=available)
    return idx, sampler.last_scores


def iter_pretrain_policy(policy, adata, space, *, episodes: int, rounds: int = 3, group_size: int = 4,
                         seed: int = 0, token: CancelToken | None = None):
    """Simulated-episode training on a fully measured section (yields Progress): the CLI's recipe
    (``scr2st train-policy``) scaled to ``episodes``: a short imitation warm start from the
    greedy reward maximiser (``episodes // 5``), then REINFORCE, both with the auxiliary
    term-gain loss and corner/Dirichlet(0.5) weight sampling (``iter_train_policy``'s defaults),
    so the trained policy follows the weight sliders (docs/benchmarks.md, weight sensitivity)."""
    guard_triton()
    from ..sampling.scrl import PolicyEnv, iter_train_policy

    env = PolicyEnv.from_adata(adata, space)
    episodes = int(episodes)
    imitation = episodes // 5
    return (yield from iter_train_policy(policy, [env], space, episodes=episodes - imitation, rounds=int(rounds),
                                         group_size=int(group_size), seed=seed, imitation_episodes=imitation,
                                         token=token))


def measured_embedder(space):
    from ..sampling.measured import MeasuredEmbedder

    return MeasuredEmbedder(space)


def reward_evaluator(space, pool, weights, embedder):
    from ..sampling.measured import RewardEvaluator

    return RewardEvaluator(space, pool, weights, embedder=embedder)


def space_predictor(space, *, min_train: int = 5):
    from ..sampling.surrogate import SpacePredictor

    return SpacePredictor(space, min_train=min_train)


def reward_terms(space, pool, clusters, types, selected) -> tuple[float, float, float]:
    """(r_sc, r_type, r_sp) of a set given its clusters/types (measured or predicted)."""
    from ..sampling.reward import celltype_entropy, manifold_coverage, spatial_coverage

    clusters = np.asarray(clusters, dtype=np.int64)
    types = np.asarray(types, dtype=np.int64)
    sc = manifold_coverage(clusters, space.n_clusters) if clusters.size else 0.0
    ty = celltype_entropy(types, space.n_types) if types.size else 0.0
    sp = float(spatial_coverage(pool.spatial_index(), selected=np.asarray(selected, dtype=np.int64)))
    return float(sc), float(ty), sp


def spatial_term(pool, selected) -> float:
    from ..sampling.reward import spatial_coverage

    return float(spatial_coverage(pool.spatial_index(), selected=np.asarray(selected, dtype=np.int64)))


def import_counts(state, path, *, section: str | None = None) -> np.ndarray:
    from ..sampling.state import import_counts as _imp

    return _imp(state, path, section=section)


def training_adata(pool, state, section_adata, cell_types: np.ndarray | None):
    """AnnData for SCR2Net: counts of SEQUENCED spots only (the pool's view), the section's
    obs_names (so the predictor's spot keys match the section), images for crops, cell types."""
    a = pool.training_adata(state)
    a.obs_names = [str(s) for s in section_adata.obs_names]
    a.uns["spatial"] = section_adata.uns.get("spatial", {})
    if cell_types is not None:
        ct = np.asarray(cell_types, dtype=object).astype(str)
        ct[~np.asarray(state.measured, dtype=bool)] = ""
        a.obs["cell_type"] = ct
    for key in section_adata.obsm.keys():
        if key.startswith("X_vision") and key not in a.obsm:
            a.obsm[key] = np.asarray(section_adata.obsm[key])
    return a


# ------------------------------------------------------------------ model
def train_config(**kw):
    from ..model import TrainConfig

    return TrainConfig(**kw).validate()


@contextlib.contextmanager
def torch_threads(n: int):
    """Use ``n`` intra-op threads in the calling thread (restored after)."""
    import torch

    old = torch.get_num_threads()
    try:
        if n != old:
            torch.set_num_threads(max(1, int(n)))
        yield
    finally:
        if n != old:
            torch.set_num_threads(old)


def warm_up_training() -> None:
    """Import SCR2Net's training and prediction code and torch's optimiser stack."""
    guard_triton()
    import importlib

    import torch

    for name in ("napari_scr2st.model.train", "napari_scr2st.model.predictor", "napari_scr2st.model.inspect",
                 "torch._dynamo"):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up only; training reports real errors
            pass
    torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())  # first optimiser: lazy imports inside torch


def gui_training_threads() -> int:
    """Intra-op threads for training inside napari: all cores but one, kept for the event loop."""
    import os

    return max(1, (os.cpu_count() or 2) - 1)


def iter_fit_and_predict(adata, train_mask, config, *, mc_samples: int = 0, token: CancelToken | None = None,
                         threads: int | None = None):
    """Train SCR2Net on ``train_mask`` rows and predict every spot; returns (predictor, X_pred DataFrame).

    ``threads``: torch intra-op threads while training (None: torch's default)."""
    guard_triton()
    from ..model import SCR2NetPredictor, iter_predict_expression

    predictor = SCR2NetPredictor(config)
    ctx = torch_threads(threads) if threads else contextlib.nullcontext()
    with ctx:
        yield from predictor.iter_fit(adata, train_mask, cancel=token)
        if token is not None and token.cancelled:
            return predictor, None
        yield from iter_predict_expression(predictor, adata, mc_samples=int(mc_samples), cancel=token)
    return predictor, adata.obsm["X_pred"]


def inspect_spot(predictor, adata, index: int, gene: str | None, k: int, m: int):
    guard_triton()
    from ..model import inspect_spot as _inspect

    return _inspect(predictor, adata, int(index), gene, k=int(k), m=int(m))


def predict_expression(predictor, adata, *, k=None, m=None):
    from ..model import predict_expression as _pe

    _pe(predictor, adata, mc_samples=0, k=k, m=m)
    return adata.obsm["X_pred"]


def save_predictor(predictor, path):
    return predictor.save(path)


def load_predictor(path, device: str | None = None):
    guard_triton()
    from ..model import SCR2NetPredictor

    return SCR2NetPredictor.load(path, device=device)


def pick_device_name(pref: str) -> str:
    from ..device import pick_device

    return str(pick_device(pref))


def describe(obj: Any) -> str:
    return str(obj) if obj is not None else "none"
