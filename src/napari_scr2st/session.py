"""One acquisition session: the run that the Python API, ``scr2st`` and the napari docks drive.

An :class:`AcquisitionSession` owns everything about choosing spots on one section (or a
collection of sections joined with :func:`~napari_scr2st.data.model.concat_sections`):

- the data: the section AnnData, its vision embedding, the single-cell reference and its space;
- the run: the :class:`~napari_scr2st.sampling.acquisition.Acquisition` state machine (pool,
  committed rounds, imported counts, manual picks, exclusions, budget and rounds), the sampler
  and its :class:`~napari_scr2st.config.SamplingSettings`, the SCRL policy;
- what the run produced: the live proposal (:attr:`preview`), the reward history, the cell
  types, the trained SCR2Net predictor and its predictions;
- its files: :meth:`save` / :meth:`load` of the state, :meth:`export_round` writing the lab's
  table and the state together.

It is Qt-free and evented with psygnal: ``prepared``, ``selection_changed``,
``predictions_changed``, ``rois_changed``, ``reference_changed`` (a reference or its space set,
fitted or cleared, or another cell-type column), ``gene_changed`` (the gene the maps and the
inspector show) and ``exported`` (:attr:`last_export` is new) fire after the change, in the
thread that made it (what a worker computes in :meth:`iter_prepare` is announced by
:meth:`finish_prepare`, in the main thread). Long steps are generators yielding
:class:`~napari_scr2st.progress.Progress` (:meth:`iter_prepare`, :meth:`iter_run_simulated`,
:meth:`iter_pretrain`, :meth:`iter_train`): the CLI drives them with tqdm, napari with a thread
worker, tests synchronously.

Rounds are 0-based inside (``SelectionState.round``, -1 = not selected) and counted from 1 in
everything a person reads (tables, layers, messages: :func:`~napari_scr2st.palette.user_rounds`).

A slider move is: ``update_settings(w_sp=...)`` -> :meth:`reselect` -> the sampler (for SCRL
only the weight-conditioned head) -> :class:`Preview` -> ``selection_changed`` -> layers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal

from .config import (
    FALLBACK_SAMPLER,
    REFERENCE_SAMPLERS,
    PolicyTrainingSettings,
    SamplingSettings,
    TrainingSettings,
)
from .data.model import SECTION_KEY, VISION_KEY
from .progress import CancelToken, Progress
from .sampling.acquisition import Acquisition, Proposal, StagedRound, plan_rounds
from .sampling.pool import Pool, SelectionRequest
from .sampling.reward import RewardWeights
from .sampling.state import SelectionState

__all__ = ["POLICY_WEAK_SHORTFALL", "AcquisitionSession", "ExportRecord", "PolicyCheck", "Preview",
           "fit_reference_space", "has_counts", "import_counts_into", "load_policy", "warm_up_training"]

#: the policy is "weak" when its reward gain falls more than this fraction below greedy's
POLICY_WEAK_SHORTFALL = 0.10


def has_counts(adata) -> bool:
    """True when ``adata`` carries measured counts (a fully measured section: simulation)."""
    X = adata.X
    if X is None or X.shape[1] == 0:
        return False
    return bool(X.nnz > 0) if hasattr(X, "nnz") else bool(np.any(np.asarray(X) != 0))


def fit_reference_space(reference, spots, *, celltype_key: str | None = None,
                        embedding_key: str | None = None, seed: int = 0, spots_name: str = "spots",
                        return_overlap: bool = False):
    """A single-cell reference -> its :class:`~napari_scr2st.reference.ReferenceSpace`.

    ``spots``: the section AnnData (its ``var`` columns such as Visium's ``gene_ids`` help match
    genes named differently) or its gene names. ``celltype_key``: the ``obs`` column with cell
    types (None: the one :func:`~napari_scr2st.reference.read_reference` chose, else the best
    candidate, with a warning naming it). ``embedding_key``: a reference ``obsm`` embedding
    used instead of a PCA (spots must bring it when they are measured). ``return_overlap``:
    return ``(space, GeneOverlap)`` (the genes shared with the spots).
    """
    from .reference import ReferenceSpace, prepare_reference

    genes = spots if hasattr(spots, "var_names") else [str(g) for g in spots]
    n_genes = spots.n_vars if hasattr(spots, "n_vars") else len(genes)
    prepared = prepare_reference(reference, genes, 2000, celltype_key=celltype_key, spots_name=spots_name,
                                 min_shared=min(200, max(20, n_genes // 2)))
    space = ReferenceSpace.fit(prepared, embedding_key=embedding_key, seed=seed)
    return (space, prepared.overlap) if return_overlap else space


@dataclass
class Preview:
    """The selection shown now: committed + manual picks + the sampler's proposal.

    ``terms_measured``: reward terms ``(r_sc, r_type, r_sp, r_unc)`` of the sequenced set;
    ``terms_expected``: the same for the proposed set, with the cell states of unsequenced
    spots PREDICTED from the sequenced ones (nothing unsequenced is read; ``has_prediction``
    says whether a prediction existed, else only sequenced spots count).
    """

    result: Proposal
    terms_measured: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    terms_expected: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    has_prediction: bool = False
    #: False while the expected terms are still being computed (a GUI shows the selection first,
    #: :meth:`AcquisitionSession.show_terms` fills them and emits ``terms_changed``)
    terms_ready: bool = True

    @property
    def state(self) -> SelectionState:
        return self.result.state

    @property
    def proposal(self) -> np.ndarray:
        """The sampler's new picks (pool indices, pick order)."""
        return self.result.picks

    @property
    def scores(self) -> np.ndarray | None:
        return self.result.scores

    @property
    def n_new(self) -> int:
        return self.result.n_new

    @property
    def total_budget(self) -> int:
        return self.result.budget

    @property
    def message(self) -> str:
        return self.result.message

    @property
    def seconds(self) -> float:
        return self.result.seconds


