"""Active sampling of spots (METHOD sections 2-4, 8): reward, samplers, acquisition loop, SCRL.

Data flow and the leakage rule: samplers see a :class:`Pool` (ids, sections, coordinates, vision
embedding, exclusions; never expression) and a :class:`SelectionState` (the selection and the
counts of REVEALED spots only). Hidden counts live in :class:`SimulatedOracle` (simulation) or
come from :func:`import_counts` (real sequencing results).

Modules (heavy dependencies are imported inside functions; torch only by ``policy``):

- ``reward``: the three reward terms and :class:`RewardWeights`;
- ``pool`` / ``state``: :class:`Pool`, :class:`SelectionRequest`, :class:`SelectionState`;
- ``samplers``: random, grid, k-center, TypiClust, AR weights, greedy reward maximiser;
- ``policy``: the SCRL policy (:class:`SCRLPolicy`, :class:`SCRLSampler`, training);
- ``loop``: :func:`iter_acquisition` and :class:`SimulatedOracle`;
- ``predictors``: :class:`RidgePredictor` (an ``ExpressionPredictor``) and the space predictor;
- ``measured``: the measured set in the reference space, :class:`RewardEvaluator`;
- ``benchmark``: the sampling benchmark; ``standin``: patch-statistics vision stand-in.
"""

from .loop import (
    AcquisitionResult,
    SimulatedOracle,
    iter_acquisition,
    plan_rounds,
    run_acquisition,
    select_round,
)
from .measured import MeasuredEmbedder, MeasuredSet, RewardEvaluator
from .pool import Pool, SelectionRequest, resolve_budget, round_schedule, split_budget
from .predictors import RidgePredictor, SpacePredictor
from .reward import (
    RewardTerms,
    RewardWeights,
    SpatialIndex,
    celltype_entropy,
    compute_reward,
    manifold_coverage,
    spatial_coverage,
)
from .samplers import (
    SAMPLER_NAMES,
    ARSampler,
    GreedyRewardSampler,
    GridSampler,
    KCenterSampler,
    RandomSampler,
    Sampler,
    TypiClustSampler,
    make_sampler,
)
from .state import MeasuredView, SelectionState, import_counts


def __getattr__(name: str):
    # the policy module imports torch lazily; expose its names without importing it eagerly
    if name in ("SCRLPolicy", "SCRLSampler", "PolicyConfig", "PolicyEnv", "iter_train_policy", "train_policy",
                "plackett_luce_log_prob"):
        from . import policy

        return getattr(policy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AcquisitionResult",
    "ARSampler",
    "GreedyRewardSampler",
    "GridSampler",
    "KCenterSampler",
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
