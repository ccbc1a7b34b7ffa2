"""Group-aware train/test splits: no patient (or other group) is ever on both sides.

Serial sections of one patient share nearly everything (tissue, genotype, staining batch), so a
split by spot or by section leaks; METHOD.md section 6 asks for patient-level splits. Every
function here returns boolean masks over the spots and checks the groups are disjoint with
:func:`assert_disjoint_groups`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "group_labels",
    "assert_disjoint_groups",
    "train_test_by_group",
    "leave_one_patient_out",
    "random_budget_mask",
]


def group_labels(adata_or_groups, key: str = "patient") -> np.ndarray:
    """Group label per spot as a string array, from ``adata.obs[key]`` or an array-like."""
    if hasattr(adata_or_groups, "obs"):
        obs = adata_or_groups.obs
        if key not in obs:
            raise KeyError(f"obs[{key!r}] is missing: cannot split by {key}")
        return obs[key].astype(str).to_numpy()
    return np.asarray(adata_or_groups).astype(str)


def assert_disjoint_groups(groups, train_mask, test_mask) -> None:
    """Raise ``ValueError`` if any group has spots on both sides (or masks overlap)."""
    g = np.asarray(groups).astype(str)
    tr = np.asarray(train_mask, dtype=bool)
    te = np.asarray(test_mask, dtype=bool)
    if tr.shape != g.shape or te.shape != g.shape:
        raise ValueError("masks and groups must have the same length")
    if (tr & te).any():
        raise ValueError(f"{int((tr & te).sum())} spots are in both train and test")
    both = sorted(set(g[tr]) & set(g[te]))
    if both:
        raise ValueError(f"group(s) on both sides of the split (leakage): {both}")


def train_test_by_group(
    adata_or_groups,
    test_groups: Iterable[str],
    *,
    key: str = "patient",
    train_groups: Iterable[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks ``(train, test)``: test = spots of ``test_groups``; train = ``train_groups`` or the rest.

    Unknown group names are an error (a typo must not silently give an empty test set).
    """
    g = group_labels(adata_or_groups, key)
    present = set(g)
    test = [str(t) for t in test_groups]
    unknown = [t for t in test if t not in present]
    if train_groups is not None:
        train = [str(t) for t in train_groups]
        unknown += [t for t in train if t not in present]
    if unknown:
        raise KeyError(f"unknown group(s) {', '.join(unknown)}; present: {', '.join(sorted(map(str, present)))}")
    te = np.isin(g, test)
    tr = np.isin(g, train) if train_groups is not None else ~te
    assert_disjoint_groups(g, tr, te)
    if not te.any() or not tr.any():
        raise ValueError("split leaves an empty side")
    return tr, te


def leave_one_patient_out(
    adata_or_groups, *, key: str = "patient", groups: Sequence[str] | None = None
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(held_out_group, train_mask, test_mask)`` for each group (sorted order)."""
    g = group_labels(adata_or_groups, key)
    names = sorted(set(g)) if groups is None else [str(x) for x in groups]
    if len(set(g)) < 2:
        raise ValueError(f"leave-one-{key}-out needs at least 2 groups, found {', '.join(sorted(map(str, set(g))))}")
    for name in names:
        tr, te = train_test_by_group(g, [name])
        yield name, tr, te


def random_budget_mask(pool_mask, budget: float | int, seed: int = 0) -> np.ndarray:
    """Random selection of a budget of spots from ``pool_mask`` (the random-sampling baseline).

    ``budget`` in (0, 1] is a fraction of the pool (rounded, at least 1 spot); an int > 1 is a
    count. Returns a boolean mask of the same length as ``pool_mask``.
    """
    pool = np.flatnonzero(np.asarray(pool_mask, dtype=bool))
    if isinstance(budget, float) and 0 < budget <= 1:
        n = max(1, int(round(budget * len(pool))))
    else:
        n = int(budget)
    if not 0 < n <= len(pool):
        raise ValueError(f"budget {budget} gives {n} spots for a pool of {len(pool)}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(pool, size=n, replace=False)
    out = np.zeros(len(np.asarray(pool_mask)), dtype=bool)
    out[pick] = True
    return out
