"""What the predictor reads from a section: image inputs, targets, cell types, spot keys.

- Image inputs, FAST PATH: the frozen embedding ``obsm[embedding_key]`` (float32, (n, d)).
  FULL PATH (fine-tune): uint8 crops (n, 3, S, S) cut by ``features.crops.iter_crops``.
- Targets: :func:`napari_scr2st.data.expression.log1p_normalized` of the panel genes, read
  ONLY for the rows asked for (the measured spots).
- Cell types: ``obs[cell_type_key]`` as integer codes over a fixed list of names (-1 unknown).
- Spot keys: ``"{section}|{obs_name}"``: identify a spot across AnnData objects (used to
  exclude a measured spot from its own retrieval neighbours).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.model import SECTION_KEY

__all__ = [
    "as_index",
    "embedding_inputs",
    "crop_inputs",
    "cell_type_codes",
    "spot_keys",
    "MissingEmbeddingError",
]


class MissingEmbeddingError(KeyError):
    """The frozen-embedding path needs ``obsm[embedding_key]``; the message says how to get it."""


def as_index(mask_or_index, n: int, *, unique: bool = False) -> np.ndarray:
    """Row positions (int64) from a boolean mask of length ``n`` or an index array.

    Index arrays keep their order; ``unique`` sorts them and drops repeats (training rows).
    """
    a = np.asarray(mask_or_index)
    if a.dtype == bool:
        if a.shape != (n,):
            raise ValueError(f"mask has shape {a.shape}, expected ({n},)")
        return np.flatnonzero(a)
    a = a.astype(np.int64).ravel()
    if unique:
        a = np.unique(a)
    if a.size and (a.min() < 0 or a.max() >= n):
        raise IndexError(f"row index out of range for {n} spots")
    return a


def embedding_inputs(adata, rows: np.ndarray | None = None, key: str = "X_vision") -> np.ndarray:
    """The frozen embedding of ``rows`` (all rows if None) as float32."""
    if key not in adata.obsm:
        raise MissingEmbeddingError(
            f"obsm[{key!r}] is missing: compute vision embeddings first "
            "(napari_scr2st.features.compute_vision_embeddings(adata, ...)) or train with fine_tune=True"
        )
    X = np.asarray(adata.obsm[key], dtype=np.float32)
    X = X if rows is None else X[rows]
    if not np.isfinite(X).all():
        raise ValueError(f"obsm[{key!r}] contains NaN or infinite values")
    return X


def crop_inputs(
    adata, rows: np.ndarray, crop_px: int | None, image_size: int, batch_size: int = 64
) -> np.ndarray:
    """uint8 crops (len(rows), 3, image_size, image_size) for the fine-tune path, in ``rows`` order."""
    from ..features.crops import iter_crops, section_groups

    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), 3, image_size, image_size), dtype=np.uint8)
    where = {int(r): i for i, r in enumerate(rows)}
    for lib, idx in section_groups(adata):
        wanted = idx[np.isin(idx, rows)]
        if wanted.size == 0:
            continue
        for b, crops in iter_crops(
            adata, crop_px, batch_size, image_size, library=lib, indices=wanted
        ):
            pos = [where[int(r)] for r in b]
            out[pos] = np.transpose(crops[..., :3], (0, 3, 1, 2))
    return out


def cell_type_codes(
    adata, rows: np.ndarray, key: str | None, names: Sequence[str] | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """Codes (len(rows),) into ``names`` (built sorted from the data when None); -1 = unknown.

    Returns ``(None, [])`` when ``key`` is None or absent from ``obs`` (the majority filter
    then keeps every neighbour).
    """
    if key is None or key not in adata.obs:
        return None, []
    vals = adata.obs[key].to_numpy()[rows]
    as_str = np.array(
        ["" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in vals]
    )
    if names is None:
        names = sorted({str(s) for s in as_str if s})
    lut = {n: i for i, n in enumerate(names)}
    codes = np.array([lut.get(s, -1) for s in as_str], dtype=np.int64)
    return codes, [str(n) for n in names]


def spot_keys(adata, rows: np.ndarray | None = None) -> np.ndarray:
    """``"{section}|{spot}"`` for ``rows`` (all if None).

    The ``"{section}:"`` prefix that :func:`~napari_scr2st.data.model.concat_sections` puts on
    spot ids is removed, so a spot has the same key in a joined collection and on its own.
    """
    names = np.asarray(adata.obs_names).astype(str)
    if SECTION_KEY in adata.obs:
        sec = adata.obs[SECTION_KEY].astype(str).to_numpy()
    else:
        sec = np.full(adata.n_obs, "")
    if rows is not None:
        names, sec = names[rows], sec[rows]
    keys = []
    for s, n in zip(sec, names, strict=True):
        if s and n.startswith(s + ":"):
            n = n[len(s) + 1 :]
        keys.append(f"{s}|{n}")
    return np.asarray(keys, dtype=object).astype(str)
