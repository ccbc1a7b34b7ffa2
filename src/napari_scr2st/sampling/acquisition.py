"""THE acquisition state machine over a pool: propose -> commit -> sequence -> next round.

An :class:`Acquisition` owns, for one pool of candidate spots, the COMMITTED selection (a
:class:`~napari_scr2st.sampling.state.SelectionState`: what was sequenced or sent for
sequencing, and the counts revealed so far), the manual picks of the current round, the
exclusions, and the request (budget, rounds, seed, per-section). Every front end drives it the
same way (the AnnData-level :class:`napari_scr2st.session.AcquisitionSession` wraps it for the
Python API, the ``scr2st`` CLI and the napari docks; :func:`~napari_scr2st.sampling.loop.iter_acquisition`
drives it in simulation):

1. :meth:`Acquisition.propose` asks a sampler for the current round's new picks, conditioned on
   the committed selection plus the manual picks (which count toward the budget); it changes
   nothing, so it can be called again for other weights or another sampler;
2. :meth:`Acquisition.commit` fixes a proposal: its spots are now *pending* (sent for
   sequencing) and :attr:`~Acquisition.current_round` (the number of committed rounds, i.e. the
   index of the next round) goes up by one;
3. :meth:`Acquisition.reveal` (simulation: the oracle's hidden counts) or
   :meth:`Acquisition.import_counts` (the lab's counts file) measures pending spots; the next
   round can be proposed once no spot is pending.

Leakage by construction: samplers receive the pool (no expression) and a state holding the
counts of revealed spots only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .pool import Pool, SelectionRequest, resolve_budget, round_schedule, split_budget
from .reward import RewardTerms
from .state import SelectionState, import_counts

__all__ = ["Acquisition", "Proposal", "RoundReward", "StagedRound", "plan_rounds", "select_round"]

_ROUND_SALT = 7919  # the per-round random stream is default_rng([seed, round, _ROUND_SALT])


@dataclass
class Proposal:
    """The selection shown now: committed + manual picks + the sampler's new picks.

    ``state`` is a copy of the committed state with the manual picks locked and the new picks
    marked (source = sampler name); ``picks`` the new picks in pick order, ``scores`` their
    sampler scores (None when the sampler has none); ``budget`` the total budget, ``n_new`` the
    number of new picks this round; ``message`` says why nothing was proposed when ``picks`` is
    empty; ``version`` the acquisition version it was made from (commit refuses stale ones).
    """

    state: SelectionState
    picks: np.ndarray
    scores: np.ndarray | None
    n_new: int
    budget: int
    sampler: str = ""
    message: str = ""
    version: int = -1
    seconds: float = 0.0

    @property
    def selected(self) -> np.ndarray:
        """Pool indices of every spot the proposal selects (committed, manual and new)."""
        return np.flatnonzero(self.state.selected)


def plan_rounds(pool: Pool, request: SelectionRequest, state: SelectionState,
                n_rounds: int | None = None) -> tuple[int, list[dict[str, int] | int]]:
    """Total budget and the per-round numbers of NEW picks (dicts per section when per-section).

    The picks still to make are spread over ``n_rounds`` (default ``request.rounds``). Locked
    (already selected) spots count toward the budget. Errors: budget larger than the
    non-excluded pool; more locked/selected spots than the budget.
    """
    n_rounds = request.rounds if n_rounds is None else int(n_rounds)
    n_pool = pool.n_in_pool
    selected_in_pool = state.selected & ~pool.excluded
    if not request.per_section:
        total = resolve_budget(request.budget, n_pool)
        n_new = total - int(selected_in_pool.sum())
        if n_new < 0:
            raise ValueError(f"{int(selected_in_pool.sum())} spots are already selected/locked, more than the budget of {total}")
        return total, list(round_schedule(n_new, n_rounds))
    names = pool.section_names
    sizes = [int(((pool.sections == s) & ~pool.excluded).sum()) for s in names]
    budget = request.budget
    if isinstance(budget, str) and not budget.strip().endswith("%"):
        try:  # "30" is a count (split over sections), "0.15" a fraction (of each section)
            budget = int(budget) if budget.strip().isdigit() else float(budget)
        except ValueError:
            pass  # resolve_budget reports it
    if isinstance(budget, str) or (isinstance(budget, float) and budget <= 1.0):
        per = {s: resolve_budget(budget, n, what=f"section {s}") for s, n in zip(names, sizes, strict=True)}
    else:
        total = resolve_budget(budget, n_pool)
        per = dict(zip(names, (int(v) for v in split_budget(total, sizes)), strict=True))
    sched: list[dict[str, int]] = [dict() for _ in range(n_rounds)]
    for s in names:
        have = int((selected_in_pool & (pool.sections == s)).sum())
        new = per[s] - have
        if new < 0:
            raise ValueError(f"section {s}: {have} spots are already selected/locked, more than its budget of {per[s]}")
        for r, k in enumerate(round_schedule(new, n_rounds)):
            sched[r][s] = k
    return int(sum(per.values())), sched


def select_round(sampler, pool: Pool, state: SelectionState, n: int | dict[str, int], *,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """One round of picks (pooled ``n`` or ``{section: n}``), recorded in ``state``; returns indices."""
    if isinstance(n, dict):
        out = []
        for s, k in n.items():
            if k > 0:
                idx = sampler.select(pool, k, state, candidates=pool.sections == s, rng=rng)
                state.mark_selected(idx, source=sampler.name, scores=sampler.last_scores)
                out.append(idx)
        return np.concatenate(out) if out else np.zeros(0, np.int64)
    idx = sampler.select(pool, int(n), state, rng=rng)
    state.mark_selected(idx, source=sampler.name, scores=sampler.last_scores)
    return idx


def _n_of(entry: dict[str, int] | int) -> int:
    return int(sum(entry.values())) if isinstance(entry, dict) else int(entry)


@dataclass
class RoundReward:
    """The reward terms of the measured set once round ``round`` was sequenced."""

    round: int
    n_measured: int
    terms: RewardTerms


@dataclass
class StagedRound:
    """A simulated sequencing computed on copies (:meth:`Acquisition.stage_sequence`), taken by
    :meth:`Acquisition.apply_staged` only while the acquisition is at ``version``."""

    version: int
    state: SelectionState  #: the committed state once the round is revealed
    history: list[RoundReward]  #: the reward record(s) the round adds
    revealed: np.ndarray  #: pool indices whose counts were revealed


@dataclass
class _Saved:
    """What a state file records beside the selection: the request, manual picks, exclusions."""

    request: dict = field(default_factory=dict)
    manual: list[int] = field(default_factory=list)
    excluded: list[int] = field(default_factory=list)


class Acquisition:
    """The acquisition state machine of one pool (see the module docstring).

    ``request``: budget, rounds, seed, per-section (its ``locked``/``excluded`` ids are applied
    once: locks become manual picks of the current round, exclusions enter the pool).
    ``oracle``: a :class:`~napari_scr2st.sampling.oracle.SimulatedOracle` for simulated
    sequencing (None in real use). ``evaluator``: a
    :class:`~napari_scr2st.sampling.measured.RewardEvaluator`; with it, the reward terms of the
    measured set are appended to :attr:`history` (:class:`RoundReward`) after each sequenced round.
    """

    def __init__(self, pool: Pool, request: SelectionRequest, *, state: SelectionState | None = None,
                 oracle=None, evaluator=None) -> None:
        self.pool = pool
        self.committed = state if state is not None else SelectionState.for_pool(pool)
        self.committed.check_pool(pool)
        self.oracle = oracle
        self.evaluator = evaluator
        self.manual: list[int] = []
        self.history: list[RoundReward] = []
        self.version = 0  # bumped whenever the committed selection, the picks or the pool change
        self.request = replace(request, locked=(), excluded=())
        if len(request.excluded):
            ex = request.excluded
            pool.exclude(ex if isinstance(ex, np.ndarray) else np.asarray(list(ex)))
        if len(request.locked):
            self.lock(pool.lookup(list(request.locked), what="locked spots"))

    # ------------------------------------------------------------------ status
    @property
    def current_round(self) -> int:
        return int(self.committed.current_round)

    @property
    def n_rounds(self) -> int:
        return int(self.request.rounds)

    @property
    def rounds_done(self) -> bool:
        return self.current_round >= self.n_rounds

    @property
    def waiting_for_counts(self) -> bool:
        """True while spots of the current round were sent for sequencing and are not measured."""
        return bool(self.committed.pending.any())

    def _bump(self) -> None:
        self.version += 1

    # ------------------------------------------------------------------ settings, picks, exclusions
    def set_request(self, **changes) -> None:
        """Change budget, rounds, seed or per_section (validated by :class:`SelectionRequest`)."""
        new = replace(self.request, **changes)
        if new != self.request:
            self.request = new
            self._bump()

    def lock(self, idx) -> list[int]:
        """Add manual picks (pool indices) to the current round; returns the ones added.

        Spots already selected are skipped; excluded spots are an error.
        """
        idx = [int(i) for i in np.asarray(idx, dtype=np.int64).ravel()]
        bad = [i for i in idx if self.pool.excluded[i]]
        if bad:
            raise ValueError(f"locked spots cannot also be excluded: {[str(self.pool.spot_ids[i]) for i in bad[:5]]}")
        added = [i for i in idx if not self.committed.selected[i] and i not in self.manual]
        if added:
            self.manual.extend(added)
            self._bump()
        return added

    def unlock(self, idx) -> None:
        drop = {int(i) for i in np.asarray(idx, dtype=np.int64).ravel()}
        if drop & set(self.manual):
            self.manual = [i for i in self.manual if i not in drop]
            self._bump()

    def set_excluded(self, mask: np.ndarray) -> list[int]:
        """Replace the exclusions (bool mask over the pool); returns manual picks dropped by it.

        Spots already committed stay selected (they were sent for sequencing).
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.pool.n,):
            raise ValueError(f"exclusion mask has shape {mask.shape}, the pool has {self.pool.n} spots")
        if np.array_equal(mask, self.pool.excluded):
            return []
        dropped = [i for i in self.manual if mask[i]]
        self.manual = [i for i in self.manual if not mask[i]]
        self.pool.excluded = mask.copy()
        self.pool._cache.clear()
        self._bump()
        return dropped

    # ------------------------------------------------------------------ proposing
    def base_state(self) -> SelectionState:
        """The committed state plus the manual picks of the current round (what samplers see)."""
        st = self.committed.copy()
        if self.manual:
            st.lock(np.asarray(self.manual, dtype=np.int64), round=self.current_round)
        return st

    def plan(self, state: SelectionState | None = None) -> tuple[int, int | dict[str, int]]:
        """``(total budget, new picks of the current round)`` (a dict per section when per-section)."""
        st = self.base_state() if state is None else state
        left = max(1, self.n_rounds - self.current_round)
        total, schedule = plan_rounds(self.pool, self.request, st, n_rounds=left)
        return total, (schedule[0] if schedule else 0)

    def round_rng(self) -> np.random.Generator:
        return np.random.default_rng([int(self.request.seed), self.current_round, _ROUND_SALT])

    def propose(self, sampler) -> Proposal:
        """The current round's picks of ``sampler`` (changes nothing; see the module docstring)."""
        t0 = time.perf_counter()
        if self.rounds_done or self.waiting_for_counts:
            if self.waiting_for_counts:
                # rounds count from 1 for a person: current_round rounds are committed, the last
                # of them (round current_round) waits for its counts
                msg = (f"round {self.current_round} was sent for sequencing: import its counts"
                       + (" (all rounds are selected)" if self.rounds_done else " to continue"))
            else:
                msg = "all rounds done"
            st = self.committed.copy()
            return Proposal(st, np.zeros(0, np.int64), None, 0, int(st.budget or st.n_selected), sampler.name,
                            msg, self.version, time.perf_counter() - t0)
        st = self.base_state()
        total, n = self.plan(st)
        picks = select_round(sampler, self.pool, st, n, rng=self.round_rng())
        scores = None
        if len(picks):
            sc = st.score[picks]
            scores = None if np.isnan(sc).all() else sc
        st.budget = int(total)
        st.n_rounds = self.n_rounds
        st.meta.update(sampler=sampler.name, seed=int(self.request.seed), per_section=bool(self.request.per_section))
        return Proposal(st, np.asarray(picks, np.int64), scores, _n_of(n), int(total), sampler.name, "",
                        self.version, time.perf_counter() - t0)

    # ------------------------------------------------------------------ committing and sequencing
    def commit(self, proposal: Proposal) -> SelectionState:
        """Fix ``proposal``: its manual and new picks are pending (sent for sequencing) and the
        round is counted; a round with no picks at all is complete at once."""
        self._complete(self._committed_round(proposal, proposal.state))
        return self.committed

    def _committed_round(self, proposal: Proposal, st: SelectionState) -> SelectionState:
        """``st`` (the proposal's state or a copy of it) as this round's committed state, after
        the checks that ``proposal`` is current and a round may be sent."""
        if proposal.version != self.version:
            raise RuntimeError("the proposal is out of date (the selection changed since): propose again")
        if self.waiting_for_counts or self.rounds_done:
            raise RuntimeError(proposal.message or "nothing new to send for sequencing")
        st.current_round = self.current_round + 1
        return st

    def reveal(self) -> np.ndarray:
        """Simulated sequencing: the oracle reveals every pending spot; returns their indices."""
        return self.apply_staged(self.stage_sequence(None))

    def stage_sequence(self, proposal: Proposal | None) -> StagedRound:
        """Commit ``proposal`` (None: the round that already waits for its counts) and reveal
        its spots from the oracle, on COPIES: nothing of this acquisition changes, so it may run
        in a worker thread while the main thread only reads. :meth:`apply_staged` takes it."""
        if self.oracle is None:
            raise RuntimeError("no counts to simulate sequencing with: import the lab's counts instead")
        st = self.committed.copy() if proposal is None else self._committed_round(proposal, proposal.state.copy())
        idx = np.flatnonzero(st.pending)
        if idx.size == 0:
            raise RuntimeError("nothing was sent for sequencing in this round")
        self.oracle.fill(st, idx)
        return StagedRound(self.version, st, self._round_reward(st), idx)

    def apply_staged(self, staged: StagedRound) -> np.ndarray:
        """Take a :meth:`stage_sequence` result (main thread); refused when the selection changed
        since it was staged. Returns the revealed pool indices."""
        if staged.version != self.version:
            raise RuntimeError("the selection changed while the round was being sequenced: sequence it again")
        self.oracle.n_revealed += len(staged.revealed)
        self._complete(staged.state, reward=staged.history)
        return staged.revealed

    def import_counts(self, path: str | Path, *, section: str | None = None, overwrite: bool = False,
                      genes: Sequence[str] | None = None) -> np.ndarray:
        """Import the lab's counts file (spots x genes) into the committed selection (checks:
        :func:`~napari_scr2st.sampling.state.import_counts`; ``genes``: the section's genes)."""
        st = self.committed.copy()
        idx = import_counts(st, path, section=section, overwrite=overwrite, genes=genes)
        self._complete(st)
        return idx

    def _complete(self, st: SelectionState, *, reward: list[RoundReward] | None = None) -> None:
        """Take ``st`` as committed; once nothing is pending, record the reward of the measured set
        (``reward``: already computed for ``st``, by :meth:`stage_sequence`)."""
        self.history.extend(self._round_reward(st) if reward is None else reward)
        self.committed = st
        self.manual = []
        self._bump()

    def _round_reward(self, st: SelectionState) -> list[RoundReward]:
        """The reward record of ``st`` once nothing is pending (else none)."""
        if not st.pending.any() and self.evaluator is not None and st.measured.any():
            return [RoundReward(int(st.current_round) - 1, int(st.measured.sum()), self.evaluator.terms(st))]
        return []

    def reset(self) -> None:
        """Forget every pick and every revealed count."""
        self.committed = SelectionState.for_pool(self.pool)
        self.manual = []
        self.history = []
        self._bump()

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """The committed state with the request, manual picks and exclusions (one atomic file)."""
        st = self.committed
        saved = _Saved(
            request={"budget": str(self.request.budget), "rounds": self.n_rounds, "seed": int(self.request.seed),
                     "per_section": bool(self.request.per_section)},
            manual=[int(i) for i in self.manual],
            excluded=[int(i) for i in np.flatnonzero(self.pool.excluded)],
        )
        st.meta["acquisition"] = {"request": saved.request, "manual": saved.manual, "excluded": saved.excluded}
        return st.save(path)

    @staticmethod
    def saved_settings(state: SelectionState) -> _Saved:
        """What :meth:`save` recorded beside the selection (empty for older files)."""
        d = state.meta.get("acquisition", {})
        return _Saved(dict(d.get("request", {})), [int(i) for i in d.get("manual", [])],
                      [int(i) for i in d.get("excluded", [])])
