"""What a sampler may see (the :class:`Pool`) and what the user asks for (:class:`SelectionRequest`).

A :class:`Pool` holds, for every candidate spot, ONLY information available before
sequencing: spot id, section, pixel coordinates, lattice position, the vision embedding and the
exclusion flag. It is built from a section AnnData by copying exactly these fields; it never
holds counts, so a sampler handed a pool cannot read the expression of an unsequenced spot.
Measured expression reaches samplers only through :class:`~napari_scr2st.sampling.state.SelectionState`,
which holds the counts of REVEALED spots only (METHOD section 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..data.model import SECTION_KEY, SPATIAL_KEY, VISION_KEY

__all__ = ["Pool", "SelectionRequest", "resolve_budget", "split_budget", "round_schedule"]


@dataclass
class Pool:
    """Candidate spots without expression (see module docstring).

    ``spot_ids`` are unique within a section; ``(section, spot_id)`` is the global key.
    ``excluded`` spots are never picked and are not part of the pool for the spatial reward.
    """

    spot_ids: np.ndarray
    sections: np.ndarray
    coords: np.ndarray
    vision: np.ndarray | None = None
    array_rc: np.ndarray | None = None
    excluded: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.spot_ids = np.asarray(self.spot_ids).astype(str)
        self.sections = np.asarray(self.sections).astype(str)
        n = len(self.spot_ids)
        self.coords = np.asarray(self.coords, dtype=np.float64)[:, :2]
        if self.coords.shape != (n, 2) or len(self.sections) != n:
            raise ValueError(f"pool arrays disagree: {n} spot ids, {len(self.sections)} sections, coords {self.coords.shape}")
        if not np.isfinite(self.coords).all():
            raise ValueError("pool coordinates must be finite")
        if self.vision is not None:
            self.vision = np.asarray(self.vision, dtype=np.float32)
            if self.vision.ndim != 2 or len(self.vision) != n:
                raise ValueError(f"vision embedding must be (n_spots={n}, d), got {self.vision.shape}")
        self.excluded = np.zeros(n, dtype=bool) if self.excluded is None else np.asarray(self.excluded, dtype=bool).copy()
        keys = pd.MultiIndex.from_arrays([self.sections, self.spot_ids])
        if not keys.is_unique:
            dup = keys[keys.duplicated()][:5].tolist()
            raise ValueError(f"spot ids must be unique within each section; duplicates: {dup}")
        self._keys = keys

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_adata(
        cls,
        adata,
        *,
        vision_key: str | None = VISION_KEY,
        excluded: Sequence[str] | np.ndarray | None = None,
        require_vision: bool = False,
    ) -> Pool:
        """Copy ids, sections, ``obsm['spatial']``, lattice and ``obsm[vision_key]`` (NO counts)."""
        n = adata.n_obs
        sections = adata.obs[SECTION_KEY].astype(str).to_numpy() if SECTION_KEY in adata.obs else np.array(["section"] * n)
        spot_ids = np.asarray(adata.obs_names).astype(str)
        # concatenated collections prefix obs_names with "section:"; strip it for user-facing ids
        prefixes = [f"{s}:" for s in sections]
        if n and all(i.startswith(p) for i, p in zip(spot_ids, prefixes, strict=False)):
            spot_ids = np.array([i[len(p):] for i, p in zip(spot_ids, prefixes, strict=False)])
        if SPATIAL_KEY not in adata.obsm:
            raise ValueError("the section has no obsm['spatial'] (spot centres); cannot build a pool")
        vision = None
        if vision_key is not None and vision_key in adata.obsm:
            vision = np.asarray(adata.obsm[vision_key], dtype=np.float32)
        elif require_vision:
            raise ValueError(
                f"the section has no obsm['{vision_key}'] vision embedding; compute it first "
                "(napari_scr2st.features.compute_vision_embeddings)"
            )
        rc = None
        if "array_row" in adata.obs and "array_col" in adata.obs:
            rc = np.column_stack([adata.obs["array_row"].to_numpy(), adata.obs["array_col"].to_numpy()]).astype(np.int64)
        pool = cls(spot_ids=spot_ids, sections=sections, coords=np.asarray(adata.obsm[SPATIAL_KEY]), vision=vision, array_rc=rc)
        if excluded is not None:
            pool.exclude(excluded)
        pool.meta["vision_key"] = vision_key
        return pool

    # ------------------------------------------------------------------ basic properties
    @property
    def n(self) -> int:
        return len(self.spot_ids)

    @property
    def section_names(self) -> list[str]:
        return [str(s) for s in dict.fromkeys(self.sections)]  # plain str: messages print them

    @property
    def n_in_pool(self) -> int:
        """Spots that are not excluded."""
        return int((~self.excluded).sum())

    def lookup(self, ids: Sequence[Any], sections: Sequence[str] | None = None, *, what: str = "spot ids") -> np.ndarray:
        """Pool indices of spot ids (with optional sections); unknown ids are a clear error.

        Integers (or numpy integer arrays) are taken as pool indices. Without sections, a spot
        id must be unambiguous across the pool's sections.
        """
        arr = np.asarray(ids)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.dtype.kind in "iu":
            if arr.min() < 0 or arr.max() >= self.n:
                raise ValueError(f"{what}: pool indices must be in [0, {self.n})")
            return arr.astype(np.int64)
        arr = arr.astype(str)
        if sections is not None:
            idx = self._keys.get_indexer(pd.MultiIndex.from_arrays([np.asarray(sections).astype(str), arr]))
        else:
            ser = pd.Series(np.arange(self.n), index=self.spot_ids)
            if not ser.index.is_unique:
                amb = [s for s in dict.fromkeys(arr.tolist()) if (self.spot_ids == s).sum() > 1][:5]
                if amb:
                    raise ValueError(
                        f"{what}: ids {amb} exist in several sections ({', '.join(self.section_names)}); give the section"
                    )
                ser = ser[~ser.index.duplicated(keep=False)]
            idx = ser.reindex(arr).fillna(-1).to_numpy().astype(np.int64)
        if (idx < 0).any():
            bad = arr[idx < 0]
            raise ValueError(
                f"{what}: {int((idx < 0).sum())} id(s) not in the pool of {self.n} spots "
                f"(sections {', '.join(self.section_names)}): {bad[:8].tolist()}{' ...' if len(bad) > 8 else ''}"
            )
        return idx.astype(np.int64)

    def exclude(self, ids: Sequence[Any] | np.ndarray) -> None:
        """Mark spots as excluded (never picked); a boolean mask or ids/indices."""
        arr = np.asarray(ids)
        if arr.dtype == bool:
            if arr.shape != (self.n,):
                raise ValueError(f"exclusion mask must have {self.n} entries")
            self.excluded |= arr
        else:
            self.excluded[self.lookup(arr, what="excluded spots")] = True
        self._cache.clear()

    def available_mask(self, state) -> np.ndarray:
        """Not excluded and not yet selected (pending or measured)."""
        return ~self.excluded & ~state.selected

    # ------------------------------------------------------------------ derived features
    def vision_features(self, n_components: int = 32, *, whiten: bool = False) -> np.ndarray:
        """Standardised vision embedding reduced by PCA (cached); a clear error without vision.

        The PCA is fitted on the non-excluded spots' vision (images only, no expression).
        """
        key = f"vision_pca_{n_components}_{whiten}"
        if key in self._cache:
            return self._cache[key]
        if self.vision is None:
            raise ValueError("this sampler needs a vision embedding; the pool has none (obsm['X_vision'] missing)")
        X = self.vision.astype(np.float64)
        fit = X[~self.excluded] if (~self.excluded).sum() >= 2 else X
        mu = fit.mean(axis=0)
        sd = fit.std(axis=0)
        sd = np.where(sd > 1e-8, sd, 1.0)
        Xs = (X - mu) / sd
        k = int(min(n_components, Xs.shape[1], max(1, len(fit) - 1)))
        if k < Xs.shape[1]:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=k, whiten=whiten, random_state=0, svd_solver="full" if len(fit) <= 5000 else "randomized")
            pca.fit((fit - mu) / sd)
            out = pca.transform(Xs)
        else:
            out = Xs
        out = np.ascontiguousarray(out, dtype=np.float32)
        self._cache[key] = out
        return out

    def spatial_index(self):
        """Per-section geometry for the spatial reward (cached; excluded spots are out)."""
        if "spatial_index" not in self._cache:
            from .reward import SpatialIndex

            self._cache["spatial_index"] = SpatialIndex(self.coords, self.sections, ~self.excluded)
        return self._cache["spatial_index"]

    def training_adata(self, state, *, vision_key: str = VISION_KEY):
        """An AnnData for an ``ExpressionPredictor``: X holds counts of MEASURED spots only.

        Rows of unmeasured spots are all-zero (they were never available); ``train_mask`` for
        ``fit`` is ``state.measured``. ``obsm`` has ``spatial`` and the vision embedding.
        """
        import anndata as ad
        import scipy.sparse as sp

        view = state.measured_view()
        genes = view.genes or []
        X = sp.csr_matrix((self.n, len(genes)), dtype=np.float32)
        if len(view.index):
            rows = sp.csr_matrix((np.ones(len(view.index), dtype=np.float32), (view.index, np.arange(len(view.index)))),
                                 shape=(self.n, len(view.index)))
            X = (rows @ view.counts.astype(np.float32)).tocsr()
        obs = pd.DataFrame({SECTION_KEY: pd.Categorical(self.sections)}, index=pd.Index(
            [f"{s}:{i}" for s, i in zip(self.sections, self.spot_ids, strict=False)]))
        if self.array_rc is not None:
            obs["array_row"] = self.array_rc[:, 0]
            obs["array_col"] = self.array_rc[:, 1]
        a = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str)))
        a.obsm[SPATIAL_KEY] = self.coords.copy()
        if self.vision is not None:
            a.obsm[vision_key] = self.vision
        return a


# ---------------------------------------------------------------------------------- request


@dataclass
class SelectionRequest:
    """What to select: a budget (count, fraction or ``"15%"``), rounds, seed, locks, exclusions.

    ``locked`` spots (manual picks) count toward the budget and are selected in round 0;
    ``excluded`` spots are never picked. ``per_section``: the budget applies to each section
    (a fraction of each section; a count split in proportion to section sizes) instead of the
    pooled set.
    """

    budget: int | float | str
    rounds: int = 1
    seed: int = 0
    locked: Sequence[Any] = ()
    excluded: Sequence[Any] = ()
    per_section: bool = False

    def __post_init__(self) -> None:
        if int(self.rounds) < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        self.rounds = int(self.rounds)


def resolve_budget(budget: int | float | str, n_available: int, *, what: str = "pool") -> int:
    """A count from ``budget`` (int count, float fraction in (0, 1], or ``"15%"``).

    Fractions are rounded to the nearest count (at least 1). A budget larger than
    ``n_available`` is a ValueError with both numbers.
    """
    if isinstance(budget, str):
        s = budget.strip()
        pct = None
        try:
            if s.endswith("%"):
                pct = float(s[:-1])
                if not np.isfinite(pct) or pct <= 0:
                    raise ValueError(s)
            else:
                budget = int(s) if s.isdigit() else float(s)
        except ValueError as e:
            raise ValueError(f"budget {budget!r}: expected a count like '30', a fraction like '0.15' or a percentage like '15%'") from e
        if pct is not None:
            n = max(1, int(round(pct / 100.0 * n_available)))
            if n > n_available:
                _too_big(budget, n, n_available, what)
            return n
    if isinstance(budget, bool):
        raise ValueError("budget must be a number")
    if isinstance(budget, (int, np.integer)):
        n = int(budget)
        if n < 0:
            raise ValueError(f"budget must be >= 0, got {n}")
    else:
        frac = float(budget)
        if not np.isfinite(frac) or frac <= 0:
            raise ValueError(f"budget fraction must be in (0, 1], got {budget}")
        if frac > 1:
            if float(frac).is_integer():
                n = int(frac)
            else:
                raise ValueError(f"budget fraction must be in (0, 1], got {budget}")
        else:
            n = max(1, int(round(frac * n_available)))
    if n > n_available:
        return _too_big(budget, n, n_available, what)
    return n


def _too_big(budget, n: int, n_available: int, what: str) -> int:
    raise ValueError(f"budget {budget!r} = {n} spots is larger than the {what} of {n_available} selectable (non-excluded) spots")


def split_budget(total: int, sizes: Sequence[int]) -> np.ndarray:
    """Split ``total`` in proportion to ``sizes`` (largest remainder; never above a size)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if total > sizes.sum():
        raise ValueError(f"cannot split {total} spots over groups of {sizes.sum()} spots")
    if sizes.sum() == 0:
        return np.zeros_like(sizes)
    raw = total * sizes / sizes.sum()
    out = np.floor(raw).astype(np.int64)
    rem = total - out.sum()
    order = np.argsort(-(raw - out), kind="stable")
    for i in order:
        if rem <= 0:
            break
        if out[i] < sizes[i]:
            out[i] += 1
            rem -= 1
    i = 0
    while rem > 0:  # pragma: no cover - only when rounding met caps
        j = order[i % len(order)]
        if out[j] < sizes[j]:
            out[j] += 1
            rem -= 1
        i += 1
    return out


def round_schedule(n_new: int, rounds: int) -> list[int]:
    """Split ``n_new`` picks over ``rounds`` as evenly as possible (earlier rounds get the rest)."""
    base, rem = divmod(int(n_new), int(rounds))
    return [base + (1 if r < rem else 0) for r in range(rounds)]