@dataclass(frozen=True)
class PolicyCheck:
    """How the SCRL policy's proposal compares with the greedy reward maximiser's on the same state.

    Both propose the current round from the same committed selection and manual picks, at the
    same weights, with the same information (predictions from the sequenced spots only). Their
    reward is the weighted total of the EXPECTED terms of the selection with the proposal (the
    chart's terms: cell states and types of unsequenced spots predicted; before 5 spots are
    sequenced only spatial coverage counts); ``*_gain`` is that total minus the total of the
    selection without the proposal (committed + manual picks), i.e. what the round adds.
    ``trained``: the policy has a training history (pre-trained here or loaded trained);
    ``predicted``: cell states and types of unsequenced spots could be predicted (5 or more
    sequenced), else the comparison is on spatial coverage alone.
    """

    trained: bool
    weights: tuple[float, float, float]
    policy_terms: tuple[float, float, float]
    greedy_terms: tuple[float, float, float]
    policy_gain: float
    greedy_gain: float
    n_new: int
    predicted: bool = False
    seconds: float = 0.0

    @property
    def ratio(self) -> float | None:
        """Policy gain / greedy gain (None when greedy gains nothing: nothing to compare)."""
        if self.n_new <= 0 or self.greedy_gain <= 1e-9:
            return None
        return float(self.policy_gain / self.greedy_gain)

    @property
    def shortfall(self) -> float | None:
        """How far (a fraction) the policy's gain falls below greedy's; negative when above."""
        r = self.ratio
        return None if r is None else 1.0 - r

    @property
    def verdict(self) -> str:
        """``"untrained"``, ``"weak"`` (shortfall > :data:`POLICY_WEAK_SHORTFALL`), ``"ok"``, or
        ``"none"`` (nothing to compare this round)."""
        if not self.trained:
            return "untrained"
        if self.shortfall is None:
            return "none"
        return "weak" if self.shortfall > POLICY_WEAK_SHORTFALL else "ok"

    def comparison(self) -> str:
        """``its reward is 23% below greedy's at these weights`` (or within / above)."""
        f = self.shortfall
        if f is None:
            if self.n_new <= 0:
                return "no new picks this round to compare with greedy"
            if not self.predicted:
                return ("nothing to compare with greedy at these weights: until 5 spots are sequenced only "
                        "spatial coverage can be expected")
            return "neither it nor greedy adds expected reward at these weights"
        pct = abs(100.0 * f)
        if self.policy_gain <= 0:  # e.g. spots of an abundant type lower the cell-type entropy
            return "its proposal adds nothing to the expected reward at these weights, greedy's does"
        if f > POLICY_WEAK_SHORTFALL:
            return f"its reward is {pct:.0f}% below greedy's at these weights"
        if f >= 0:
            return f"its reward is within {max(pct, 1):.0f}% of greedy's at these weights"
        return f"its reward is {pct:.0f}% above greedy's at these weights"

    @property
    def message(self) -> str:
        v = self.verdict
        if v == "untrained":
            return f"Policy untrained: {self.comparison()}. Pre-train it, load a trained one, or use greedy."
        if v == "weak":
            return f"Policy weak: {self.comparison()}. Pre-train it longer or use greedy."
        if v == "ok":
            return f"Policy OK: {self.comparison()}."
        return f"Policy check: {self.comparison()}."


@dataclass(frozen=True)
class ExportRecord:
    """The last selection written for the lab (:meth:`AcquisitionSession.export_round`).

    ``rounds``: the rounds its spots belong to, counted from 1 (as the file's ``round`` column);
    ``round``: the latest of them; ``which``: ``pending``, ``all`` or ``sequenced``;
    ``state_path``: the run's state written beside it (None: none).
    """

    path: Path
    rounds: tuple[int, ...]
    n_spots: int
    which: str = "pending"
    state_path: Path | None = None

    @property
    def round(self) -> int:
        return max(self.rounds) if self.rounds else 0

    @property
    def round_text(self) -> str:
        """``round 2`` or ``rounds 1-2`` (counted from 1)."""
        r = sorted(self.rounds)
        if len(r) <= 1:
            return f"round {self.round}"
        if r == list(range(r[0], r[-1] + 1)):
            return f"rounds {r[0]}-{r[-1]}"
        return "rounds " + ", ".join(map(str, r))

    @property
    def message(self) -> str:
        """``exported round 1 to /path/x.csv``."""
        return f"exported {self.round_text} to {self.path}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "rounds": [int(r) for r in self.rounds], "n_spots": int(self.n_spots),
                "which": self.which, "state_path": None if self.state_path is None else str(self.state_path)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportRecord:
        sp = d.get("state_path")
        return cls(Path(str(d["path"])), tuple(int(r) for r in d.get("rounds", ())), int(d.get("n_spots", 0)),
                   str(d.get("which", "pending")), None if sp is None else Path(str(sp)))


#: the key of :attr:`AcquisitionSession.last_export` in the saved state's ``meta``
LAST_EXPORT_KEY = "last_export"


class _Cache:
    """Per-key caches of the session: each entry is ONE ``(key, value)`` tuple, so a reader in
    another thread (a re-selection worker) never pairs a key with another key's value."""

    _NONE = (object(), None)

    def __init__(self) -> None:
        self._d: dict[str, tuple[Any, Any]] = {}

    def get(self, name: str, key: Any, default: Any = None) -> Any:
        k, v = self._d.get(name, self._NONE)
        return v if k == key else default

    def has(self, name: str, key: Any) -> bool:
        return self._d.get(name, self._NONE)[0] == key

    def put(self, name: str, key: Any, value: Any) -> None:
        self._d[name] = (key, value)

    def drop(self, name: str) -> None:
        self._d.pop(name, None)


