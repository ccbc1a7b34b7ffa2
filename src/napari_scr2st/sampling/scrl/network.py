"""The SCRL policy's network: its configuration, the torch module and Plackett-Luce log-probability.

Architecture: ``h = trunk(x_round)`` (MLP, cached per round); the weight vector ``w`` (normalised
to sum 1) enters LATE: ``u = relu(h * (1 + gamma(w)) + beta(w) + A x_dyn)`` (FiLM) and
``score = v . u + sum_j w_j q_j([h, x_dyn])`` (per-term value heads, a small MLP; one per reward
term: ``PolicyConfig.n_terms``). Moving the
weight sliders re-runs only the head: one forward pass of a few thousand flops per spot.

A round of ``k`` picks is made in ``substeps`` sub-batches; after each the within-round features
are updated. Training samples each sub-batch by Gumbel-top-k (Plackett-Luce without
replacement); the exact log-probability of the ordered picks is
:func:`plackett_luce_log_prob`. Deployment takes the top-k (or samples with a temperature).

The torch module is defined lazily (:func:`policy_net_class`) so that importing this module does
not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PolicyConfig", "N_DYN", "plackett_luce_log_prob", "policy_net_class"]

#: within-round features per spot (distance to the nearest selected spot, cluster not covered, type share)
N_DYN = 3


@dataclass
class PolicyConfig:
    """Architecture and feature sizes; ``celltypes``/``space_dims``/``reference`` tie a policy to
    the reference it was trained with (checked at deployment)."""

    n_types: int
    celltypes: list[str]
    space_dims: int
    n_clusters: int
    reference: str = ""
    n_vision: int = 8
    n_z: int = 8
    hidden: int = 64
    substeps: int = 4
    substep_evals: int = 25_000
    knn: int = 10
    vision_dim: int | None = None
    term_hidden: int = 32  # hidden units of the per-term value heads (0: linear heads, format-1 files)
    n_terms: int = 4  # reward terms the weights and per-term heads cover (3: files from before r_unc)
    unc_feature: bool = True  # the r_unc gain of each spot is a round feature (False: files from before r_unc)

    @property
    def n_round_features(self) -> int:
        return self.n_vision + 1 + 3 + 3 + 1 + self.n_z + self.n_types + 1 + 2 + int(self.unc_feature)

    def round_feature_names(self) -> list[str]:
        return ([f"vision_{i}" for i in range(self.n_vision)] + ["typicality", "x", "y", "radius",
                "dist_selected", "density_selected", "section_empty", "vision_novelty"]
                + [f"z_{i}" for i in range(self.n_z)] + [f"p_{t}" for t in self.celltypes]
                + ["has_prediction", "round_fraction", "budget_used"] + (["unc_gain"] if self.unc_feature else []))


def plackett_luce_log_prob(scores, picks, available=None):
    """Exact log-probability of the ORDERED ``picks`` under Plackett-Luce with logits ``scores``.

    ``log p = sum_j [s_{i_j} - log(sum_{l >= j} e^{s_{i_l}} + sum_{u in rest} e^{s_u})]`` where
    ``rest`` are the available items never picked. Torch tensors in, a scalar tensor out
    (differentiable); equals the probability that Gumbel-top-k returns this sequence.
    """
    import torch

    s = scores if available is None else scores.masked_fill(~available, float("-inf"))
    picks = torch.as_tensor(picks, dtype=torch.long, device=s.device)
    picked = s[picks]
    rest = torch.ones_like(s, dtype=torch.bool) if available is None else available.clone()
    rest[picks] = False
    lse_rest = torch.logsumexp(s[rest], 0) if bool(rest.any()) else s.new_tensor(float("-inf"))
    tail = torch.logcumsumexp(picked.flip(0), 0).flip(0)
    denom = torch.logaddexp(tail, lse_rest)
    return (picked - denom).sum()


_NET_CLASS = None


def policy_net_class():
    """The torch module (defined lazily so importing this file does not import torch)."""
    global _NET_CLASS
    if _NET_CLASS is not None:
        return _NET_CLASS
    import torch
    from torch import nn

    class PolicyNet(nn.Module):
        def __init__(self, n_in: int, n_dyn: int, hidden: int, n_w: int = 3, term_hidden: int = 0) -> None:
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
            self.film = nn.Linear(n_w, 2 * hidden)
            self.dyn = nn.Linear(n_dyn, hidden, bias=False)
            self.out = nn.Linear(hidden, 1)
            if term_hidden > 0:
                self.terms = nn.Sequential(nn.Linear(hidden + n_dyn, term_hidden), nn.ReLU(),
                                           nn.Linear(term_hidden, n_w))
                last = self.terms[-1]
            else:
                self.terms = last = nn.Linear(hidden + n_dyn, n_w)
            for m in (self.out, last):  # start near a uniform policy
                nn.init.normal_(m.weight, std=1e-3)
                nn.init.zeros_(m.bias)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

        def q(self, h: torch.Tensor, x_dyn: torch.Tensor) -> torch.Tensor:
            """Per-term values (n, n_terms): trained to predict each reward term's marginal gain."""
            return self.terms(torch.cat([h, x_dyn], dim=-1))

        def head(self, h: torch.Tensor, x_dyn: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            gamma, beta = self.film(w).chunk(2, dim=-1)
            u = torch.relu(h * (1.0 + gamma) + beta + self.dyn(x_dyn))
            return self.out(u).squeeze(-1) + (self.q(h, x_dyn) * w).sum(-1)

    _NET_CLASS = PolicyNet
    return PolicyNet
