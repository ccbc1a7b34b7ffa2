"""The acquisition loop (METHOD section 2): rounds of pick -> reveal -> update.

``iter_acquisition`` is a generator yielding :class:`~napari_scr2st.progress.Progress` (one event
per round, with the reward terms of the cumulative measured set as metrics) and returning an
:class:`AcquisitionResult`; drive it with :func:`napari_scr2st.progress.drive` or a napari thread
worker.

Leakage by construction: the sampler receives the :class:`~napari_scr2st.sampling.pool.Pool`
(no expression) and the :class:`~napari_scr2st.sampling.state.SelectionState` (counts of
revealed spots only). The hidden counts live in the
:class:`~napari_scr2st.sampling.oracle.SimulatedOracle`, which the loop asks to
reveal a batch only AFTER the sampler returned it. In real use there is no oracle: the loop
selects one round, the user exports it, sequences the spots and calls
:func:`~napari_scr2st.sampling.state.import_counts`, then runs the next round.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from ..progress import CancelToken, Progress
from .oracle import SimulatedOracle
from .pool import Pool, SelectionRequest, resolve_budget, round_schedule, split_budget
from .reward import RewardTerms, RewardWeights
from .sampler import Sampler
from .state import SelectionState

__all__ = ["AcquisitionResult", "plan_rounds", "iter_acquisition", "run_acquisition", "select_round"]


@dataclass
class AcquisitionResult:
    """The final state, the picks of every round, and the reward terms after each round."""

    state: SelectionState
    picks: list[np.ndarray] = field(default_factory=list)
    history: list[RewardTerms] = field(default_factory=list)
    weights: RewardWeights = field(default_factory=RewardWeights)

    @property
    def final(self) -> RewardTerms | None:
        return self.history[-1] if self.history else None


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
        per = {s: resolve_budget(budget, n, what=f"section {s}") for s, n in zip(names, sizes, strict=False)}
    else:
        total = resolve_budget(budget, n_pool)
        per = dict(zip(names, (int(v) for v in split_budget(total, sizes)), strict=False))
    sched: list[dict[str, int]] = [dict() for _ in range(n_rounds)]
    for s in names:
        have = int((selected_in_pool & (pool.sections == s)).sum())
        new = per[s] - have
        if new < 0:
            raise ValueError(f"section {s}: {have} spots are already selected/locked, more than its budget of {per[s]}")
        for r, k in enumerate(round_schedule(new, n_rounds)):
            sched[r][s] = k
    return int(sum(per.values())), sched


def _apply_request(pool: Pool, request: SelectionRequest, state: SelectionState) -> None:
    """Exclusions into the pool, locks into the state (manual picks of the current round)."""
    if len(request.excluded):
        pool.exclude(np.asarray(request.excluded) if not isinstance(request.excluded, np.ndarray) else request.excluded)
    if len(request.locked):
        idx = pool.lookup(request.locked, what="locked spots")
        bad = idx[pool.excluded[idx]]
        if bad.size:
            raise ValueError(f"locked spots cannot also be excluded: {[pool.spot_ids[i] for i in bad[:5]]}")
        state.lock(idx, round=int(state.current_round))


def select_round(sampler: Sampler, pool: Pool, state: SelectionState, n: int | dict[str, int], *,
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


def iter_acquisition(
    pool: Pool,
    sampler: Sampler,
    request: SelectionRequest,
    *,
    oracle: SimulatedOracle | None = None,
    state: SelectionState | None = None,
    evaluator=None,
    token: CancelToken | None = None,
) -> Generator[Progress, None, AcquisitionResult]:
    """Run the remaining rounds of ``request`` (pick -> reveal -> reward); return the result.

    Without an ``oracle`` only ONE round is run (the next one needs imported counts): call again
    with the same ``state`` after :func:`~napari_scr2st.sampling.state.import_counts`; the
    remaining budget is spread over the remaining rounds. The
    ``evaluator`` (:class:`~napari_scr2st.sampling.measured.RewardEvaluator`) adds the reward
    terms of the cumulative measured set to each event.
    """
    state = state if state is not None else SelectionState.for_pool(pool)
    state.check_pool(pool)
    first = int(state.current_round)
    rounds_left = request.rounds - first
    if rounds_left <= 0:
        raise ValueError(f"all {request.rounds} rounds of this selection are done (state is at round {first})")
    _apply_request(pool, request, state)
    total, schedule = plan_rounds(pool, request, state, rounds_left)
    state.budget = total
    state.n_rounds = request.rounds
    state.meta.update(sampler=sampler.name, seed=request.seed, per_section=request.per_section)
    result = AcquisitionResult(state=state, weights=getattr(evaluator, "weights", RewardWeights()))
    rounds = len(schedule) if oracle is not None else 1
    for t in range(rounds):
        if token is not None:
            token.raise_if_cancelled()
        state.current_round = first + t
        rng = np.random.default_rng([request.seed, state.current_round, 7919])
        idx = select_round(sampler, pool, state, schedule[t], rng=rng)
        if oracle is not None:
            oracle.reveal(state, np.flatnonzero(state.pending))  # includes locked spots in round 0
        result.picks.append(idx)
        metrics: dict[str, float] = {"selected": float(state.n_selected)}
        if evaluator is not None and state.measured.any():
            terms = evaluator.terms(state)
            result.history.append(terms)
            metrics.update(terms.as_dict(evaluator.weights))
        yield Progress(step=t + 1, total=rounds, message=f"round {state.current_round}", metrics=metrics)
    state.current_round = first + rounds
    return result


def run_acquisition(*args, **kwargs) -> AcquisitionResult:
    """:func:`iter_acquisition` driven to completion without a progress bar."""
    from ..progress import drive

    return drive(iter_acquisition(*args, **kwargs), use_tqdm=False)