class AcquisitionSession:
    """One acquisition run over one section or collection (see the module docstring).

    ``reference``: a single-cell reference AnnData (raw counts, cell types in ``obs``), or
    ``space`` an already fitted :class:`~napari_scr2st.reference.ReferenceSpace`.
    ``simulate``: reveal counts from the section itself (default: when it has counts).
    """

    prepared = Signal()
    selection_changed = Signal()
    #: the reward terms of the shown preview were computed after it was shown (GUI two-step path)
    terms_changed = Signal()
    #: a re-selection run by :attr:`reselect_runner` failed (the message; e.g. a budget larger
    #: than the pool): a GUI shows it where the synchronous path would raise
    selection_failed = Signal(str)
    predictions_changed = Signal()
    rois_changed = Signal()
    #: a reference or its fitted space was set, fitted or cleared, or another cell-type column chosen
    reference_changed = Signal()
    #: the gene shown by the maps and the inspector (:attr:`gene`); the new gene
    gene_changed = Signal(str)
    #: a selection was written for the lab (:attr:`last_export`)
    exported = Signal()

    def __init__(self, adata, *, reference=None, space=None, settings: SamplingSettings | None = None,
                 training: TrainingSettings | None = None, library: str | None = None,
                 simulate: bool | None = None, celltype_key: str | None = None,
                 embedding_key: str | None = None) -> None:
        self.adata = adata
        secs = adata.obs[SECTION_KEY].astype(str).unique() if SECTION_KEY in adata.obs else ["section"]
        self.library = library or "+".join(map(str, secs))
        self._reference = reference
        self._space = space
        self._celltype_key = celltype_key
        self._space_fitted = False  # iter_prepare fitted a new space: finish_prepare announces it
        self._gene: str | None = None
        #: the last selection written for the lab (None: nothing exported yet); saved with the state
        self.last_export: ExportRecord | None = None
        self.embedding_key = embedding_key
        self.gene_overlap = None  # GeneOverlap of the reference with the spots, once fitted
        self.sampling = settings if settings is not None else SamplingSettings()
        self.training = training if training is not None else TrainingSettings()
        self.has_counts = has_counts(adata)
        self.simulate = self.has_counts if simulate is None else bool(simulate)
        if self.simulate and not self.has_counts:
            raise ValueError("simulated sequencing needs a fully measured section (with counts)")
        self.acq: Acquisition | None = None
        self.policy = None
        self.policy_source = "none"
        self.vision_model = (adata.uns.get("vision_embedding", {}).get("model")
                             if self.sampling.vision_key in adata.obsm else None)
        self.embedder = None
        self.evaluator = None
        self.predictor = None
        self.train_adata = None
        self.predictions = None  # DataFrame (spots x panel genes), log1p scale
        self.preview: Preview | None = None
        self.include_mask: np.ndarray | None = None
        self.exclude_mask: np.ndarray | None = None
        self._excluded_ids = np.zeros(adata.n_obs, dtype=bool)  # exclusions by id (API/CLI)
        self._pending_state: SelectionState | None = None
        self._cache = _Cache()
        #: bumped by every change of the sampling settings or the policy (with ``acq.version``
        #: it says whether a proposal computed in a worker is still the one to show)
        self._generation = 0
        #: ``None``: :meth:`reselect` computes and shows the proposal at once. A GUI sets a
        #: callable taking no argument that computes :meth:`compute_preview` in a worker and
        #: shows it on the main thread with :meth:`show_preview` (newest request wins).
        self.reselect_runner: Any = None
        #: the last note about exclusions changing the pool (and the spots the budget buys);
        #: cleared when the budget setting changes
        self.pool_note = ""

    # ------------------------------------------------------------------ evented attributes
    @property
    def reference(self):
        """The single-cell reference AnnData (None: none); setting it emits ``reference_changed``."""
        return self._reference

    @reference.setter
    def reference(self, value) -> None:
        if value is not self._reference:
            self._reference = value
            self.reference_changed.emit()

    @property
    def space(self):
        """The fitted :class:`~napari_scr2st.reference.ReferenceSpace` (None: not fitted); setting
        it emits ``reference_changed``."""
        return self._space

    @space.setter
    def space(self, value) -> None:
        if value is not self._space:
            self._space = value
            self.reference_changed.emit()

    @property
    def celltype_key(self) -> str | None:
        """The reference's cell-type column (None: the best candidate); a change emits ``reference_changed``."""
        return self._celltype_key

    @celltype_key.setter
    def celltype_key(self, value: str | None) -> None:
        if value != self._celltype_key:
            self._celltype_key = value
            self.reference_changed.emit()

    @property
    def gene(self) -> str | None:
        """The gene the maps and the inspector show; a change emits ``gene_changed(gene)``."""
        return self._gene

    @gene.setter
    def gene(self, value: str | None) -> None:
        value = None if value is None else str(value)
        if value != self._gene:
            self._gene = value
            if value is not None:
                self.gene_changed.emit(value)

    def set_reference(self, reference, *, celltype_key: str | None = None) -> None:
        """Use a new single-cell reference: its cell-type column ``celltype_key`` (None: the best
        candidate); a space fitted on the previous one and the policy built on it are dropped
        (Prepare fits the new one). One ``reference_changed``."""
        with self.reference_changed.blocked():
            self.reference = reference
            self.celltype_key = celltype_key
            if self.space is not None:
                self.space = None
                self.policy = None
        self.reference_changed.emit()

    def set_celltype_key(self, key: str | None) -> bool:
        """Use the reference's cell-type column ``key``; a space fitted on another column is
        dropped (True when dropped: Prepare refits it). ``reference_changed`` when anything changed."""
        dropped = False
        before = self._celltype_key
        with self.reference_changed.blocked():
            self.celltype_key = key
            if self.space is not None and self.space.meta.get("celltype_key") not in (None, key):
                self.space = None
                self.policy = None
                dropped = True
        if dropped or key != before:
            self.reference_changed.emit()
        return dropped

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        return int(self.adata.n_obs)

    @property
    def is_prepared(self) -> bool:
        return self.acq is not None

    @property
    def pool(self) -> Pool | None:
        return self.acq.pool if self.acq is not None else None

    @property
    def committed(self) -> SelectionState | None:
        return self.acq.committed if self.acq is not None else None

    @property
    def oracle(self):
        return self.acq.oracle if self.acq is not None else None

    @property
    def manual(self) -> list[int]:
        return list(self.acq.manual) if self.acq is not None else []

    @property
    def history(self) -> list[dict[str, float]]:
        """Reward terms of the measured set after each completed round."""
        if self.acq is None:
            return []
        return [{"round": float(h.round), "n": float(h.n_measured), "r_sc": h.terms.sc, "r_type": h.terms.type,
                 "r_sp": h.terms.sp, "r_unc": h.terms.unc} for h in self.acq.history]

    @property
    def current_round(self) -> int:
        """Rounds committed so far (the index of the next round to propose)."""
        return self.acq.current_round if self.acq is not None else 0

    @property
    def rounds_done(self) -> bool:
        return self.acq is not None and self.acq.rounds_done

    @property
    def waiting_for_counts(self) -> bool:
        return self.acq is not None and self.acq.waiting_for_counts

    @property
    def weights(self) -> RewardWeights:
        return RewardWeights(*self.sampling.reward_weights)

    @property
    def excluded(self) -> np.ndarray:
        """Spots never to pick: ROI exclusions, outside the include ROIs, and excluded ids."""
        ex = self._excluded_ids.copy()
        if self.exclude_mask is not None:
            ex |= self.exclude_mask
        if self.include_mask is not None and self.include_mask.any():
            ex |= ~self.include_mask
        return ex

    def _request(self) -> SelectionRequest:
        s = self.sampling
        return SelectionRequest(budget=s.budget, rounds=s.rounds, seed=s.seed, per_section=s.per_section)

    # ------------------------------------------------------------------ preparation
    def iter_prepare(self, *, encoder: str | None = None, device: str = "auto",
                     policy: Any = None) -> Generator[Progress, None, None]:
        """Vision embedding (if missing), reference space, pool, state, oracle and policy.

        ``policy``: an SCRL policy or the path of one (default: ``settings.policy_path``, else
        an untrained policy when there is a reference space). Safe in a worker thread: attributes are
        assigned only at the end. Call :meth:`finish_prepare` afterwards (main thread).
        """
        adata = self.adata
        key = self.sampling.vision_key
        vision_model = self.vision_model
        if key not in adata.obsm:
            enc = encoder or self.sampling.encoder
            yield Progress(0, 0, f"embedding spots with {enc}")
            vision_model = yield from _iter_vision(adata, enc, key=key, device=device)
        space = self.space
        if space is None and self.reference is not None:
            yield Progress(0, 0, "fitting the single-cell reference space")
            space, overlap = fit_reference_space(self.reference, adata,
                                                 celltype_key=self.celltype_key, embedding_key=self.embedding_key,
                                                 seed=self.sampling.seed, spots_name=self.library,
                                                 return_overlap=True)
            self.gene_overlap = overlap
        yield Progress(0, 0, "building the candidate pool")
        pool = Pool.from_adata(adata, vision_key=key)
        state = self._pending_state if self._pending_state is not None else SelectionState.for_pool(pool)
        state.check_pool(pool)
        oracle = None
        if self.simulate:
            from .sampling.loop import SimulatedOracle

            oracle = SimulatedOracle(adata, pool)
        pol, source = self.policy, self.policy_source
        policy = policy if policy is not None else (self.sampling.policy_path or None)
        if isinstance(policy, (str, os.PathLike)):
            pol, source = _load_policy(policy), f"loaded from {policy}"
        elif policy is not None:
            pol, source = policy, "given"
        if space is not None and pol is None:  # SCRL stays one click away, with an honest label
            pol, source = _new_policy(space, seed=self.sampling.seed), "untrained (pre-train or load one)"
        if space is not None and pol is not None:
            pol.check_space(space)
        embedder = evaluator = None
        if space is not None:
            from .sampling.measured import MeasuredEmbedder, RewardEvaluator

            embedder = MeasuredEmbedder(space)
            evaluator = RewardEvaluator(space, pool, self.weights, embedder=embedder)
        acq = Acquisition(pool, self._request(), state=state, oracle=oracle, evaluator=evaluator)
        saved = Acquisition.saved_settings(state)
        if saved.excluded:
            self._excluded_ids[np.asarray(saved.excluded, dtype=np.int64)] = True
        acq.set_excluded(self.excluded)
        if saved.manual:
            acq.lock(saved.manual)
        # all assignments at the end (a worker thread may run the part above)
        self.vision_model = vision_model
        # no signal from here (a worker thread may run this): finish_prepare announces a new space
        self._space_fitted = self._space_fitted or space is not self._space
        self._space, self.policy, self.policy_source = space, pol, source
        self.embedder, self.evaluator = embedder, evaluator
        self.acq = acq
        self._pending_state = None
        self._cache = _Cache()
        self._generation += 1  # a new acquisition counts its versions from 0 again
        if self.sampling.sampler in REFERENCE_SAMPLERS and space is None:
            self.sampling = replace(self.sampling, sampler=FALLBACK_SAMPLER)
        yield Progress(1, 1, "ready")

    def finish_prepare(self) -> None:
        """After :meth:`iter_prepare` (main thread): signals and the first proposal."""
        if self._space_fitted:
            self._space_fitted = False
            self.reference_changed.emit()
        self.prepared.emit()
        self.reselect()

    def prepare(self, **kw) -> AcquisitionSession:
        """:meth:`iter_prepare` to the end, then :meth:`finish_prepare`; returns self."""
        for _ in self.iter_prepare(**kw):
            pass
        self.finish_prepare()
        return self

    def _require(self) -> Acquisition:
        if self.acq is None:
            raise RuntimeError("prepare the section first")
        return self.acq

    # ------------------------------------------------------------------ policy
    def set_policy(self, policy, source: str) -> None:
        if self.space is not None:
            policy.check_space(self.space)
        self.policy, self.policy_source = policy, source
        self._cache.drop("sampler")
        self._generation += 1
        self.reselect()

    def iter_pretrain(self, episodes: int, *, token: CancelToken | None = None,
                      copy: bool = False) -> Generator[Progress, None, Any]:
        """Pre-train the policy on this (fully measured) section by simulated episodes.

        The recipe of ``scr2st train-policy`` (:class:`~napari_scr2st.config.PolicyTrainingSettings`)
        for ``episodes`` in all (:meth:`~napari_scr2st.config.PolicyTrainingSettings.split`: an
        imitation warm start from the greedy reward maximiser, then REINFORCE), with this
        session's number of rounds (at least 2) instead of the recipe's. ``copy``: train a
        copy and return it, leaving :attr:`policy` as it is (a GUI swaps it in with
        :meth:`set_policy` when done; a cancel then changes nothing); else in place.
        """
        if self.space is None:
            raise RuntimeError("prepare the section with a single-cell reference first")
        if not self.has_counts:
            raise RuntimeError("pre-training simulates sequencing and needs a section with counts")
        from .sampling.scrl import PolicyEnv, iter_train_policy

        if self.policy is None:
            self.policy, self.policy_source = _new_policy(self.space, seed=self.sampling.seed), "untrained"
        policy = _copy_policy(self.policy) if copy else self.policy
        env = PolicyEnv.from_adata(self.adata, self.space, vision_key=self.sampling.vision_key)
        recipe = PolicyTrainingSettings()
        imitation, reinforce = recipe.split(episodes)
        with _torch_guard():
            yield from iter_train_policy(policy, [env], self.space, episodes=reinforce,
                                         rounds=max(2, int(self.sampling.rounds)), group_size=recipe.group_size,
                                         budget_range=recipe.budget_range, lr=recipe.lr,
                                         seed=self.sampling.seed, imitation_episodes=imitation, token=token)
        return policy

    # ------------------------------------------------------------------ locks, ROIs, manual picks
    def lock(self, ids: Sequence[Any]) -> int:
        """Spots that must be sequenced (ids or ``section:id``): manual picks of the current round."""
        acq = self._require()
        added = acq.lock(self.pool.lookup(list(ids), what="locked spots"))
        self.reselect()
        return len(added)

    def exclude(self, ids: Sequence[Any]) -> list[str]:
        """Spots never to pick (ids); returns notes (manual picks dropped)."""
        acq = self._require()
        self._excluded_ids[self.pool.lookup(list(ids), what="excluded spots")] = True
        return self._apply_exclusions(acq)

    def set_rois(self, include: np.ndarray | None, exclude: np.ndarray | None) -> list[str]:
        """New include/exclude masks (from ROI shapes); returns notes for the user."""
        inc = None if include is None or not np.any(include) else np.array(include, dtype=bool)
        exc = None if exclude is None or not np.any(exclude) else np.array(exclude, dtype=bool)
        if _same(inc, self.include_mask) and _same(exc, self.exclude_mask):
            return []
        changed = [name for name, a, b in (("Include ROI", inc, self.include_mask),
                                           ("Exclusion ROI", exc, self.exclude_mask)) if not _same(a, b)]
        self.include_mask, self.exclude_mask = inc, exc
        what = changed[0] if len(changed) == 1 else "ROIs"
        notes = self._apply_exclusions(self.acq, what) if self.acq is not None else []
        self.rois_changed.emit()
        return notes

    def _apply_exclusions(self, acq: Acquisition, what: str = "Excluded spots") -> list[str]:
        n_before, budget_before = int(acq.pool.excluded.sum()), self.budget_spots()
        dropped = acq.set_excluded(self.excluded)
        notes = []
        n_after = int(acq.pool.excluded.sum())
        if n_after != n_before:
            self.pool_note = self._pool_note(what, n_before, n_after, budget_before, self.budget_spots())
            notes.append(self.pool_note)
        if dropped:
            notes.append(f"{len(dropped)} manual pick(s) inside an excluded region were removed")
        self.reselect()
        return notes

    def budget_spots(self) -> int | None:
        """The number of spots the budget buys now (all rounds; a percentage or fraction is of the
        SELECTABLE spots, i.e. the pool without exclusions); None when it cannot be resolved
        (e.g. more spots than the pool has)."""
        acq = self.acq
        if acq is None:
            return None
        try:
            total, _ = plan_rounds(acq.pool, acq.request, SelectionState.for_pool(acq.pool))
        except ValueError:
            return None
        return int(total)

    def _pool_note(self, what: str, n_before: int, n_after: int, budget_before: int | None,
                   budget_after: int | None) -> str:
        pool = self.acq.pool
        head = f"{what}: {n_after} of {pool.n} spots excluded (was {n_before})"
        b = str(self.sampling.budget).strip()
        relative = b.endswith("%") or _is_fraction(b)
        label = b if b.endswith("%") else (f"{100 * float(b):g}%" if relative else f"{b}-spot")
        if budget_after is None:
            return f"{head}; the {label} budget no longer fits the {pool.n_in_pool} selectable spots"
        if budget_after == budget_before:
            return f"{head}; the {label} budget stays {budget_after} spots"
        tail = f", {label} of the {pool.n_in_pool} selectable spots" if relative else ""
        was = f" (was {budget_before})" if budget_before is not None else ""
        return f"{head}; the {label} budget is now {budget_after} spots{was}{tail}"

    def toggle_manual(self, index: int) -> str:
        """Add or remove a manual pick for the current round; returns a status message."""
        if self.acq is None:
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
        if i in self.acq.manual:
            self.acq.unlock([i])
            msg = f"manual pick removed: {name}"
        else:
            self.acq.lock([i])
            msg = f"manual pick: {name}"
        self.reselect()
        return msg

    # ------------------------------------------------------------------ live selection
    def update_settings(self, **changes) -> None:
        """Change sampling settings (budget, rounds, sampler, weights, seed, ...)."""
        new = replace(self.sampling, **changes)
        if (new.budget, new.per_section) != (self.sampling.budget, self.sampling.per_section):
            self.pool_note = ""  # its "was N spots" was about another budget
        if new != self.sampling:
            self._generation += 1
        self.sampling = new
        if self.evaluator is not None:
            self.evaluator.weights = self.weights
        if self.acq is not None:
            self.acq.set_request(budget=self.sampling.budget, rounds=self.sampling.rounds,
                                 seed=self.sampling.seed, per_section=self.sampling.per_section)

    def make_sampler(self):
        """The sampler of the current settings (cached; its weights follow the settings)."""
        from .sampling.registry import make_sampler

        s = self.sampling
        if s.sampler in REFERENCE_SAMPLERS and self.space is None:
            raise RuntimeError(f"the {s.sampler} sampler needs a single-cell reference")
        key = (s.sampler, s.seed, id(self.policy), id(self.space))
        smp = self._cache.get("sampler", key)
        if smp is None:
            if s.sampler == "scrl" and self.policy is None:
                self.policy = _new_policy(self.space, seed=s.seed)
                self.policy_source = "untrained (pre-train or load one)"
                key = (s.sampler, s.seed, id(self.policy), id(self.space))
            smp = make_sampler(s.sampler, seed=s.seed, space=self.space, weights=self.weights, policy=self.policy)
            if self.embedder is not None and hasattr(smp, "embedder"):
                smp.embedder = self.embedder
            self._cache.put("sampler", key, smp)
        if hasattr(smp, "weights"):
            smp.weights = self.weights
        return smp

    def selection_key(self) -> tuple | None:
        """What the proposal depends on: the acquisition's version (selection, picks, pool,
        budget and rounds), sampler, seed, policy and (for the reward samplers) the weights;
        None before :meth:`iter_prepare`."""
        acq, s = self.acq, self.sampling
        if acq is None:
            return None
        return (acq.version, s.sampler, s.seed, id(self.policy), getattr(self.policy, "_version", 0),
                s.reward_weights if s.sampler in REFERENCE_SAMPLERS else None)

    def selection_token(self) -> tuple | None:
        """:meth:`selection_key` and a counter of every settings or policy change: a proposal
        computed while this token held is the one to show only while it still holds."""
        key = self.selection_key()
        return None if key is None else (key, self._generation)

    def propose(self) -> Proposal:
        """The current round's proposal for the current settings (changes nothing but caches;
        may run in a worker thread: a proposal is cached only when nothing changed meanwhile)."""
        acq = self._require()
        token = self.selection_token()
        key = token[0]
        prop = self._cache.get("proposal", key)
        if prop is not None:
            return prop
        prop = acq.propose(self.make_sampler())
        if self.selection_token() == token:  # a change meanwhile (main thread): not cached
            self._cache.put("proposal", key, prop)
        return prop

    def compute_preview(self, *, terms: bool = True) -> tuple[tuple | None, Preview | None]:
        """``(token, preview)``: the proposal for the current settings and its reward terms,
        WITHOUT showing it (nothing but caches changes). Safe in a worker thread while the main
        thread only reads the session; show the result there with :meth:`show_preview`, which
        drops it when the settings or the selection changed since (``token``).

        ``terms=False``: only the terms of the sequenced set (cached per selection); the
        expected terms follow with :meth:`compute_terms` and :meth:`show_terms` (the selection
        can be drawn before its reward terms, which cost more than the proposal)."""
        token = self.selection_token()
        if token is None:
            return None, None
        prev = Preview(self.propose())
        if terms:
            self._fill_terms(prev)
        else:
            prev.terms_measured = self._measured_terms()
            prev.terms_ready = False
        return token, prev

    def compute_terms(self, preview: Preview) -> tuple[tuple[float, ...], bool]:
        """``(expected terms, has_prediction)`` of ``preview`` (worker-safe, changes nothing)."""
        return self._terms_of(np.flatnonzero(preview.state.selected))

    def show_terms(self, preview: Preview, token, terms: tuple[tuple[float, ...], bool]) -> bool:
        """Give the shown ``preview`` its expected terms (main thread) and emit ``terms_changed``;
        False when ``preview`` is not shown any more or ``token`` is stale."""
        if preview is not self.preview or not self.is_current(token):
            return False
        preview.terms_expected, preview.has_prediction = terms
        preview.terms_ready = True
        self.terms_changed.emit()
        return True

    def is_current(self, token) -> bool:
        """True while ``token`` (of :meth:`compute_preview`) is the current state's."""
        return token is not None and token == self.selection_token()

    def show_preview(self, preview: Preview | None, token) -> bool:
        """Show ``preview`` (main thread): set :attr:`preview` and emit ``selection_changed``;
        False (nothing changes) when it is stale, i.e. ``token`` is not current any more."""
        if preview is None or not self.is_current(token):
            return False
        self.preview = preview
        self.selection_changed.emit()
        return True

    def reselect(self) -> Preview | None:
        """Recompute the preview for the current settings and emit ``selection_changed``.

        With a :attr:`reselect_runner` (a GUI), the runner is asked to do it (in a worker) and
        the preview shown NOW is returned (the new one follows with ``selection_changed``)."""
        if self.acq is None:
            return None
        if self.reselect_runner is not None:
            self.reselect_runner()
            return self.preview
        token, prev = self.compute_preview()
        self.show_preview(prev, token)
        return prev

    def _fill_terms(self, prev: Preview) -> None:
        """Reward terms of the sequenced set and the EXPECTED terms with the proposal."""
        prev.terms_measured = self._measured_terms()
        prev.terms_expected, prev.has_prediction = self._terms_of(np.flatnonzero(prev.state.selected))

    def _measured_terms(self) -> tuple[float, float, float, float]:
        key = (self.acq.version, int(self.committed.measured.sum()))
        measured = self._cache.get("terms_measured", key)
        if measured is None:  # the sequenced set changes only with the acquisition's version
            measured = self._terms_of(np.flatnonzero(self.committed.measured), expected=False)[0]
            self._cache.put("terms_measured", key, measured)
        return measured

    def expected_terms(self, state: SelectionState) -> tuple[float, float, float, float]:
        """The reward terms ``(r_sc, r_type, r_sp, r_unc)`` expected for the spots ``state`` selects:
        sequenced spots by their counts, the others by their cell states and types PREDICTED
        from the sequenced ones (only spatial coverage counts for them before 5 are sequenced)."""
        return self._terms_of(np.flatnonzero(state.selected))[0]

    def _terms_of(self, selected: np.ndarray, *,
                  expected: bool = True) -> tuple[tuple[float, float, float, float], bool]:
        """Terms of the spots ``selected`` (excluded spots dropped) and whether a prediction was used;
        ``expected=False``: the measured set (``selected`` are the sequenced spots)."""
        from .sampling.measured import variance_index
        from .sampling.reward import celltype_entropy, manifold_coverage, spatial_coverage

        pool = self.pool
        sel = np.asarray(selected, dtype=np.int64)
        if expected:
            sel = sel[~pool.excluded[sel]]
        sp = float(spatial_coverage(pool.spatial_index(), selected=sel))
        unc = float(variance_index(pool).value(sel))  # exact for a proposal too: it needs no expression
        if self.space is None:
            return (0.0, 0.0, sp, unc), False
        pred = self._predicted()
        m = pred[3] if pred is not None else self.embedder(self.committed)
        clusters, types = np.asarray(m.cluster, dtype=np.int64), np.asarray(m.codes, dtype=np.int64)
        used = False
        if expected and pred is not None:
            extra = np.setdiff1d(sel, m.index)
            clusters = np.concatenate([clusters, np.asarray(pred[0][extra], dtype=np.int64)])
            types = np.concatenate([types, np.asarray(pred[1][extra], dtype=np.int64)])
            used = True
        sc = float(manifold_coverage(clusters, self.space.n_clusters)) if clusters.size else 0.0
        ty = float(celltype_entropy(types, self.space.n_types)) if types.size else 0.0
        return (sc, ty, sp, unc), used

    # ------------------------------------------------------------------ is the policy any good?
    def _policy_check_key(self):
        acq, s, pol = self.acq, self.sampling, self.policy
        return (acq.version, s.seed, tuple(float(w) for w in s.weights), id(pol), getattr(pol, "_version", 0),
                len(getattr(pol, "history", ())))

    def cached_policy_check(self) -> PolicyCheck | None:
        """The :meth:`check_policy` result for the current state and weights, if computed."""
        if self.acq is None or self.policy is None:
            return None
        return self._cache.get("policy_check", self._policy_check_key())

    def check_policy(self) -> PolicyCheck | None:
        """Compare the SCRL policy's proposal with the greedy reward maximiser's (see
        :class:`PolicyCheck`) at the current weights on the current state; cached per state,
        weights and policy. None without a reference space or policy. Changes nothing else, so
        a GUI may run it in a worker (:meth:`iter_check_policy`)."""
        import time

        if self.acq is None or self.space is None or self.policy is None:
            return None
        key = self._policy_check_key()
        if self._cache.has("policy_check", key):
            return self._cache.get("policy_check", key)
        t0 = time.perf_counter()
        from .sampling.registry import make_sampler

        acq, s, w = self.acq, self.sampling, self.weights
        current_key = (acq.version, "scrl", s.seed, id(self.policy), getattr(self.policy, "_version", 0),
                       s.reward_weights)
        cur = self._cache.get("proposal", current_key)
        if cur is not None:
            prop = cur  # the preview already is the policy's proposal
        else:
            prop = acq.propose(make_sampler("scrl", seed=s.seed, space=self.space, weights=w, policy=self.policy,
                                            embedder=self.embedder))
        greedy = acq.propose(make_sampler("greedy", seed=s.seed, space=self.space, weights=w, embedder=self.embedder))
        base = self.expected_terms(acq.base_state())
        (pt, predicted), gt = self._terms_of(np.flatnonzero(prop.state.selected)), self.expected_terms(greedy.state)
        wa = w.as_array()
        r0 = float(wa @ np.asarray(base))
        check = PolicyCheck(trained=bool(getattr(self.policy, "history", None)), weights=tuple(map(float, wa)),
                            policy_terms=pt, greedy_terms=gt, policy_gain=float(wa @ np.asarray(pt)) - r0,
                            greedy_gain=float(wa @ np.asarray(gt)) - r0, n_new=len(greedy.picks), predicted=predicted,
                            seconds=time.perf_counter() - t0)
        self._cache.put("policy_check", key, check)
        return check

    def iter_check_policy(self) -> Generator[Progress, None, PolicyCheck | None]:
        """:meth:`check_policy` as a progress generator (for a worker)."""
        yield Progress(0, 0, "comparing the policy with greedy")
        return self.check_policy()

    def _predicted(self):
        """Predicted reference-space cluster/type of every spot from the sequenced spots
        (ridge on vision + location; None until 5 spots are sequenced). Cached per version."""
        key = (self.acq.version, int(self.committed.measured.sum()))
        if self._cache.has("predicted", key):
            return self._cache.get("predicted", key)
        out = None
        if self.space is not None and self.committed.measured.sum() >= 5:
            from .sampling.surrogate import SpacePredictor

            m = self.embedder(self.committed)
            zp = SpacePredictor(self.space, min_train=5)(self.pool, self.committed, m.index, m.z)
            if zp is not None:
                lt = self.space.transfer_labels(zp)
                out = (self.space.nearest_cluster(zp), lt.codes, np.asarray(lt.labels, dtype=object), m)
        self._cache.put("predicted", key, out)
        return out

    # ------------------------------------------------------------------ sequencing
    def commit(self) -> SelectionState:
        """Send the current proposal for sequencing (its spots become pending)."""
        acq = self._require()
        st = acq.commit(self.propose())
        self.reselect()
        return st

    def sequence_simulated(self) -> np.ndarray:
        """Commit the current proposal and reveal it from the section's own counts (simulation)."""
        return self.apply_sequenced(self.stage_sequence_simulated())

    def stage_sequence_simulated(self) -> StagedRound:
        """:meth:`sequence_simulated` computed on copies, changing nothing (the proposal, the
        revealed counts and the round's reward record; safe in a worker thread while the main
        thread only reads). Take it with :meth:`apply_sequenced` on the main thread."""
        acq = self._require()
        if acq.oracle is None:
            raise RuntimeError("this section has no counts to simulate sequencing; export the selection instead")
        prop = None
        if not acq.waiting_for_counts:
            if acq.rounds_done:
                raise RuntimeError("all rounds are done: raise the number of rounds to pick more")
            prop = self.propose()
            if not prop.state.pending.any():
                raise RuntimeError("nothing to sequence in this round")
        return acq.stage_sequence(prop)

    def apply_sequenced(self, staged: StagedRound) -> np.ndarray:
        """Take a :meth:`stage_sequence_simulated` result (main thread; refused with a clear
        error when the selection changed since) and re-select; returns the revealed indices."""
        idx = self._require().apply_staged(staged)
        self.reselect()
        return idx

    def iter_run_simulated(self, *, token: CancelToken | None = None) -> Generator[Progress, None, SelectionState]:
        """Every remaining round in simulation (propose -> commit -> reveal), one event per round."""
        acq = self._require()
        total = max(1, acq.n_rounds - acq.current_round)
        step = 0
        while not acq.rounds_done or acq.waiting_for_counts:
            if token is not None:
                token.raise_if_cancelled()
            r = acq.current_round
            self.sequence_simulated()
            step += 1
            metrics = {"selected": float(self.committed.n_selected)}
            if acq.history:
                metrics.update(acq.history[-1].terms.as_dict(self.weights))
            yield Progress(step, total, f"round {r + 1}", metrics=metrics)  # counted from 1
        return self.committed

    def commit_for_export(self) -> SelectionState:
        """Fix the current proposal for the lab unless a round already waits for counts."""
        acq = self._require()
        if not acq.waiting_for_counts and not acq.rounds_done:
            prop = self.propose()
            if prop.state.pending.any():
                acq.commit(prop)
                self.reselect()
        return self.committed

    def import_results(self, path, *, section: str | None = None, overwrite: bool = False) -> np.ndarray:
        """Import the lab's counts file (spots x genes) into the committed selection."""
        acq = self._require()
        sec = section
        if sec is None and self.pool.section_names and len(self.pool.section_names) == 1:
            sec = self.pool.section_names[0]
        genes = [str(g) for g in self.adata.var_names] if self.adata.n_vars else None
        idx = acq.import_counts(path, section=sec, overwrite=overwrite, genes=genes)
        self.reselect()
        return idx

    def reset_selection(self) -> None:
        """Forget every pick (the revealed counts too)."""
        if self.acq is None:
            return
        self.acq.reset()
        self.last_export = None  # its round is gone with the picks
        self.reselect()

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """The run's state (selection, counts, request, manual picks, exclusions, settings)."""
        acq = self._require()
        acq.committed.meta["settings"] = self.sampling.to_dict()
        return acq.save(path)

    def load(self, path: str | Path) -> SelectionState:
        """Continue the run saved in ``path`` (before :meth:`iter_prepare`, or re-prepares the pool).

        Settings saved with it (budget, rounds, seed, per-section) are restored; sampler and
        weights stay as set now.
        """
        st = SelectionState.load(path)
        rec = st.meta.get(LAST_EXPORT_KEY)
        if isinstance(rec, dict) and "path" in rec:
            self.last_export = ExportRecord.from_dict(rec)
        saved = st.meta.get("settings", {})
        keep = {k: saved[k] for k in ("budget", "rounds", "seed", "per_section") if k in saved}
        if keep:
            self.sampling = replace(self.sampling, **keep)
        self._pending_state = st
        if self.acq is not None:
            self.prepare()
        return st

    def export_round(self, out: str | Path, *, state_path: str | Path | None = None,
                     which: str | None = None) -> tuple[Any, Path]:
        """The lab's table of the current round written together with the run's state.

        ``which``: ``"pending"`` (default in real use: the current round is committed and its
        spots still to be sequenced are listed), ``"all"`` (default in simulation: every selected
        spot) or ``"sequenced"``. The format follows the extension of ``out`` (CSV, TSV, QuPath
        GeoJSON, h5ad, or ``.zarr``: the whole run as a SpatialData store; checked before anything
        changes). Both files are written to temporary
        names first; if either write fails, neither file changes. Once both are written the export
        is recorded in :attr:`last_export` (an :class:`ExportRecord`, also in the saved state's
        ``meta``) and ``exported`` fires. Returns ``(table, out)``.
        """
        from .io.export import (
            SELECTION_SUFFIXES,
            SPATIALDATA_SUFFIX,
            selection_table,
            write_selection,
        )

        acq = self._require()
        out = Path(out)
        if out.suffix.lower() not in (*SELECTION_SUFFIXES, SPATIALDATA_SUFFIX):
            raise ValueError(f"cannot write a selection to {out}: unknown extension {out.suffix!r}; "
                             f"use one of {', '.join((*SELECTION_SUFFIXES, SPATIALDATA_SUFFIX))}")
        which = which or ("all" if self.simulate else "pending")
        if which == "pending":
            self.commit_for_export()
        table = selection_table(self.adata, self.committed, which=which, predicted_cell_type=self.cell_types())
        if table.empty:
            raise ValueError("no spots to export: propose and commit a round first")
        tmp_out = out.with_name(f".{out.stem}.part{out.suffix}")
        tmp_state = None
        record = ExportRecord(out, tuple(sorted({int(r) for r in table["round"]})), int(len(table)), which,
                              None if state_path is None else Path(state_path))
        previous = acq.committed.meta.get(LAST_EXPORT_KEY)
        ok = False
        try:
            if out.suffix.lower() == SPATIALDATA_SUFFIX:  # the whole run as a SpatialData store
                from .io.export import write_run_spatialdata

                write_run_spatialdata(self.adata, self.committed, tmp_out, predictions=self.predictions,
                                      cell_types=self.cell_types())
            else:
                write_selection(table, tmp_out)
            if state_path is not None:
                state_path = Path(state_path)
                tmp_state = state_path.with_name(f".{state_path.stem}.part.npz")
                acq.committed.meta["settings"] = self.sampling.to_dict()
                acq.committed.meta[LAST_EXPORT_KEY] = record.to_dict()  # the state knows where it went
                acq.save(tmp_state)
            if out.is_dir() and out.suffix.lower() == SPATIALDATA_SUFFIX:
                shutil.rmtree(out)  # a store is a folder: replaced as a whole
            os.replace(tmp_out, out)
            if tmp_state is not None:
                os.replace(tmp_state, state_path)
            ok = True
        finally:
            if not ok:  # nothing written: the state's record stays what it was
                if previous is None:
                    acq.committed.meta.pop(LAST_EXPORT_KEY, None)
                else:
                    acq.committed.meta[LAST_EXPORT_KEY] = previous
            for t in (tmp_out, tmp_state):
                if t is not None and t.is_dir():
                    shutil.rmtree(t, ignore_errors=True)
                elif t is not None:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(t)
        acq.committed.meta[LAST_EXPORT_KEY] = record.to_dict()
        self.last_export = record
        self.exported.emit()
        return table, out

    # ------------------------------------------------------------------ cell types and values
    def cell_types(self) -> np.ndarray:
        """Per spot: the transferred label of sequenced spots, else the label predicted from
        them (ridge on vision + location); "" when unknown. A copy."""
        out = np.full(self.n, "", dtype=object)
        if self.space is None or self.acq is None:
            return out
        key = (self.acq.version, int(self.committed.measured.sum()))
        cached = self._cache.get("cell_types", key)
        if cached is not None:
            return cached.copy()
        pred = self._predicted()
        if pred is not None:
            out[:] = pred[2]
            m = pred[3]
        else:
            m = self.embedder(self.committed)
        if len(m):
            out[m.index] = np.asarray(self.space.celltypes, dtype=object)[m.codes]
        self._cache.put("cell_types", key, out)
        return out.copy()

    def celltype_categories(self) -> list[str]:
        return list(self.space.celltypes) if self.space is not None else []

    def measured_values(self, gene: str) -> np.ndarray:
        """log1p-normalised values of ``gene`` for sequenced spots (NaN elsewhere), from the
        revealed counts only."""
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

    def selection_for_layers(self) -> SelectionState | None:
        return self.preview.state if self.preview is not None else self.committed

    # ------------------------------------------------------------------ training and prediction
    def training_snapshot(self):
        """``(adata, mask)`` for training: counts of SEQUENCED spots only (taken in the main thread)."""
        if self.acq is None:
            raise RuntimeError("prepare the section and sequence some spots first")
        mask = np.asarray(self.committed.measured, dtype=bool)
        if mask.sum() < 8:
            raise RuntimeError(f"need at least 8 sequenced spots to train, have {int(mask.sum())}")
        a = self.pool.training_adata(self.committed)
        a.obs_names = [str(s) for s in self.adata.obs_names]
        a.uns["spatial"] = self.adata.uns.get("spatial", {})
        ct = np.asarray(self.cell_types(), dtype=object).astype(str)
        ct[~mask] = ""
        a.obs["cell_type"] = ct
        for k in self.adata.obsm:
            if k.startswith(VISION_KEY) and k not in a.obsm:
                a.obsm[k] = np.asarray(self.adata.obsm[k])
        return a, mask

    def iter_train(self, adata, mask, *, token: CancelToken | None = None,
                   threads: int | None = None) -> Generator[Progress, None, Any]:
        """SCR2Net training on the snapshot and prediction of every spot; returns
        ``(predictor, predictions)`` (predictions None when cancelled). The backbone's
        embedding is computed first if it is not the one the sampler used."""
        t = self.training
        key = self.sampling.vision_key
        if t.backbone and t.backbone != self.vision_model:
            key = f"{VISION_KEY}_{_safe(t.backbone)}"
            if key not in self.adata.obsm:
                yield Progress(0, 0, f"embedding spots with {t.backbone}")
                yield from _iter_vision(self.adata, t.backbone, key=key, device=t.device)
            adata.obsm[key] = np.asarray(self.adata.obsm[key])
        config = t.to_train_config(embedding_key=key, seed=self.sampling.seed)
        with _torch_guard():
            from .model import SCR2NetPredictor, iter_predict_expression

            predictor = SCR2NetPredictor(config)
            with _torch_threads(threads):
                yield from predictor.iter_fit(adata, mask, cancel=token)
                if token is not None and token.cancelled:
                    return predictor, None
                yield from iter_predict_expression(predictor, adata, mc_samples=int(t.mc_samples), cancel=token)
        return predictor, adata.obsm["X_pred"]

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
        """Why a spot got its prediction: retrieved neighbours and the cell-type filter."""
        if self.predictor is None:
            raise RuntimeError("train a model first")
        with _torch_guard():
            from .model import inspect_spot

            return inspect_spot(self.predictor, self.train_adata, int(index), gene, k=int(k), m=int(m))

    def __repr__(self) -> str:
        state = repr(self.committed) if self.committed is not None else "not prepared"
        return f"AcquisitionSession({self.library!r}, sampler={self.sampling.sampler!r}, {state})"


