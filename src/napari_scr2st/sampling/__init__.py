"""Active sampling of spots (METHOD sections 2-4, 8): reward, samplers, acquisition loop, SCRL.

Data flow and the leakage rule: samplers see a :class:`Pool` (ids, sections, coordinates, vision
embedding, exclusions; never expression) and a :class:`SelectionState` (the selection and the
counts of REVEALED spots only). Hidden counts live in :class:`SimulatedOracle` (simulation) or
come from :func:`import_counts` (real sequencing results).

Modules (heavy dependencies are imported inside functions; torch only by the SCRL network):

- ``reward``: the four reward terms (cell-state coverage, cell-type balance, spatial coverage,
  expected-error reduction) and :class:`RewardWeights`;
- ``pool`` / ``state``: :class:`Pool`, :class:`SelectionRequest`, :class:`SelectionState`;
- ``acquisition``: THE acquisition state machine (:class:`~.acquisition.Acquisition`: propose,
  commit, reveal / import counts, manual picks, exclusions) and the round planning (``plan_rounds``);
- ``measured``: the measured set in the reference space, :class:`RewardEvaluator`;
- ``oracle``: :class:`SimulatedOracle` (hidden counts of a fully measured section);
- ``sampler``: the :class:`Sampler` interface and Gumbel-top-k;
- ``baselines``: random, grid, k-center, TypiClust, AR weights, greedy reward maximiser;
- ``design``: model-based batch designs: predictor uncertainty, GP variance, LCMD;
- ``scrl``: the SCRL policy (network, features, environment, training, :class:`SCRLSampler`);
- ``registry``: :data:`SAMPLER_NAMES` and :func:`make_sampler` (baselines and SCRL by name);
- ``surrogate``: :class:`RidgePredictor` (an ``ExpressionPredictor``) and the space predictor;
- ``loop``: :func:`iter_acquisition`, the simulation driver over ``Acquisition``;
- ``thread_limits``: :func:`~.thread_limits.single_thread` (BLAS/torch thread counts for tiny numeric work).
"""

from .baselines import (
    ARSampler,
    GreedyRewardSampler,
    GridSampler,
    KCenterSampler,
    RandomSampler,
    TypiClustSampler,
)
from .design import GPVarianceSampler, LCMDSampler, UncertaintySampler
from .loop import (
    AcquisitionResult,
    iter_acquisition,
    plan_rounds,
    run_acquisition,
    select_round,
)
from .measured import MeasuredEmbedder, MeasuredSet, RewardEvaluator
from .oracle import SimulatedOracle
from .pool import Pool, SelectionRequest, resolve_budget, round_schedule, split_budget
from .registry import SAMPLER_NAMES, make_sampler
from .reward import (
    RewardTerms,
    RewardWeights,
    SpatialIndex,
    celltype_entropy,
    compute_reward,
    manifold_coverage,
    spatial_coverage,
)
from .sampler import Sampler
from .scrl import (
    PolicyConfig,
    PolicyEnv,
    SCRLPolicy,
    SCRLSampler,
    iter_train_policy,
    plackett_luce_log_prob,
    train_policy,
)
from .state import MeasuredView, SelectionState, import_counts
from .surrogate import RidgePredictor, SpacePredictor

__all__ = [
    "AcquisitionResult",
    "ARSampler",
    "GPVarianceSampler",
    "GreedyRewardSampler",
    "GridSampler",
    "KCenterSampler",
    "LCMDSampler",
    "MeasuredEmbedder",
    "MeasuredSet",
    "MeasuredView",
    "Pool",
    "RandomSampler",
    "RewardEvaluator",
    "RewardTerms",
    "RewardWeights",
    "RidgePredictor",
    "SAMPLER_NAMES",
    "Sampler",
    "SelectionRequest",
    "SelectionState",
    "SimulatedOracle",
    "SpacePredictor",
    "SpatialIndex",
    "TypiClustSampler",
    "UncertaintySampler",
    "celltype_entropy",
    "compute_reward",
    "import_counts",
    "iter_acquisition",
    "make_sampler",
    "manifold_coverage",
    "plan_rounds",
    "resolve_budget",
    "round_schedule",
    "run_acquisition",
    "select_round",
    "spatial_coverage",
    "split_budget",
    "SCRLPolicy",
    "SCRLSampler",
    "PolicyConfig",
    "PolicyEnv",
    "iter_train_policy",
    "train_policy",
    "plackett_luce_log_prob",
]
