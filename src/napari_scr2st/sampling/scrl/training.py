"""Training of the SCRL policy on simulated episodes (REINFORCE, imitation warm start, auxiliary loss).

Training (:func:`iter_train_policy`): REINFORCE on simulated episodes of fully measured sections.
Each episode draws weights from a Dirichlet, a budget and G rollouts of the same section and
weights; the reward of a round is the gain of the weighted cumulative reward computed from
REVEALED expression; the advantage of a round is its reward-to-go minus the group mean at that
round, normalised; loss = -sum(advantage * log-prob) - entropy_coef * entropy.

Weights are drawn per episode as a simplex corner (one term only; probability 0.25) or from
Dirichlet(0.5), so the extremes a user can set with the sliders are trained. An auxiliary
supervised loss trains each per-term head ``q_j`` to predict the TRUE marginal gain of term ``j``
of a spot (:class:`TermGains`: computed in simulation from the training section's revealed
expression; a training target only, the policy's inputs are unchanged). Without it, a few dozen
REINFORCE episodes (the napari "Pre-train" button) learned a score that ignored the weights
(selections at (1,0,0), (0,1,0), (0,0,1) overlapped by Jaccard 0.9) and clustered in space
(r_sp 0.82 vs 0.93 for random picks); with it the weight path is trained from the first episode
(``benchmarks/bench_policy_weights.py``, docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np

from ...config import PolicyTrainingSettings
from ...progress import CancelToken, Progress, drive
from ...torch_runtime import triton_blocked
from ..baselines import GreedyRewardSampler
from ..pool import round_schedule
from ..reward import TERM_NAMES, RewardWeights
from ..state import SelectionState
from ..surrogate import SpacePredictor
from ..thread_limits import single_thread
from .environment import PolicyEnv, TermGains, reward_weights, rollout
from .features import AuxSample
from .policy import SCRLPolicy

__all__ = ["sample_weights", "iter_train_policy", "train_policy"]

#: the default recipe (config.PolicyTrainingSettings), shared with ``scr2st train-policy`` and the dock
_RECIPE = PolicyTrainingSettings()


def sample_weights(rng: np.random.Generator, alpha: float = 0.5, corner_prob: float = 0.25,
                   n_terms: int = 4) -> np.ndarray:
    """Training weights of one episode: with probability ``corner_prob`` a corner of the simplex
    (one term only), else Dirichlet(``alpha``) (``alpha`` < 1 favours lopsided vectors, so the
    policy sees the extremes a user can set with the sliders)."""
    if corner_prob > 0 and rng.random() < corner_prob:
        return np.eye(n_terms)[int(rng.integers(n_terms))]
    return rng.dirichlet(np.full(n_terms, float(alpha)))


def iter_train_policy(
    policy: SCRLPolicy,
    envs: Sequence[PolicyEnv],
    space=None,
    *,
    episodes: int = _RECIPE.episodes,
    group_size: int = _RECIPE.group_size,
    rounds: int = _RECIPE.rounds,
    budget_range: tuple[float, float] = _RECIPE.budget_range,
    lr: float = _RECIPE.lr,
    entropy_coef: float = 0.01,
    dirichlet_alpha: float = 0.5,
    corner_prob: float = 0.25,
    aux_coef: float = 1.0,
    aux_steps: int = 32,
    aux_lr: float = 3e-3,
    aux_buffer: int = 256,
    fixed_weights: RewardWeights | None = None,
    seed: int = 0,
    predictor=None,
    imitation_episodes: int = 0,
    imitation_lr: float = 1e-2,
    token: CancelToken | None = None,
) -> Generator[Progress, None, list[dict[str, float]]]:
    """REINFORCE with a group baseline on simulated episodes (see module docstring).

    Each env carries its own reference space (``space``, if given, is only checked against the
    policy). Episodes cycle through ``envs``; yields one Progress per episode and returns the
    per-episode records (also appended to ``policy.history``).

    The defaults are those of :class:`~napari_scr2st.config.PolicyTrainingSettings` except
    ``imitation_episodes`` (0 here: plain REINFORCE unless asked; ``scr2st train-policy`` and
    the dock's Pre-train ask for the recipe's warm start).

    ``imitation_episodes`` > 0 first warm-starts the policy by behaviour cloning of the greedy
    reward maximiser (:class:`~napari_scr2st.sampling.baselines.GreedyRewardSampler`, which uses
    the same information as the policy: predictions from measured spots, never hidden
    expression), under the episode's sampled weights: the loss is minus the exact Plackett-Luce
    log-likelihood of the teacher's ordered picks. REINFORCE then fine-tunes on the true
    (revealed) reward. Plain REINFORCE from scratch learns slowly on small sections (see
    docs/benchmarks.md).

    Weights of an episode: :func:`sample_weights` (a simplex corner with probability
    ``corner_prob``, else Dirichlet(``dirichlet_alpha``)).

    Auxiliary term-gain loss (``aux_coef`` > 0, both phases): at a few sub-steps of every round
    the TRUE marginal gain of each reward term is computed for some available spots from the
    training section's revealed data (:class:`~.environment.TermGains`; a training target, never an input) and
    kept in a buffer of the last ``aux_buffer`` samples; after each episode's policy update,
    ``aux_steps`` Adam steps (``aux_lr``) regress the per-term heads ``q_j`` onto them
    (:meth:`SCRLPolicy.aux_loss`). The score is ``FiLM part + sum_j w_j q_j``, so this gives the
    weights a trained, correctly signed path from the first episodes on; without it a few dozen
    REINFORCE episodes learn a weight-blind score (docs/benchmarks.md, weight sensitivity).
    ``aux_coef=0, corner_prob=0, dirichlet_alpha=1`` is plain REINFORCE with uniform Dirichlet weights.
    """
    import torch

    if not envs:
        raise ValueError("no training sections")
    for sp_ in ([space] if space is not None else []) + [e.space for e in envs]:
        policy.check_space(sp_)
    if policy.vision_transform is None:
        policy.fit_vision([e.pool.vision for e in envs if e.pool.vision is not None])
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    with triton_blocked():  # the first optimiser imports torch._dynamo (see torch_runtime)
        opt_im = torch.optim.Adam(policy.net.parameters(), lr=imitation_lr, foreach=False)
    opt = torch.optim.Adam(policy.net.parameters(), lr=lr, foreach=False)
    aux_params = list(policy.net.trunk.parameters()) + list(policy.net.terms.parameters())
    opt_aux = torch.optim.Adam(aux_params, lr=aux_lr, foreach=False)
    use_aux = aux_coef > 0 and aux_steps > 0
    buffer: list[AuxSample] = []
    policy.net.train()
    hist: list[dict[str, float]] = []
    threads = single_thread()
    threads.__enter__()
    total_steps = imitation_episodes + episodes
    n_terms = int(policy.config.n_terms)

    def aux_update(new: list[AuxSample]) -> float:
        """Add ``new`` to the buffer and take ``aux_steps`` steps on random mini-batches of it."""
        if not use_aux:
            return float("nan")
        buffer.extend(new)
        del buffer[:-aux_buffer]
        if not buffer:
            return float("nan")
        losses = []
        for _ in range(aux_steps):
            pick = rng.choice(len(buffer), size=min(8, len(buffer)), replace=False)
            la = aux_coef * policy.aux_loss([buffer[i] for i in pick])
            opt_aux.zero_grad()
            la.backward()
            torch.nn.utils.clip_grad_norm_(aux_params, 1.0)
            opt_aux.step()
            losses.append(float(la.detach()))
        policy._version += 1
        return float(np.mean(losses))

    try:
        for ep in range(imitation_episodes):
            if token is not None:
                token.raise_if_cancelled()
            env = envs[ep % len(envs)]
            w = policy._w(fixed_weights) if fixed_weights is not None else sample_weights(rng, dirichlet_alpha, corner_prob,
                                                                                          n_terms)
            budget = int(max(rounds, round(rng.uniform(*budget_range) * env.pool.n_in_pool)))
            samples: list[AuxSample] | None = [] if use_aux else None
            loss, final = _imitation_episode(policy, env, w, budget, rounds, rng, predictor, aux_out=samples)
            opt_im.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
            opt_im.step()
            policy._version += 1
            aux_l = aux_update(samples or [])
            rec = {"episode": float(len(policy.history) + 1), "phase": "imitation", "return": final,
                   "loss": float(loss.detach()), "aux": aux_l, "budget": float(budget)}
            policy.history.append(rec)
            hist.append(rec)
            yield Progress(step=ep + 1, total=total_steps, message=f"imitation {env.name}",
                           metrics={"teacher_return": final, "nll": rec["loss"]})
        for ep in range(episodes):
            if token is not None:
                token.raise_if_cancelled()
            env = envs[ep % len(envs)]
            w = policy._w(fixed_weights) if fixed_weights is not None else sample_weights(rng, dirichlet_alpha, corner_prob,
                                                                                          n_terms)
            frac = rng.uniform(*budget_range)
            budget = int(max(rounds, round(frac * env.pool.n_in_pool)))
            G, LP, EN, finals = [], [], [], []
            samples = [] if use_aux else None
            for _ in range(group_size):
                gains, lps, ens, terms, _ = rollout(policy, env, w, budget, rounds, rng=rng, train=True,
                                                    predictor=predictor, aux=samples)
                G.append(np.cumsum(gains[::-1])[::-1])  # reward-to-go per round
                LP.append(torch.stack(lps))
                EN.append(torch.stack(ens))
                finals.append(terms.total(reward_weights(w)))
            G = np.stack(G)  # (group, rounds)
            adv = G - G.mean(axis=0, keepdims=True)
            adv = adv / (adv.std() + 1e-8)
            adv_t = torch.from_numpy(adv.astype(np.float32))
            logp = torch.stack(LP)
            ent = torch.stack(EN).mean()
            loss = -(adv_t * logp).sum(dim=1).mean() - entropy_coef * ent
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.net.parameters(), 1.0)
            opt.step()
            policy._version += 1
            aux_l = aux_update(samples or [])
            rec = {"episode": float(len(policy.history) + 1), "phase": "reinforce", "return": float(np.mean(finals)),
                   "loss": float(loss.detach()), "entropy": float(ent.detach()), "aux": aux_l,
                   "budget": float(budget), **{f"w_{t}": float(v) for t, v in zip(TERM_NAMES, w, strict=False)}}
            policy.history.append(rec)
            hist.append(rec)
            yield Progress(step=imitation_episodes + ep + 1, total=total_steps, message=env.name,
                           metrics={"return": rec["return"], "loss": rec["loss"]})
    finally:
        policy.net.eval()
        threads.__exit__(None, None, None)
    return hist


def _imitation_episode(policy: SCRLPolicy, env: PolicyEnv, w: np.ndarray, budget: int, rounds: int,
                       rng: np.random.Generator, predictor=None, aux_out: list | None = None):
    """One episode following the greedy teacher; returns (mean NLL per pick, teacher's return);
    with ``aux_out`` (a list) also records :class:`~.features.AuxSample` s of the true term gains."""
    W = reward_weights(w)
    teacher = GreedyRewardSampler(env.space, W, predictor=predictor, embedder=env.evaluator.embedder,
                                  seed=int(rng.integers(2**31 - 1)))
    spred = SpacePredictor(env.space, predictor)
    state = SelectionState.for_pool(env.pool)
    state.budget, state.n_rounds = int(budget), int(rounds)
    nll = []
    for t, k in enumerate(round_schedule(budget, rounds)):
        state.current_round = t
        m = env.evaluator.measured(state)
        zp = spred(env.pool, state, m.index, m.z)
        feats = policy.features(env.pool, state, env.space, measured=m, zp=zp)
        picks = teacher.select(env.pool, k, state, rng=rng)
        tg = TermGains(env, state, n_terms=policy.config.n_terms) if aux_out is not None else None
        nll.append(-policy._log_prob_round(feats, w, picks, aux=tg, aux_out=aux_out, rng=rng) / max(k, 1))
        state.mark_selected(picks, source="greedy")
        env.oracle.reveal(state, picks)
    import torch

    return torch.stack(nll).mean(), env.evaluator.terms(state).total(W)


def train_policy(*args, **kwargs) -> list[dict[str, float]]:
    """:func:`iter_train_policy` driven to completion without a progress bar."""
    return drive(iter_train_policy(*args, **kwargs), use_tqdm=False)
