"""Histology features: spot-centred image crops and vision-encoder embeddings.

- :mod:`.crops`: crops around spots from the full-resolution image, streamed in batches;
- :mod:`.encoders`: :func:`load_encoder` (timm backbones; offline ImageNet EfficientNet-Lite0 by
  default, any timm or hub model, local checkpoints);
- :mod:`.cache`: the on-disk embedding cache;
- :mod:`.patch_stats`: an instant stand-in embedding (colour/texture statistics of each spot's patch);
- :func:`compute_vision_embeddings` / :func:`iter_vision_embeddings`: crops -> encoder ->
  ``adata.obsm["X_vision"]`` (float32), cached on disk;
- :func:`ensure_vision_embedding` / :func:`iter_ensure_vision_embedding`: make sure an embedding
  exists (keep it, or compute it with a timm encoder or the ``"patch-stats"`` stand-in).

Importing this package does not import torch or timm; they are loaded when an encoder is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data.model import VISION_KEY
from ..progress import Progress, drive
from . import encoders
from .cache import default_cache_dir, embedding_cache_key, load_cached, save_cached
from .crops import DEFAULT_PAD_VALUE, iter_crops, resolve_crop_px, section_groups
from .patch_stats import PATCH_STATS_NAMES, patch_statistics_embedding

__all__ = [
    "compute_vision_embeddings",
    "iter_vision_embeddings",
    "ensure_vision_embedding",
    "iter_ensure_vision_embedding",
    "PATCH_STATS_DESCRIPTION",
    "patch_statistics_embedding",
    "PATCH_STATS_NAMES",
    "load_encoder",
    "iter_crops",
    "resolve_crop_px",
    "default_cache_dir",
    "UNS_KEY",
]

#: ``adata.uns`` key describing how the embeddings were made
UNS_KEY = "vision_embedding"


def load_encoder(name: str = encoders.DEFAULT_MODEL, **kwargs) -> encoders.VisionEncoder:
    """Shortcut for :func:`napari_scr2st.features.encoders.load_encoder`."""
    return encoders.load_encoder(name, **kwargs)


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a background thread, ``depth`` items ahead; exceptions are re-raised here.

    Crop cutting and resizing (NumPy/Pillow, which release the GIL) then overlap with the
    encoder's forward pass. Closing the consumer stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", done))
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
            q.put(("error", e))

    t = threading.Thread(target=produce, name="scr2st-crops", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


def iter_vision_embeddings(
    adata,
    model: str | encoders.VisionEncoder = encoders.DEFAULT_MODEL,
    *,
    weights: Any = "auto",
    crop_px: int | None = None,
    crop_um: float | None = None,
    spot_diameter_um: float | None = None,
    out_size: int | None = 224,
    batch_size: int = 64,
    device: Any = "auto",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    key_added: str | None = VISION_KEY,
    pad_mode: str = "constant",
    pad_value: Any = DEFAULT_PAD_VALUE,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Generator version of :func:`compute_vision_embeddings`.

    It yields :class:`~napari_scr2st.progress.Progress` events, where ``step`` counts spots
    embedded or read from the cache, and returns the float32 ``(n_obs, dim)`` array. Drive it
    with :func:`napari_scr2st.progress.drive` or napari's ``thread_worker``. Stopping it early
    (``close()``) leaves ``adata`` unchanged and keeps the cache entries of the sections that
    were already finished.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups = section_groups(adata)
    n = int(adata.n_obs)
    enc: encoders.VisionEncoder | None = (
        model if isinstance(model, encoders.VisionEncoder) else None
    )
    model_name = enc.name if enc is not None else str(model)
    weights_id = (
        enc.weights_id
        if enc is not None
        else encoders.weights_identity(model_name, weights, model_kwargs)
    )
    cacheable = use_cache and weights_id is not None
    cdir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    plan = []  # (library, indices, crop size, key, settings, cached array or None)
    for lib, idx in groups:
        size = resolve_crop_px(
            adata, crop_px, crop_um, library=lib, spot_diameter_um=spot_diameter_um
        )
        key, settings, cached = "", {}, None
        if cacheable:
            key, settings = embedding_cache_key(
                adata, lib, idx, model=model_name, weights_id=weights_id, crop_px=size,
                out_size=out_size, pad_mode=pad_mode, pad_value=pad_value,
            )  # fmt: skip
            cached = load_cached(cdir, key, len(idx))
        plan.append((lib, idx, size, key, settings, cached))

    done = sum(len(p[1]) for p in plan if p[5] is not None)
    yield Progress(done, n, "embeddings read from cache" if done else "preparing")
    todo = [p for p in plan if p[5] is None]
    if todo and enc is None:
        yield Progress(done, n, f"loading {model_name}")
        enc = encoders.load_encoder(
            model_name, weights=weights, device=device, model_kwargs=model_kwargs
        )

    dim = enc.num_features if enc is not None else int(next(p[5] for p in plan).shape[1])
    out = np.zeros((n, dim), dtype=np.float32)
    for lib, idx, _size, _key, _settings, cached in plan:
        if cached is not None:
            if cached.shape[1] != dim:
                raise RuntimeError(
                    f"cached embeddings of section {lib!r} have dim {cached.shape[1]}, expected {dim}"
                )
            out[idx] = cached
    for lib, idx, size, key, settings, _ in todo:
        batches = iter_crops(
            adata,
            size,
            batch_size,
            out_size,
            library=lib,
            indices=idx,
            pad_mode=pad_mode,
            pad_value=pad_value,
        )
        for b, crops in _prefetch(batches):
            feats = enc.embed(crops)
            if feats.shape != (len(b), dim):
                raise RuntimeError(
                    f"encoder {model_name!r} returned shape {feats.shape}, expected {(len(b), dim)}"
                )
            out[b] = feats
            done += len(b)
            yield Progress(done, n, f"embedding {lib}")
        if not np.isfinite(out[idx]).all():
            raise RuntimeError(
                f"encoder {model_name!r} produced non-finite embeddings for section {lib!r}"
            )
        if cacheable:
            save_cached(cdir, key, out[idx], settings)

    if key_added:
        adata.obsm[key_added] = out
        sizes = {lib: int(size) for lib, _, size, *_ in plan}
        keys = {lib: key for lib, _, _, key, *_ in plan}
        one = len(plan) == 1
        adata.uns[UNS_KEY] = {
            "model": model_name,
            "weights": str(weights_id) if weights_id is not None else "random",
            "crop_px": next(iter(sizes.values())) if one else sizes,
            "out_size": int(out_size) if out_size is not None else 0,
            "cache_key": next(iter(keys.values())) if one else keys,
            "key_added": key_added,
        }
    yield Progress(n, n, "done")
    return out


def compute_vision_embeddings(
    adata,
    model: str | encoders.VisionEncoder = encoders.DEFAULT_MODEL,
    *,
    weights: Any = "auto",
    crop_px: int | None = None,
    crop_um: float | None = None,
    spot_diameter_um: float | None = None,
    out_size: int | None = 224,
    batch_size: int = 64,
    device: Any = "auto",
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    key_added: str | None = VISION_KEY,
    pad_mode: str = "constant",
    pad_value: Any = DEFAULT_PAD_VALUE,
    model_kwargs: Mapping[str, Any] | None = None,
    progress: Callable[[Progress], Any] | bool | None = None,
) -> np.ndarray:
    """Embed a crop around every spot with a vision encoder. The result goes to ``adata.obsm[key_added]``.

    Parameters
    ----------
    adata
        One section, or several joined by :func:`~napari_scr2st.data.model.concat_sections`.
        Each section is cropped from its own image.
    model
        A model name for :func:`~.encoders.load_encoder` (default ``"efficientnet_lite0"``,
        offline ImageNet weights), or an already loaded :class:`~.encoders.VisionEncoder`.
    weights, device, model_kwargs
        Passed to :func:`~.encoders.load_encoder` when ``model`` is a name.
    crop_px, crop_um, spot_diameter_um
        Crop size (see :func:`~.crops.resolve_crop_px`); default 2 spot diameters.
    out_size
        Edge of the resized crops fed to the encoder (``None``: no resizing).
    batch_size
        Crops per forward pass.
    cache_dir, use_cache
        The on-disk cache (see :mod:`.cache`); default ``$SCR2ST_CACHE_DIR`` or
        ``~/.cache/napari-scr2st/embeddings``. Random weights are never cached.
    key_added
        ``obsm`` key (float32 ``(n_obs, dim)``); ``adata.uns["vision_embedding"]`` records
        ``model``, ``weights``, ``crop_px``, ``out_size``, ``cache_key``. ``None``: store nothing.
    pad_mode, pad_value
        Border handling (see :mod:`.crops`).
    progress
        A callback that receives each :class:`~napari_scr2st.progress.Progress` event, or
        ``True`` for a tqdm bar.

    Returns
    -------
    The float32 embedding array.
    """
    gen = iter_vision_embeddings(
        adata, model, weights=weights, crop_px=crop_px, crop_um=crop_um, spot_diameter_um=spot_diameter_um,
        out_size=out_size, batch_size=batch_size, device=device, cache_dir=cache_dir, use_cache=use_cache,
        key_added=key_added, pad_mode=pad_mode, pad_value=pad_value, model_kwargs=model_kwargs,
    )  # fmt: skip
    return drive(
        gen,
        desc="vision embeddings",
        use_tqdm=progress is True,
        callback=progress if callable(progress) else None,
    )


#: description returned by :func:`ensure_vision_embedding` for the patch-statistics stand-in
PATCH_STATS_DESCRIPTION = "patch colour/texture statistics (stand-in)"


def iter_ensure_vision_embedding(
    adata,
    encoder: str = encoders.DEFAULT_MODEL,
    *,
    key: str = VISION_KEY,
    device: Any = "auto",
    batch_size: int = 64,
    out_size: int | None = 224,
    crop_px: int | None = None,
) -> Generator[Progress, None, str]:
    """Make sure ``adata.obsm[key]`` holds a vision embedding; returns a description of it.

    An existing ``obsm[key]`` is kept (``"existing obsm['<key>']"``). ``encoder`` in
    :data:`PATCH_STATS_NAMES` (``"patch-stats"``): the instant stand-in of :mod:`.patch_stats`
    (:data:`PATCH_STATS_DESCRIPTION`); any other name: :func:`iter_vision_embeddings` with that
    encoder (``device``, ``batch_size``, ``out_size``, ``crop_px``), returning the encoder's name. Yields
    :class:`~napari_scr2st.progress.Progress` events.
    """
    if key in adata.obsm:
        yield Progress(1, 1, f"existing obsm['{key}']")
        return f"existing obsm['{key}']"
    if encoder in PATCH_STATS_NAMES:
        yield Progress(0, 1, PATCH_STATS_DESCRIPTION)
        adata.obsm[key] = patch_statistics_embedding(adata)
        yield Progress(1, 1, PATCH_STATS_DESCRIPTION)
        return PATCH_STATS_DESCRIPTION
    yield from iter_vision_embeddings(adata, encoder, key_added=key, device=device, batch_size=batch_size,
                                      out_size=out_size, crop_px=crop_px)
    return str(encoder)


def ensure_vision_embedding(
    adata,
    encoder: str = encoders.DEFAULT_MODEL,
    *,
    key: str = VISION_KEY,
    device: Any = "auto",
    batch_size: int = 64,
    out_size: int | None = 224,
    crop_px: int | None = None,
    progress: Callable[[Progress], Any] | bool | None = None,
) -> str:
    """:func:`iter_ensure_vision_embedding` driven to completion (``progress`` as in
    :func:`compute_vision_embeddings`); returns the description of the embedding."""
    gen = iter_ensure_vision_embedding(adata, encoder, key=key, device=device, batch_size=batch_size,
                                       out_size=out_size, crop_px=crop_px)
    return drive(gen, desc="vision embeddings", use_tqdm=progress is True,
                 callback=progress if callable(progress) else None)
