"""SCRL: a per-spot scoring policy conditioned on the reward weights (METHOD section 4).

Modules:

- :mod:`.network`: :class:`PolicyConfig`, the torch module, :func:`plackett_luce_log_prob`;
- :mod:`.features`: the state features of every spot (no expression of an unmeasured spot);
- :mod:`.policy`: :class:`SCRLPolicy` (scoring, selection in sub-steps, save/load);
- :mod:`.environment`: :class:`PolicyEnv`, :class:`TermGains`, :func:`rollout` (simulation);
- :mod:`.training`: :func:`iter_train_policy` / :func:`train_policy`, :func:`sample_weights`;
- :mod:`.sampler`: :class:`SCRLSampler` (the policy behind the common sampler interface).

Importing this package does not import torch; the policy imports it when it builds its network.
"""

from .environment import PolicyEnv, TermGains, rollout
from .features import AuxSample, PolicyFeatures
from .network import N_DYN, PolicyConfig, plackett_luce_log_prob
from .policy import POLICY_FORMAT_VERSION, SCRLPolicy, n_substeps
from .sampler import SCRLSampler
from .training import iter_train_policy, sample_weights, train_policy

__all__ = [
    "AuxSample",
    "N_DYN",
    "POLICY_FORMAT_VERSION",
    "PolicyConfig",
    "PolicyEnv",
    "PolicyFeatures",
    "SCRLPolicy",
    "SCRLSampler",
    "TermGains",
    "iter_train_policy",
    "n_substeps",
    "plackett_luce_log_prob",
    "rollout",
    "sample_weights",
    "train_policy",
]
