"""Simulated acquisition: rounds of pick -> reveal -> update, driven as a generator.

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
from .acquisition import Acquisition, plan_rounds, select_round
from .oracle import SimulatedOracle
from .pool import Pool, SelectionRequest
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
    """Drive an :class:`~napari_scr2st.sampling.acquisition.Acquisition` through the remaining rounds.

    Each round: propose with ``sampler``, commit, and (with an ``oracle``) reveal. Without an
    ``oracle`` only ONE round is run (the next one needs imported counts): call again with the
    same ``state`` after :func:`~napari_scr2st.sampling.state.import_counts`; the remaining
    budget is spread over the remaining rounds. The ``evaluator``
    (:class:`~napari_scr2st.sampling.measured.RewardEvaluator`) adds the reward terms of the
    cumulative measured set to each event.
    """
    acq = Acquisition(pool, request, state=state, oracle=oracle, evaluator=evaluator)
    first = acq.current_round
    if acq.rounds_done:
        raise ValueError(f"all {request.rounds} rounds of this selection are done ({first} rounds committed)")
    result = AcquisitionResult(state=acq.committed, weights=getattr(evaluator, "weights", RewardWeights()))
    rounds = acq.n_rounds - first if oracle is not None else 1
    for t in range(rounds):
        if token is not None:
            token.raise_if_cancelled()
        proposal = acq.propose(sampler)
        acq.commit(proposal)
        if oracle is not None and acq.waiting_for_counts:
            acq.reveal()  # includes locked spots in round 0
        result.state = acq.committed
        result.picks.append(proposal.picks)
        metrics: dict[str, float] = {"selected": float(acq.committed.n_selected)}
        if evaluator is not None and acq.committed.measured.any():
            done = acq.history and acq.history[-1].n_measured == int(acq.committed.measured.sum())
            terms = acq.history[-1].terms if done else evaluator.terms(acq.committed)
            result.history.append(terms)
            metrics.update(terms.as_dict(evaluator.weights))
        yield Progress(step=t + 1, total=rounds, message=f"round {first + t + 1}", metrics=metrics)
    return result


def run_acquisition(*args, **kwargs) -> AcquisitionResult:
    """:func:`iter_acquisition` driven to completion without a progress bar."""
    from ..progress import drive

    return drive(iter_acquisition(*args, **kwargs), use_tqdm=False)
