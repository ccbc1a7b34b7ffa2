"""On-disk cache of vision embeddings.

Embeddings are expensive on a CPU, and the same section is often embedded again (a new napari
session, another sampler run). They are cached per section under a key that hashes everything
that determines the numbers:

- the image: for an image read from a file, its resolved path, size and modification time; for
  an in-memory image (synthetic sample, hires frame), a hash of the lowres image bytes, the
  full-resolution shape and a strided sample of about 512 x 512 full-resolution pixels;
- the model name and its weights identity (:func:`~.encoders.weights_identity`);
- the crop geometry: ``crop_px``, ``out_size``, border padding, and :data:`CACHE_VERSION` (raised
  whenever cropping or resizing changes);
- the spot centres rounded to whole pixels, in order. These are exactly the numbers that place
  the crops.

The device and precision are not part of the key: CPU and GPU results differ only by rounding.

An entry is ``{key}.npy`` (float32, ``(n_spots, dim)``) plus ``{key}.json`` with the settings
in readable form. Both are written atomically, so a crash never leaves a half-written array
under a valid key. The default folder is ``$SCR2ST_CACHE_DIR`` or
``~/.cache/napari-scr2st/embeddings``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from ..data.model import SPATIAL_KEY, get_fullres_image
from .crops import round_half_up

__all__ = [
    "CACHE_VERSION",
    "CACHE_ENV",
    "default_cache_dir",
    "image_identity",
    "embedding_cache_key",
    "load_cached",
    "save_cached",
]

#: bump when cropping/resizing changes so that old entries are not reused
CACHE_VERSION = 1
CACHE_ENV = "SCR2ST_CACHE_DIR"
_SAMPLE_SIDE = 512


def default_cache_dir() -> Path:
    """``$SCR2ST_CACHE_DIR`` if set, else ``~/.cache/napari-scr2st/embeddings``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return (
        Path(env).expanduser() if env else Path.home() / ".cache" / "napari-scr2st" / "embeddings"
    )


def image_identity(adata, library: str) -> str:
    """A string that changes when the section's full-resolution image changes (see module docstring).

    The source is chosen the same way :func:`~napari_scr2st.data.model.get_fullres_image` chooses
    it: an in-memory ``hires`` image at scale 1 first, then ``metadata["source_image_path"]``.
    """
    entry = adata.uns[SPATIAL_KEY][library]
    images = entry.get("images", {}) or {}
    sf = entry.get("scalefactors", {}) or {}
    in_memory = "hires" in images and float(sf.get("tissue_hires_scalef", 0)) == 1.0
    path = (entry.get("metadata", {}) or {}).get("source_image_path", "")
    if not in_memory and path:
        p = Path(path)
        if p.is_file():
            st = p.stat()
            return f"file:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    full = get_fullres_image(adata, library)
    if full is None:
        raise ValueError(f"section {library!r} has no full-resolution image")
    full = np.asarray(full)
    h = hashlib.sha256()
    low = images.get("lowres")
    if low is not None:
        low = np.ascontiguousarray(low)
        h.update(str(low.shape).encode())
        h.update(low.tobytes())
    h.update(str(full.shape).encode())
    sy = max(1, full.shape[0] // _SAMPLE_SIDE)
    sx = max(1, full.shape[1] // _SAMPLE_SIDE)
    h.update(np.ascontiguousarray(full[::sy, ::sx]).tobytes())
    return f"memory:{h.hexdigest()}"


def embedding_cache_key(
    adata,
    library: str,
    indices: np.ndarray,
    *,
    model: str,
    weights_id: str,
    crop_px: int,
    out_size: int | None,
    pad_mode: str,
    pad_value: Any,
) -> tuple[str, dict]:
    """Return ``(key, settings)`` for the spots ``indices`` of section ``library``.

    ``key`` is a 32-character hex digest; ``settings`` is the readable dict behind it (written
    to the JSON sidecar).
    """
    xy = np.asarray(adata.obsm[SPATIAL_KEY], dtype=np.float64)[np.asarray(indices), :2]
    centres = np.ascontiguousarray(round_half_up(xy))
    settings = {
        "cache_version": CACHE_VERSION,
        "library": str(library),
        "image": image_identity(adata, library),
        "model": str(model),
        "weights": str(weights_id),
        "crop_px": int(crop_px),
        "out_size": None if out_size is None else int(out_size),
        "pad_mode": str(pad_mode),
        "pad_value": np.asarray(pad_value).tolist(),
        "n_spots": int(len(centres)),
        "centres_sha256": hashlib.sha256(centres.tobytes()).hexdigest(),
    }
    blob = json.dumps(settings, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32], settings


def _paths(cache_dir: str | os.PathLike, key: str) -> tuple[Path, Path]:
    d = Path(cache_dir)
    return d / f"{key}.npy", d / f"{key}.json"


def load_cached(cache_dir: str | os.PathLike, key: str, n_spots: int) -> np.ndarray | None:
    """The cached float32 ``(n_spots, dim)`` array, or ``None`` when absent or unusable.

    A cache entry that cannot be read or has the wrong shape or dtype is treated as missing;
    so is one holding a non-finite value or a vector of zeros (an encoder never returns one:
    such an entry was zeroed or filled in part), with a warning naming the file. Missing
    entries are recomputed and overwritten.
    """
    npy, _ = _paths(cache_dir, key)
    if not npy.is_file():
        return None
    try:
        arr = np.load(npy, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != n_spots or arr.dtype != np.float32:
        return None
    finite = np.isfinite(arr).all(axis=1)
    zero = ~arr.any(axis=1) if arr.shape[1] else np.ones(len(arr), dtype=bool)
    bad = ~finite | zero
    if bad.any():
        what = "non-finite values" if not finite.all() else "all-zero vectors"
        warnings.warn(
            f"embedding cache entry {npy} holds {what} ({int(bad.sum())} of {len(arr)} spots); "
            "ignoring it and recomputing the embeddings",
            stacklevel=2,
        )
        return None
    return arr


def save_cached(
    cache_dir: str | os.PathLike, key: str, array: np.ndarray, settings: Mapping[str, Any]
) -> Path:
    """Write ``array`` (as float32) and a JSON sidecar atomically; return the ``.npy`` path."""
    npy, sidecar = _paths(cache_dir, key)
    arr = np.ascontiguousarray(array, dtype=np.float32)
    with atomic_write(npy, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    meta = dict(settings)
    meta.update(
        {
            "key": key,
            "shape": list(arr.shape),
            "dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    from importlib.metadata import PackageNotFoundError, version

    try:
        meta["napari_scr2st_version"] = version("napari-scr2st")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        meta["napari_scr2st_version"] = "unknown"
    with atomic_write(sidecar, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True)
    return npy
