"""The one place for settings: typed dataclasses with their defaults.

The CLI options (``scr2st select``), the napari docks and the plugin settings (the npe2
``configurations`` in ``napari.yaml``) take their defaults from these classes; a test checks
that ``napari.yaml`` and the CLI parser agree with them. Plain values only (no numpy, no
torch), so importing this module costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

#: what switches an environment flag off (any other non-empty value switches it on)
ENV_OFF = ("0", "false", "no", "off")


def env_flag(name: str, default: bool) -> bool:
    """The on/off switch in environment variable ``name``: ``default`` when it is unset or
    empty, off for ``0``/``false``/``no``/``off`` (any case), on for anything else."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in ENV_OFF

__all__ = [
    "SAMPLERS",
    "SAMPLER_LABELS",
    "ENCODERS",
    "DEFAULT_ENCODER",
    "PATCH_STATS",
    "MODES",
    "PANEL_METHODS",
    "DEFAULT_PANEL_METHOD",
    "PolicyTrainingSettings",
    "SamplingSettings",
    "TrainConfig",
    "TrainingSettings",
]

#: the vision encoder used when a section has no embedding yet (ImageNet weights ship offline)
DEFAULT_ENCODER = "efficientnet_lite0"
#: the instant colour/texture stand-in for a vision encoder
PATCH_STATS = "patch-stats"
#: encoders offered in the docks (any timm name works from Python and the CLI)
ENCODERS = (DEFAULT_ENCODER, PATCH_STATS, "resnet18", "hf-hub:MahmoodLab/UNI")

#: sampler names, in the order the docks list them
SAMPLERS = ("greedy", "scrl", "kcenter", "typiclust", "grid", "random", "ar", "uncertainty", "gp", "lcmd")
SAMPLER_LABELS = {
    "greedy": "greedy reward maximiser",
    "scrl": "SCRL policy (reward-weighted, live)",
    "kcenter": "k-center greedy (coreset, vision)",
    "typiclust": "TypiClust (vision)",
    "grid": "regular grid",
    "random": "random",
    "ar": "adaptive resampling (vision)",
    "uncertainty": "predictor uncertainty (ridge ensemble, vision + space)",
    "gp": "Gaussian-process variance (vision + space)",
    "lcmd": "LCMD batch active learning (vision + space)",
}
#: SCR2Net variants: the full model, regression only (ST-Net-like), retrieval only (BLEEP-like)
MODES = ("full", "regression", "retrieval")

#: gene-panel kinds (model.panel.select_panel): highly expressed, highly variable, half of each
PANEL_METHODS = ("heg", "hvg", "union")
#: the panel kind that measured best across data (benchmarks/bench_panel.py, docs/benchmarks.md)
DEFAULT_PANEL_METHOD = "heg"
#: default weight of the expected-error term ``r_unc`` (the same value as
#: ``napari_scr2st.sampling.reward.DEFAULT_UNC_WEIGHT``). Off by default: measured by
#: benchmarks/bench_reward_proxy.py, it ranks selections by the ridge surrogate's PCC
#: (Spearman +0.31 on her2st) but not by SCR2Net's (-0.25), the predictor users get, and the
#: label-efficiency numbers of docs/benchmarks.md are for the three-term reward
DEFAULT_UNC_WEIGHT = 0.0

#: samplers whose reward needs the single-cell reference space
REFERENCE_SAMPLERS = ("greedy", "scrl")
#: what a reference-based default falls back to when a section has no reference
FALLBACK_SAMPLER = "kcenter"


