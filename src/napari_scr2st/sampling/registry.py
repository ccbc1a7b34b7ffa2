"""Samplers by name: :data:`SAMPLER_NAMES` and :func:`make_sampler` (baselines and SCRL)."""

from __future__ import annotations

from typing import Any

from .baselines import (
    ARSampler,
    GreedyRewardSampler,
    GridSampler,
    KCenterSampler,
    RandomSampler,
    TypiClustSampler,
)
from .design import GPVarianceSampler, LCMDSampler, UncertaintySampler
from .sampler import Sampler
from .scrl.sampler import SCRLSampler

__all__ = ["SAMPLER_NAMES", "make_sampler"]


SAMPLER_NAMES = ("random", "grid", "kcenter", "typiclust", "ar", "greedy", "scrl", "uncertainty", "gp", "lcmd")


def make_sampler(name: str, *, seed: int = 0, space=None, weights=None, policy=None, predictor=None,
                 **kwargs: Any) -> Sampler:
    """Build a sampler by name (see :data:`SAMPLER_NAMES`).

    ``greedy`` and ``scrl`` need the reference ``space``; ``scrl`` needs a trained or fresh
    ``policy`` (:class:`~napari_scr2st.sampling.scrl.SCRLPolicy`).
    """
    key = name.lower().replace("-", "").replace("_", "")
    simple = {"random": RandomSampler, "grid": GridSampler, "kcenter": KCenterSampler, "coreset": KCenterSampler,
              "typiclust": TypiClustSampler, "ar": ARSampler, "adaptiveresampling": ARSampler,
              "uncertainty": UncertaintySampler, "gp": GPVarianceSampler, "lcmd": LCMDSampler}
    if key in simple:
        return simple[key](seed=seed, **kwargs)
    if key in ("greedy", "greedyreward"):
        if space is None:
            raise ValueError("the greedy reward maximiser needs a reference space (--reference)")
        return GreedyRewardSampler(space, weights, predictor=predictor, seed=seed, **kwargs)
    if key == "scrl":
        if space is None or policy is None:
            raise ValueError("the SCRL sampler needs a reference space and a policy (--policy FILE)")
        return SCRLSampler(policy, space, weights, predictor=predictor, seed=seed, **kwargs)
    raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}")