def import_counts_into(state_path: str | Path, counts_path: str | Path, *, section: str | None = None,
                       overwrite: bool = False) -> tuple[np.ndarray, SelectionState]:
    """Import the lab's counts into a saved run without its section data (``scr2st import-counts``).

    The same :meth:`~napari_scr2st.sampling.acquisition.Acquisition.import_counts` step a
    session runs, on the state file alone (the import needs spot ids, not images); the request,
    manual picks and exclusions saved with the state are kept. A state of one section takes
    that section for ids without a ``section`` column. Returns ``(pool indices, state)``.
    """
    st = SelectionState.load(state_path)
    saved = Acquisition.saved_settings(st)
    pool = Pool(st.spot_ids, st.sections, np.zeros((st.n, 2)))
    if saved.excluded:
        pool.excluded[np.asarray(saved.excluded, dtype=np.int64)] = True
    req = saved.request
    request = SelectionRequest(budget=req.get("budget", st.budget or st.n_selected or 1),
                               rounds=int(req.get("rounds", st.n_rounds or 1)), seed=int(req.get("seed", 0)),
                               per_section=bool(req.get("per_section", False)))
    acq = Acquisition(pool, request, state=st)
    if saved.manual:
        acq.lock(saved.manual)
    if section is None and len(pool.section_names) == 1:
        section = pool.section_names[0]
    idx = acq.import_counts(counts_path, section=section, overwrite=overwrite)
    acq.save(state_path)
    return idx, acq.committed