@dataclass
class SamplingSettings:
    """What to select and how: the budget, the rounds, the sampler and its reward weights.

    ``budget``: a count (``"60"``) or a percentage (``"15%"``) of the selectable spots (with
    ``per_section``, of each section). Manual picks count toward it. ``rounds``: acquisition
    rounds the budget is spread over (a round is sequenced before the next is chosen).
    ``sampler``: one of :data:`SAMPLERS`. ``w_sc``, ``w_type``, ``w_sp``, ``w_unc``: reward
    weights of cell-state coverage, cell-type diversity, spatial coverage and the predictor's
    expected-error reduction (``r_unc``, docs/method.md). ``seed``: the seed of every
    random choice of the run. ``policy_path``: an SCRL policy file (empty: an untrained
    policy until one is pre-trained or loaded). ``encoder``: the vision encoder used when a
    section has no embedding. ``vision_key``: the ``obsm`` key of that embedding.
    """

    budget: str = "15%"
    rounds: int = 2
    #: the sampler that measured best across data in the paired label-efficiency protocol, by
    #: the rule of benchmarks/bench_label_efficiency.py (docs/benchmarks.md "Label efficiency":
    #: grid has the best mean over her2st and the synthetic sample, and is the only sampler
    #: significantly above random on her2st); greedy and SCRL are one choice away
    sampler: str = "grid"
    w_sc: float = 1.0
    w_type: float = 1.0
    w_sp: float = 1.0
    w_unc: float = DEFAULT_UNC_WEIGHT
    seed: int = 0
    per_section: bool = False
    policy_path: str = ""
    encoder: str = DEFAULT_ENCODER
    vision_key: str = "X_vision"

    def __post_init__(self) -> None:
        self.budget = str(self.budget).strip()
        if int(self.rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        self.rounds = int(self.rounds)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        for name in ("w_sc", "w_type", "w_sp", "w_unc"):
            v = float(getattr(self, name))
            if not v >= 0:  # also refuses NaN
                raise ValueError(f"reward weight {name} must be >= 0, got {getattr(self, name)!r}")
            setattr(self, name, v)
        self.seed = int(self.seed)

    @property
    def weights(self) -> tuple[float, float, float]:
        """``(w_sc, w_type, w_sp)`` (the three coverage terms; :attr:`reward_weights` has all four)."""
        return (self.w_sc, self.w_type, self.w_sp)

    @property
    def reward_weights(self) -> tuple[float, float, float, float]:
        """``(w_sc, w_type, w_sp, w_unc)``, the order of ``RewardWeights``."""
        return (self.w_sc, self.w_type, self.w_sp, self.w_unc)

    def with_weights(self, weights: Any) -> SamplingSettings:
        """A copy with the weights of ``weights``: a ``RewardWeights`` or ``(sc, type, sp, unc)``
        (all four), or a triple ``(sc, type, sp)`` (``w_unc`` unchanged)."""
        if hasattr(weights, "sc"):
            weights = (weights.sc, weights.type, weights.sp, weights.unc)
        vals = [float(v) for v in weights]
        if len(vals) not in (3, 4):
            raise ValueError(f"weights must be (sc, type, sp) or (sc, type, sp, unc), got {weights!r}")
        unc = vals[3] if len(vals) == 4 else self.w_unc
        return replace(self, w_sc=vals[0], w_type=vals[1], w_sp=vals[2], w_unc=unc)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SamplingSettings:
        """Settings from a saved dict; unknown keys are ignored (newer files stay readable)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class PolicyTrainingSettings:
    """The SCRL pre-training recipe (``scr2st train-policy``,
    :func:`~napari_scr2st.sampling.scrl.iter_train_policy` and the dock's Pre-train through
    :meth:`~napari_scr2st.session.AcquisitionSession.iter_pretrain` take their defaults here).

    ``imitation_episodes`` of behaviour cloning of the greedy reward maximiser, then
    ``episodes`` of REINFORCE with ``group_size`` rollouts per episode, ``rounds`` acquisition
    rounds per episode and a budget fraction drawn from ``budget_range``; ``lr``: the REINFORCE
    learning rate. :meth:`split` divides a total number of episodes (the dock's Pre-train asks
    for a total, usually a few dozen on the open section) with ``pretrain_imitation_share`` of
    them imitation, rounded down.
    """

    episodes: int = 200
    imitation_episodes: int = 100
    rounds: int = 4
    group_size: int = 4
    budget_range: tuple[float, float] = (0.08, 0.3)
    lr: float = 3e-3
    pretrain_imitation_share: float = 0.2

    def split(self, total: int) -> tuple[int, int]:
        """``(imitation, reinforce)`` episodes for ``total`` pre-training episodes."""
        total = int(total)
        if total < 1:
            raise ValueError(f"pre-training needs at least one episode; got {total}")
        imitation = min(int(total * self.pretrain_imitation_share), total - 1)
        return imitation, total - imitation


@dataclass
class TrainingSettings:
    """What the training dock and ``scr2st train`` set for SCR2Net (the rest of
    :class:`~napari_scr2st.model.TrainConfig` keeps its defaults).

    ``backbone``: the image encoder (a timm name; ``patch-stats`` trains on the instant
    stand-in embedding). ``device``: ``auto``, ``cpu``, ``gpu``/``cuda``, ``cuda:N`` or ``mps``.
    ``mc_samples``: MC-dropout passes for the prediction's spread (0: none).
    """

    backbone: str = DEFAULT_ENCODER
    epochs: int = 30
    device: str = "auto"
    mode: str = "full"
    batch_size: int = 64
    n_genes: int = 250
    k: int = 8
    m: int = 2
    mc_samples: int = 0
    hidden_dim: int = 256
    proj_dim: int = 128

    def to_train_config(self, **overrides: Any):
        """The validated :class:`~napari_scr2st.model.TrainConfig` for these settings."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "mc_samples"}
        if kw["backbone"] == PATCH_STATS:
            kw["backbone"] = DEFAULT_ENCODER  # the frozen path trains on the stand-in embedding
        kw.update(overrides)
        return TrainConfig(**kw).validate()


@dataclass
class TrainConfig:
    """Every training option; built by the CLI and by the GUI alike (plain values only)."""

    mode: str = "full"  # full | regression (ST-Net-like) | retrieval (BLEEP-like)
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    k: int = 8  # retrieved neighbours
    m: int = 2  # majority filter: keep neighbours of the m most frequent types
    lambda_soft: float = 0.5
    lambda_con: float = 0.5
    lambda_energy: float = 0.1
    alpha: float = 0.3  # blend of retrieval at inference (0 = regression only)
    adaptive_resampling: bool = False
    energy_loss: bool = False
    energy_unbiased: bool = True
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = True  # mixed precision, CUDA only
    num_threads: int | None = None  # torch CPU threads (process-wide!); None leaves torch's choice
    fine_tune: bool = False  # False: frozen embeddings (fast path); True: fine-tune the backbone
    backbone: str = "efficientnet_lite0"  # features.encoders name ("random:<name>": random init)
    crop_px: int | None = None  # crop edge in full-res pixels (None: features' default)
    image_size: int = 224  # backbone input size (fine-tune path)
    backbone_lr_scale: float = 0.1  # backbone LR = lr * this
    checkpoint_dir: str | None = None
    embedding_key: str = "X_vision"
    cell_type_key: str | None = "cell_type"
    n_genes: int = 250
    panel_method: str = DEFAULT_PANEL_METHOD  # heg | hvg | union (PANEL_METHODS)
    panel_min_frac: float = 0.1  # genes detected in fewer training spots are not candidates
    genes: list[str] | None = None  # explicit panel (overrides n_genes/panel_method)
    hidden_dim: int = 256
    proj_dim: int = 128
    dropout: float = 0.5
    temperature: float = 0.07  # initial contrastive temperature (learnable)
    val_fraction: float = 0.1
    keep: str = "last"  # last | best
    ar_bins: int = 50
    ar_sigma: float = 1.0
    ar_alpha: float = 1e-3
    warmup_frac: float = 0.05
    spatial_residual: bool = True  # within-slide: correct by measured neighbours' residuals (frozen path)
    spatial_folds: int = 3  # refits that give the out-of-fold residuals of the measured spots

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        if self.k < 1 or self.m < 0:
            raise ValueError("k must be >= 1 and m >= 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if not 0.0 <= self.val_fraction < 0.9:
            raise ValueError("val_fraction must be in [0, 0.9)")
        if int(self.spatial_folds) < 2:
            raise ValueError(f"spatial_folds must be >= 2, got {self.spatial_folds}")
        if self.panel_method not in PANEL_METHODS:
            raise ValueError(f"panel_method must be one of {PANEL_METHODS}, got {self.panel_method!r}")
        if self.keep not in ("last", "best"):
            raise ValueError("keep must be 'last' or 'best'")
        for name in ("lr", "lambda_soft", "lambda_con", "lambda_energy", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> TrainConfig:
        return replace(self, **changes)
