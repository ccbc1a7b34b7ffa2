"""Why did the model predict this? Retrieval details of one spot, with k and m editable live.

:func:`inspect_spot` returns the ``k`` measured spots retrieved for a query spot (most similar
first), which of them the majority cell-type filter keeps, the soft label (mean of the kept
neighbours), the regression output, the blended output and, when the spot was itself measured,
its measured value (from the memory bank: no counts are read). ``k``, ``m`` and ``alpha`` can
be changed at call time without retraining: the GUI calls this as the user edits them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .inputs import spot_keys

__all__ = ["Neighbour", "SpotInspection", "inspect_spot"]


@dataclass
class Neighbour:
    """One retrieved measured spot."""

    bank_index: int  # row in the predictor's memory bank
    spot_id: str  # obs_name
    section: str
    similarity: float  # cosine similarity of the query's image projection and its gene projection
    cell_type: str | None
    kept: bool  # kept by the majority filter
    obs_index: int = -1  # position in the inspected AnnData when the spot is there, else -1


@dataclass
class SpotInspection:
    """Everything :func:`inspect_spot` reports. Expression values are for ``genes``."""

    index: int
    spot_id: str
    genes: list[str]
    k: int
    m: int
    alpha: float
    mode: str
    neighbours: list[Neighbour] = field(default_factory=list)
    kept_types: list[str] = field(default_factory=list)
    confidence: float = float("nan")
    soft_label: np.ndarray | None = None
    regression: np.ndarray | None = None
    blended: np.ndarray | None = None
    measured: np.ndarray | None = None

    @property
    def was_measured(self) -> bool:
        return self.measured is not None


def _resolve_index(adata, spot) -> int:
    if isinstance(spot, (int, np.integer)):
        i = int(spot)
        if not -adata.n_obs <= i < adata.n_obs:
            raise IndexError(f"spot index {i} out of range for {adata.n_obs} spots")
        return i % adata.n_obs
    pos = adata.obs_names.get_indexer([str(spot)])[0]
    if pos < 0:
        raise KeyError(f"spot {spot!r} not found")
    return int(pos)


def inspect_spot(
    predictor,
    adata,
    spot_id_or_index,
    gene: str | list[str] | None = None,
    k: int | None = None,
    m: int | None = None,
    alpha: float | None = None,
) -> SpotInspection:
    """Retrieval details of one spot; ``gene`` restricts the expression arrays (default: panel)."""
    predictor._check()
    i = _resolve_index(adata, spot_id_or_index)
    cfg = predictor.config
    k = cfg.k if k is None else int(k)
    m = cfg.m if m is None else int(m)
    alpha = cfg.alpha if alpha is None else float(alpha)
    all_genes = list(predictor.genes)
    if gene is None:
        gsel = np.arange(len(all_genes))
    else:
        names = [gene] if isinstance(gene, str) else list(gene)
        lut = {g: j for j, g in enumerate(all_genes)}
        missing = [g for g in names if g not in lut]
        if missing:
            raise KeyError(f"gene(s) not in the model's panel: {missing}")
        gsel = np.array([lut[g] for g in names])
    genes = [all_genes[j] for j in gsel]

    # the retrieval is shown even where it does not enter the prediction (alpha = 0)
    out = predictor.infer(
        adata, np.array([i]), k=k, m=m, alpha=alpha, return_neighbours=True, retrieve_always=True
    )

    excl = predictor.exclusion(adata, np.array([i]))[0]
    measured = predictor.bank.expr[excl].numpy()[gsel] if excl >= 0 else None
    res = SpotInspection(
        index=i,
        spot_id=str(adata.obs_names[i]),
        genes=genes,
        k=k,
        m=m,
        alpha=alpha,
        mode=cfg.mode,
        regression=None if out.regression is None else out.regression[0, gsel],
        blended=out.final[0, gsel],
        measured=measured,
    )
    if out.index is not None:
        keys = predictor.bank.keys
        types = predictor.bank.types
        obs_lut = {str(key): j for j, key in enumerate(spot_keys(adata))}
        for b, s, kept in zip(out.index[0], out.similarity[0], out.kept[0], strict=True):
            sec, _, name = str(keys[b]).partition("|")
            t = None
            if types is not None:
                code = int(types[b])
                t = (
                    predictor.type_names[code]
                    if 0 <= code < len(predictor.type_names)
                    else "unknown"
                )
            res.neighbours.append(
                Neighbour(int(b), name, sec, float(s), t, bool(kept), obs_lut.get(str(keys[b]), -1))
            )
        seen: list[str] = []
        for nb in res.neighbours:
            if nb.kept and nb.cell_type is not None and nb.cell_type not in seen:
                seen.append(nb.cell_type)
        res.kept_types = seen
        res.soft_label = out.soft[0, gsel]
        res.confidence = float(out.confidence[0])
    return res
