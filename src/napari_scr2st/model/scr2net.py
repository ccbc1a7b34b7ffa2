"""SCR2Net: image encoder + regression head, gene encoder, and a shared contrastive space.

Architecture (METHOD.md section 5)::

    image input --(backbone, fine-tune path only)--> features (in_dim)
        --standardise--> trunk MLP (hidden, dropout) --> h
            h --> regression head --> predicted expression (G genes, log1p-normalised scale)
            h --> image projection --> z_img (unit norm, proj_dim)
    measured expression (G) --standardise--> gene encoder MLP --> z_gene (unit norm, proj_dim)

``logit_scale`` (log inverse temperature of the contrastive loss) is learnable.

Modes build only the parts they use (so DistributedDataParallel sees no unused parameters):

- ``full``: everything;
- ``regression`` (ST-Net-like): no gene encoder, no projection, no temperature;
- ``retrieval`` (BLEEP-like): no regression head.

FAST PATH: the input is a frozen, cached vision embedding (``obsm["X_vision"]``); the module has
no backbone. FULL PATH: ``backbone`` is a timm model mapping uint8 RGB crops (b, 3, S, S) to
features; it is fine-tuned together with the rest.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SCR2Net", "MODES"]

from ..config import MODES

FEATURE_CLIP = 5.0

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _mlp(d_in: int, d_hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, d_hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(d_hidden, d_out),
    )


class SCR2Net(nn.Module):
    """The predictor network; see the module docstring."""

    def __init__(
        self,
        in_dim: int,
        n_genes: int,
        *,
        mode: str = "full",
        hidden_dim: int = 256,
        proj_dim: int = 128,
        dropout: float = 0.2,
        temperature: float = 0.07,
        backbone: nn.Module | None = None,
        image_mean: tuple[float, float, float] = _IMAGENET_MEAN,
        image_std: tuple[float, float, float] = _IMAGENET_STD,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.in_dim = int(in_dim)
        self.n_genes = int(n_genes)
        self.backbone = backbone
        self.register_buffer("image_mean", torch.tensor(image_mean).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(image_std).view(1, 3, 1, 1))
        # standardisation of the (frozen) features and of the targets, set from training data
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        self.register_buffer("target_mean", torch.zeros(n_genes))
        self.register_buffer("target_std", torch.ones(n_genes))
        self.trunk = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(hidden_dim, n_genes) if mode != "retrieval" else None
        if mode != "regression":
            self.img_proj = nn.Linear(hidden_dim, proj_dim)
            self.gene_encoder = _mlp(n_genes, hidden_dim, proj_dim, dropout)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        else:
            self.img_proj = None
            self.gene_encoder = None
            self.logit_scale = None
        if self.head is not None:
            nn.init.normal_(self.head.weight, std=1e-3)
            nn.init.zeros_(self.head.bias)

    # ------------------------------------------------------------------ statistics
    @torch.no_grad()
    def set_statistics(self, features: torch.Tensor | None, targets: torch.Tensor) -> None:
        """Set standardisation buffers from training features (frozen path) and targets.

        A feature's sd is floored at 10 % of the median sd over features: dimensions that barely
        vary on the training spots (common in pooled CNN features) must not turn small shifts
        on a new slide into huge standardised values.
        """
        if features is not None:
            f = features.float()
            sd = f.std(0, unbiased=False)
            floor = max(float(sd.median()) * 0.1, 1e-6)
            self.feat_mean.copy_(f.mean(0))
            self.feat_std.copy_(sd.clamp_min(floor))
        self.target_mean.copy_(targets.float().mean(0))
        self.target_std.copy_(targets.float().std(0, unbiased=False).clamp_min(1e-3))

    # ------------------------------------------------------------------ encoders
    @property
    def has_contrastive(self) -> bool:
        return self.gene_encoder is not None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Input features: the backbone on uint8 crops (full path) or the embeddings (fast path).

        Standardised, then softly clipped to about [-FEATURE_CLIP, FEATURE_CLIP] (``c tanh(z / c)``,
        the identity for typical values) so out-of-distribution patches of a new slide cannot
        drive the MLP to extreme outputs.
        """
        if self.backbone is not None:
            x = (x.float() / 255.0 - self.image_mean) / self.image_std
            x = self.backbone(x)
            if x.ndim > 2:
                x = x.flatten(1)
        z = (x.float() - self.feat_mean) / self.feat_std
        return FEATURE_CLIP * torch.tanh(z / FEATURE_CLIP)

    def encode_image(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Trunk latent ``h`` and unit-norm image projection (None in regression mode)."""
        h = self.trunk(self.features(x))
        z = F.normalize(self.img_proj(h), dim=-1) if self.img_proj is not None else None
        return h, z

    def regress(self, h: torch.Tensor) -> torch.Tensor:
        """Regression head output on the log1p-normalised scale."""
        if self.head is None:
            raise RuntimeError("this SCR2Net has no regression head (mode='retrieval')")
        return self.target_mean + self.target_std * self.head(h)

    def encode_genes(self, y: torch.Tensor) -> torch.Tensor:
        """Unit-norm gene projection of measured (log1p-normalised) expression."""
        if self.gene_encoder is None:
            raise RuntimeError("this SCR2Net has no gene encoder (mode='regression')")
        return F.normalize(
            self.gene_encoder((y.float() - self.target_mean) / self.target_std), dim=-1
        )

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        """The latent used by adaptive resampling: the image projection (trunk output in regression mode)."""
        h, z = self.encode_image(x)
        return z if z is not None else h

    def forward(
        self, x: torch.Tensor, y: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """``pred`` (None in retrieval mode), ``z_img``, ``z_gene`` (if ``y`` and contrastive), ``logit_scale``."""
        h, z_img = self.encode_image(x)
        out: dict[str, torch.Tensor | None] = {
            "pred": self.regress(h) if self.head is not None else None,
            "z_img": z_img,
            "z_gene": None,
            "logit_scale": None,
        }
        if self.gene_encoder is not None:
            if y is not None:
                out["z_gene"] = self.encode_genes(y)
            out["logit_scale"] = self.logit_scale.clamp(max=math.log(100.0)).exp()
        return out