def default_gene(pred) -> str:
    """The most variable predicted gene (a readable first map)."""
    v = np.asarray(pred.var(axis=0))
    return str(pred.columns[int(np.nanargmax(v))]) if len(v) else str(pred.columns[0])


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _is_fraction(text: str) -> bool:
    try:
        v = float(text)
    except ValueError:
        return False
    return 0 < v <= 1 and not text.isdigit()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


# ---------------------------------------------------------------------- heavy helpers (lazy)
def _iter_vision(adata, encoder: str, *, key: str, device: str = "auto") -> Generator[Progress, None, str]:
    """Fill ``adata.obsm[key]`` with the embedding of ``encoder``; returns the encoder name."""
    from .features import iter_ensure_vision_embedding

    with _torch_guard():
        yield from iter_ensure_vision_embedding(adata, encoder, key=key, device=device)
    return encoder


def load_policy(path):
    """An SCRL policy saved with ``SCRLPolicy.save`` (``scr2st train-policy``)."""
    return _load_policy(path)


def warm_up_training() -> None:
    """Import SCR2Net's training code and torch's optimiser stack (a GUI calls this early, in a
    worker, so the first training does not stall the event loop on imports)."""
    import importlib

    with _torch_guard():
        import torch

        for name in ("napari_scr2st.model.train", "napari_scr2st.model.predictor", "napari_scr2st.model.inspect"):
            importlib.import_module(name)
        torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())  # the first optimiser imports torch._dynamo


def _new_policy(space, *, seed: int = 0):
    with _torch_guard():
        from .sampling.scrl import SCRLPolicy

        return SCRLPolicy.for_space(space, seed=seed)


def _copy_policy(policy):
    """An independent copy of an SCRL policy (its own id: cached features of the original are not reused)."""
    import copy
    import uuid

    with _torch_guard():
        new = copy.deepcopy(policy)
    new._uid = uuid.uuid4().hex
    new.last_scores = None
    return new


def _load_policy(path):
    with _torch_guard():
        from .sampling.scrl import SCRLPolicy

        return SCRLPolicy.load(path)


def _torch_guard():
    """Torch work in a process whose OpenGL may be Mesa's llvmpipe (see :mod:`.torch_runtime`)."""
    from .torch_runtime import triton_blocked

    return triton_blocked()


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Use ``n`` intra-op threads in the calling thread (restored after); None: unchanged."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    try:
        torch.set_num_threads(max(1, int(n)))
        yield
    finally:
        torch.set_num_threads(old)
