"""The plugin's state, apart from the widgets (Qt-free; micro-sam style).

One :class:`Session` per section (spots layer). It holds the section, the single-cell reference
and its space, the candidate pool with ROI exclusions, the COMMITTED selection (what was
sequenced, or exported for sequencing) and the live PREVIEW of the current round (committed +
manual picks + the sampler's proposal), the policy, the trained predictor and its predictions.
Docks read and change it through its methods and listen to its signals; every scientific step
is a call into the core through :mod:`._core_adapter`.

Rounds: round ``r`` is proposed live (moving a weight slider re-runs only the policy's head);
"sequence" either reveals the proposal from the section's own counts (simulation) or exports it
(real use), after which importing the lab's counts file reveals it. When no spot of the current
round is pending any more, the next round starts.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from psygnal import Signal

from ..data.model import VISION_KEY, library_id
from ..progress import CancelToken, Progress
from . import _core_adapter as core


@dataclass
class SamplingSettings:
    """What the sampling dock edits (plain values; defaults from the plugin settings)."""

    budget: str = "15%"  # a count ("60") or a percentage ("15%") of the selectable spots
    rounds: int = 2
    sampler: str = "scrl"
    w_sc: float = 1.0
    w_type: float = 1.0
    w_sp: float = 1.0
    seed: int = 0

    def weights(self):
        return core.reward_weights(self.w_sc, self.w_type, self.w_sp)


@dataclass
class TrainingSettings:
    """What the training dock edits."""

    backbone: str = core.DEFAULT_ENCODER
    epochs: int = 30
    device: str = "auto"  # auto | cpu | gpu
    mode: str = "full"
    batch_size: int = 64
    n_genes: int = 250
    k: int = 8
    m: int = 2
    mc_samples: int = 0
    hidden_dim: int = 256
    proj_dim: int = 128


@dataclass
class Preview:
    """The selection shown now: committed + manual picks + proposal of the current round."""

    state: Any
    proposal: np.ndarray
    scores: np.ndarray | None
    n_new: int
    total_budget: int
    seconds: float = 0.0
    terms_measured: tuple[float, float, float] = (0.0, 0.0, 0.0)
    terms_expected: tuple[float, float, float] = (0.0, 0.0, 0.0)
    has_prediction: bool = False
    message: str = ""


@dataclass
class _Cache:
    feats: Any = None
    feats_key: Any = None
    sampler: Any = None
    sampler_key: Any = None
    other_key: Any = None
    other_result: Any = None
    predicted: Any = None  # (pc, pt, labels) of the predicted space position
    predicted_key: Any = None
    extras: dict = field(default_factory=dict)


class Session:
    """State of one section in the plugin (see module docstring)."""

    prepared = Signal()
    selection_changed = Signal()
    predictions_changed = Signal()
    rois_changed = Signal()
    status = Signal(str)

    def __init__(self, adata, *, library: str | None = None, reference=None) -> None:
        self.adata = adata
        self.library = library or library_id(adata)
        self.reference = reference
        self.space = None
        self.pool = None
        self.committed = None  # SelectionState
        self.preview: Preview | None = None
        self.oracle = None
        X = adata.X
        self.has_counts = bool(X is not None and X.shape[1] > 0 and float(X[: min(50, adata.n_obs)].sum()) > 0)
        self.simulate = self.has_counts
        self.manual: list[int] = []
        self.include_mask: np.ndarray | None = None
        self.exclude_mask: np.ndarray | None = None
        self.sampling = SamplingSettings()
        self.training = TrainingSettings()
        self.policy = None
        self.policy_source = "none"
        self.vision_model = adata.uns.get("vision_embedding", {}).get("model") if VISION_KEY in adata.obsm else None
        self.embedder = None
        self.evaluator = None
        self.predictor = None
        self.train_adata = None
        self.predictions = None  # DataFrame (spots x panel genes), log1p scale
        self.gene: str | None = None
        self.history: list[dict[str, float]] = []  # reward terms of the measured set after each round
        self._version = 0  # bumped whenever the committed selection or the pool changes
        self._cache = _Cache()

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        return int(self.adata.n_obs)

    @property
    def is_prepared(self) -> bool:
        return self.pool is not None and self.committed is not None

    @property
    def current_round(self) -> int:
        return int(self.committed.current_round) if self.committed is not None else 0

    @property
    def rounds_done(self) -> bool:
        return self.committed is not None and self.current_round >= int(self.sampling.rounds)

    @property
    def excluded(self) -> np.ndarray:
        ex = np.zeros(self.n, dtype=bool)
        if self.exclude_mask is not None:
            ex |= self.exclude_mask
        if self.include_mask is not None and self.include_mask.any():
            ex |= ~self.include_mask
        return ex

    def _bump(self) -> None:
        self._version += 1

    # ------------------------------------------------------------------ preparation
    def iter_prepare(self, encoder: str | None = None, *, policy_path: str | None = None,
                     device: str = "auto") -> Generator[Progress, None, None]:
        """Vision embeddings (if missing), reference space, pool, selection state and policy.

        Runs in a worker thread: it only assigns attributes at the end (the GUI keeps its
        buttons disabled meanwhile)."""
        adata = self.adata
        vision_model = self.vision_model
        if VISION_KEY not in adata.obsm:
            enc = encoder or core.DEFAULT_ENCODER
            yield Progress(0, 0, f"embedding spots with {enc}")
            vision_model = yield from core.iter_vision(adata, enc, device=device)
        space = self.space
        if space is None and self.reference is not None:
            yield Progress(0, 0, "fitting the single-cell reference space")
            space = core.fit_reference_space(self.reference, list(map(str, adata.var_names)), seed=self.sampling.seed)
        yield Progress(0, 0, "building the candidate pool")
        pool = core.make_pool(adata, self.excluded)
        state = self.committed if self.committed is not None else core.new_state(pool)
        oracle = core.make_oracle(adata, pool) if self.has_counts else None
        policy, source = self.policy, self.policy_source
        if space is not None and policy_path:
            policy, source = core.load_policy(policy_path), f"loaded from {policy_path}"
        if space is not None and policy is None:
            policy, source = core.new_policy(space, seed=self.sampling.seed), "untrained (pre-train or load one)"
        if space is not None and policy is not None:
            policy.check_space(space)
        self.vision_model = vision_model
        self.space, self.pool, self.committed, self.oracle = space, pool, state, oracle
        self.policy, self.policy_source = policy, source
        if space is not None:
            self.embedder = core.measured_embedder(space)
            self.evaluator = core.reward_evaluator(space, pool, self.sampling.weights(), self.embedder)
        if self.sampling.sampler in ("scrl", "greedy") and space is None:
            self.sampling.sampler = "kcenter"
        self._bump()
        yield Progress(1, 1, "ready")

    def finish_prepare(self) -> None:
        """Main-thread part after :meth:`iter_prepare`: first proposal and signals."""
        self.prepared.emit()
        self.reselect()

    def set_policy(self, policy, source: str) -> None:
        if self.space is not None:
            policy.check_space(self.space)
        self.policy, self.policy_source = policy, source
        self._cache.feats_key = None
        self._cache.sampler_key = None
        self.reselect()

    def iter_pretrain(self, episodes: int, *, token: CancelToken | None = None) -> Generator[Progress, None, Any]:
        """Pre-train the policy on this (fully measured) section by simulated episodes."""
        if self.space is None or self.policy is None:
            raise RuntimeError("prepare the section with a single-cell reference first")
        if not self.has_counts:
            raise RuntimeError("pre-training simulates sequencing and needs a section with counts")
        policy = self.policy
        rounds = max(2, int(self.sampling.rounds))
        yield from core.iter_pretrain_policy(policy, self.adata, self.space, episodes=episodes, rounds=rounds,
                                             group_size=4, seed=self.sampling.seed, token=token)
        return policy

    # ------------------------------------------------------------------ ROIs and manual picks
    def set_rois(self, include: np.ndarray | None, exclude: np.ndarray | None) -> list[str]:
        """New include/exclude masks (from ROI shapes); returns notes for the user."""
        notes = []
        inc = None if include is None or not np.any(include) else np.array(include, dtype=bool)
        exc = None if exclude is None or not np.any(exclude) else np.array(exclude, dtype=bool)
        same = _same(inc, self.include_mask) and _same(exc, self.exclude_mask)
        if same:
            return notes
        self.include_mask, self.exclude_mask = inc, exc
        if self.pool is not None:
            excluded = self.excluded
            dropped = [i for i in self.manual if excluded[i]]
            if dropped:
                self.manual = [i for i in self.manual if not excluded[i]]
                notes.append(f"{len(dropped)} manual pick(s) inside an excluded region were removed")
            self.pool = core.make_pool(self.adata, excluded)
            if self.space is not None:
                self.evaluator = core.reward_evaluator(self.space, self.pool, self.sampling.weights(), self.embedder)
            self._bump()
        self.rois_changed.emit()
        return notes

    def toggle_manual(self, index: int) -> str:
        """Add or remove a manual pick for the current round; returns a status message."""
        if not self.is_prepared:
            return "prepare the section first"
        i = int(index)
        name = str(self.adata.obs_names[i])
        if self.committed.selected[i]:
            what = "sequenced" if self.committed.measured[i] else "already sent for sequencing"
            return f"spot {name} is {what} and cannot be changed"
        if self.excluded[i]:
            return f"spot {name} is in an excluded region"
        if self.rounds_done:
            return "all rounds are done: raise the number of rounds to pick more"
        if i in self.manual:
            self.manual.remove(i)
            msg = f"manual pick removed: {name}"
        else:
            self.manual.append(i)
            msg = f"manual pick: {name}"
        self.reselect()
        return msg

    # ------------------------------------------------------------------ live selection
    def update_settings(self, **changes) -> None:
        old = self.sampling
        self.sampling = replace(old, **changes)
        if self.evaluator is not None and (old.w_sc, old.w_type, old.w_sp) != (self.sampling.w_sc, self.sampling.w_type, self.sampling.w_sp):
            self.evaluator.weights = self.sampling.weights()

    def _base_state(self):
        """Committed state + current-round manual locks (what the sampler conditions on)."""
        st = self.committed.copy()
        total, _ = core.plan_round(self.pool, st, self.sampling.budget, self.sampling.rounds) if not self.rounds_done else (0, 0)
        st.budget = total or st.budget
        st.n_rounds = int(self.sampling.rounds)
        if self.manual:
            st.lock(np.asarray(self.manual, dtype=np.int64), round=int(st.current_round))
        return st

    def _predicted(self):
        """Predicted reference-space cluster/type of every spot from the sequenced spots
        (ridge on vision + location; None until 5 spots are sequenced). Cached per round."""
        key = (self._version, self.committed.measured.sum())
        if self._cache.predicted_key == key:
            return self._cache.predicted
        out = None
        if self.space is not None and self.committed.measured.sum() >= 5:
            m = self.embedder(self.committed)
            zp = core.space_predictor(self.space)(self.pool, self.committed, m.index, m.z)
            if zp is not None:
                lt = self.space.transfer_labels(zp)
                out = (self.space.nearest_cluster(zp), lt.codes, np.asarray(lt.labels, dtype=object), m)
        self._cache.predicted, self._cache.predicted_key = out, key
        return out

    def reselect(self) -> Preview | None:
        """Recompute the preview for the current settings (fast path for weight changes)."""
        if not self.is_prepared:
            return None
        t0 = time.perf_counter()
        s = self.sampling
        msg = ""
        if self.rounds_done or self.committed.pending.any():
            # finished, or the current round was exported and waits for the lab's counts
            st = self.committed.copy()
            proposal, scores, n_new = np.zeros(0, np.int64), None, 0
            total = int(st.budget or st.n_selected)
            msg = ("all rounds done" if self.rounds_done else
                   f"round {self.current_round} sent for sequencing: import the results to continue")
        else:
            st = self._base_state()
            total, n_new = core.plan_round(self.pool, st, s.budget, s.rounds)
            available = self.pool.available_mask(st)
            n_new = int(min(n_new, available.sum()))
            weights = s.weights()
            if s.sampler == "scrl":
                if self.policy is None:
                    raise RuntimeError("the SCRL sampler needs a policy and a single-cell reference")
                fkey = (self._version, tuple(self.manual), id(self.policy), getattr(self.policy, "_version", 0),
                        total, s.rounds)
                if self._cache.feats_key != fkey:
                    sampler = core.make_sampler("scrl", space=self.space, weights=weights, policy=self.policy,
                                                seed=s.seed)
                    if self.embedder is not None:
                        sampler.embedder = self.embedder
                    self._cache.feats = core.policy_features(sampler, self.pool, st, available)
                    self._cache.feats_key = fkey
                proposal, scores = core.policy_select(self.policy, self._cache.feats, weights, n_new, available)
            else:
                okey = (self._version, tuple(self.manual), s.sampler, s.seed, total, s.rounds,
                        (s.w_sc, s.w_type, s.w_sp) if s.sampler == "greedy" else None)
                if self._cache.other_key != okey:
                    sampler = core.make_sampler(s.sampler, space=self.space, weights=weights, seed=s.seed)
                    if self.embedder is not None and hasattr(sampler, "embedder"):
                        sampler.embedder = self.embedder
                    self._cache.other_result = core.sampler_select(sampler, self.pool, st, n_new)
                    self._cache.other_key = okey
                proposal, scores = self._cache.other_result
            st.mark_selected(proposal, source=s.sampler, scores=scores)
        prev = Preview(st, np.asarray(proposal, np.int64), None if scores is None else np.asarray(scores, float),
                       int(n_new), int(total), message=msg)
        self._fill_terms(prev)
        prev.seconds = time.perf_counter() - t0
        self.preview = prev
        self.selection_changed.emit()
        return prev

    def _fill_terms(self, prev: Preview) -> None:
        """Reward terms of the sequenced set and the EXPECTED terms with the proposal (the
        proposal's clusters/types are predicted: nothing unsequenced is read)."""
        st = prev.state
        sel = np.flatnonzero(st.selected & ~self.pool.excluded)
        if self.space is None:
            sp_now = core.spatial_term(self.pool, np.flatnonzero(self.committed.measured))
            prev.terms_measured = (0.0, 0.0, sp_now)
            prev.terms_expected = (0.0, 0.0, core.spatial_term(self.pool, sel))
            return
        pred = self._predicted()
        m = pred[3] if pred is not None else self.embedder(self.committed)
        prev.terms_measured = core.reward_terms(self.space, self.pool, m.cluster, m.codes, m.index)
        clusters, types = list(m.cluster), list(m.codes)
        if pred is not None:
            pc, pt = pred[0], pred[1]
            extra = np.setdiff1d(sel, m.index)
            clusters += list(pc[extra])
            types += list(pt[extra])
            prev.has_prediction = True
        prev.terms_expected = core.reward_terms(self.space, self.pool, clusters, types, sel)

    # ------------------------------------------------------------------ sequencing
    def sequence_simulated(self) -> np.ndarray:
        """Reveal the current proposal from the section's own counts (simulation)."""
        if self.oracle is None:
            raise RuntimeError("this section has no counts to simulate sequencing; export the selection instead")
        if self.preview is None:
            self.reselect()
        st = self.preview.state
        pending = np.flatnonzero(st.pending)
        if pending.size == 0:
            raise RuntimeError("nothing to sequence in this round")
        self.oracle.reveal(st, pending)
        self._commit(st)
        return pending

    def commit_for_export(self):
        """Fix the current proposal (it becomes 'sent for sequencing'); returns the state."""
        if self.preview is None:
            self.reselect()
        st = self.preview.state
        if st.pending.any() and not self.committed.pending.any():
            self.committed = st
            self.manual = []
            self._bump()
            self.reselect()
        return self.committed

    def import_results(self, path) -> np.ndarray:
        """Import the lab's counts file (spots x genes) into the committed selection."""
        if not self.is_prepared:
            raise RuntimeError("prepare the section first")
        st = self.committed.copy()
        idx = core.import_counts(st, path, section=self.library)
        self._commit(st)
        return idx

    def _commit(self, st) -> None:
        if not st.pending.any():
            st.current_round = int(st.current_round) + 1
        self.committed = st
        self.manual = []
        self._bump()
        if self.evaluator is not None and st.measured.any():
            t = self.evaluator.terms(st)
            self.history.append({"round": float(st.current_round), "n": float(st.measured.sum()),
                                 "r_sc": t.sc, "r_type": t.type, "r_sp": t.sp})
        self.reselect()

    def reset_selection(self) -> None:
        """Forget every pick (the revealed counts too)."""
        if self.pool is None:
            return
        self.committed = core.new_state(self.pool)
        self.manual = []
        self.history = []
        self._bump()
        self.reselect()

    # ------------------------------------------------------------------ cell types
    def cell_types(self) -> np.ndarray:
        """Per spot: the transferred label of sequenced spots, else the label of the predicted
        reference-space position (ridge on vision + location); "" when unknown. Cached per
        committed selection (a copy is returned)."""
        out = np.full(self.n, "", dtype=object)
        if self.space is None or self.committed is None:
            return out
        key = (self._version, int(self.committed.measured.sum()))
        hit = self._cache.extras.get("cell_types")
        if hit is not None and hit[0] == key:
            return hit[1].copy()
        pred = self._predicted()
        if pred is not None:
            out[:] = pred[2]
            m = pred[3]
        else:
            m = self.embedder(self.committed)
        if len(m):
            out[m.index] = np.asarray(self.space.celltypes, dtype=object)[m.codes]
        self._cache.extras["cell_types"] = (key, out)
        return out.copy()

    def celltype_categories(self) -> list[str]:
        return list(self.space.celltypes) if self.space is not None else []

    # ------------------------------------------------------------------ training
    def training_snapshot(self):
        """(adata, mask) for training, taken in the main thread before the worker starts."""
        if not self.is_prepared:
            raise RuntimeError("prepare the section and sequence some spots first")
        mask = np.asarray(self.committed.measured, dtype=bool)
        if mask.sum() < 8:
            raise RuntimeError(f"need at least 8 sequenced spots to train, have {int(mask.sum())}")
        a = core.training_adata(self.pool, self.committed, self.adata, self.cell_types())
        return a, mask

    def iter_train(self, adata, mask, *, token: CancelToken | None = None,
                   threads: int | None = None) -> Generator[Progress, None, Any]:
        """Embeddings for the chosen backbone (if not the sampler's), SCR2Net training and
        prediction of every spot, on the snapshot ``adata`` (worker thread). ``threads``: torch
        intra-op threads (the GUI leaves one core to the event loop)."""
        t = self.training
        key = VISION_KEY
        if t.backbone and t.backbone != self.vision_model:
            key = f"{VISION_KEY}_{_safe(t.backbone)}"
            if key not in self.adata.obsm:
                yield Progress(0, 0, f"embedding spots with {t.backbone}")
                yield from core.iter_vision(self.adata, t.backbone, key=key, device=t.device)
            adata.obsm[key] = np.asarray(self.adata.obsm[key])
        config = core.train_config(
            mode=t.mode, epochs=int(t.epochs), device=t.device, batch_size=int(t.batch_size),
            n_genes=int(t.n_genes), k=int(t.k), m=int(t.m), hidden_dim=int(t.hidden_dim), proj_dim=int(t.proj_dim),
            embedding_key=key, backbone=t.backbone if t.backbone != core.PATCH_STATS else core.DEFAULT_ENCODER,
            seed=self.sampling.seed,
        )
        return (yield from core.iter_fit_and_predict(adata, mask, config, mc_samples=t.mc_samples, token=token,
                                                     threads=threads))

    def set_model(self, predictor, adata, predictions) -> None:
        self.predictor = predictor
        self.train_adata = adata
        if predictions is not None:
            pred = predictions.copy()
            pred.index = self.adata.obs_names.copy()
            self.predictions = pred
            self.adata.obsm["X_pred"] = pred
            if self.gene is None or self.gene not in pred.columns:
                self.gene = default_gene(pred)
        self.predictions_changed.emit()

    def inspect(self, index: int, gene: str | None, k: int, m: int):
        if self.predictor is None:
            raise RuntimeError("train a model first")
        return core.inspect_spot(self.predictor, self.train_adata, index, gene, k, m)

    def measured_mask(self) -> np.ndarray:
        if self.committed is None:
            return np.zeros(self.n, dtype=bool)
        return np.asarray(self.committed.measured, dtype=bool)

    def measured_values(self, gene: str) -> np.ndarray:
        """log1p-normalised values of ``gene`` for sequenced spots (NaN elsewhere), read from
        the revealed counts only."""
        out = np.full(self.n, np.nan, dtype=np.float32)
        if self.committed is None or not self.committed.measured.any():
            return out
        view = self.committed.measured_view()
        if gene not in view.genes:
            raise KeyError(f"gene {gene!r} was not measured")
        out[view.index] = view.log1p([gene])[:, 0]
        return out

    def measured_genes(self) -> list[str]:
        if self.committed is None or self.committed.genes is None:
            return []
        return list(self.committed.genes)

    # ------------------------------------------------------------------ exports
    def selection_frame(self, which: str = "pending"):
        from ..io.export import selection_table

        st = self.preview.state if self.preview is not None else self.committed
        return selection_table(self.adata, st, which=which, predicted_cell_type=self.cell_types())

    def selection_for_layers(self):
        return self.preview.state if self.preview is not None else self.committed


def default_gene(pred) -> str:
    """The most variable predicted gene (a readable first map)."""
    v = np.asarray(pred.var(axis=0))
    return str(pred.columns[int(np.nanargmax(v))]) if len(v) else str(pred.columns[0])


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def get_session(layer, *, create: bool = True) -> Session | None:
    """The session stored with a spots layer (created on first use)."""
    meta = layer.metadata
    s = meta.get("scr2st_session")
    if s is None and create and "adata" in meta:
        s = Session(meta["adata"], library=meta.get("section"), reference=meta.get("reference"))
        meta["scr2st_session"] = s
    return s
