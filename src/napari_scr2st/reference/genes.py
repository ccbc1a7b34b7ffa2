"""Gene identifiers: match a reference's genes to the spots' genes across naming schemes.

References and sections name genes by symbol (``EPCAM``) or Ensembl id (``ENSG00000119888``,
possibly versioned: ``ENSG00000119888.11``), in ``var_names`` or in a ``var`` column
(CELLxGENE: Ensembl ids in ``var_names``, symbols in ``var["feature_name"]``; Space Ranger:
symbols in ``var_names``, ids in ``var["gene_ids"]``). :func:`match_genes` tries every pairing
of an identifier list of the reference with one of the spots (Ensembl version suffixes
removed) and returns the reference gene
behind each matched spot gene, named as the SPOTS name it, with how many genes each route
matched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "ENSEMBL_VERSIONED",
    "IDENTIFIER_COLUMNS",
    "GeneMatch",
    "strip_ensembl_version",
    "match_genes",
]

ENSEMBL_VERSIONED = re.compile(r"^(ENS[A-Z]*G\d+)\.\d+$")
#: ``var`` columns that may hold gene identifiers (symbols or Ensembl ids), in order of trust.
IDENTIFIER_COLUMNS = (
    "feature_name",
    "gene_symbols",
    "gene_symbol",
    "gene_name",
    "gene_names",
    "symbol",
    "symbols",
    "gene_ids",
    "gene_id",
    "ensembl_id",
    "ensembl_ids",
    "feature_id",
)


def strip_ensembl_version(ids: Sequence[str]) -> np.ndarray:
    """``ENSG00000141510.17`` -> ``ENSG00000141510``; other identifiers are returned unchanged."""
    s = pd.Series([str(i) for i in ids], dtype=object)
    return s.str.replace(ENSEMBL_VERSIONED, r"\1", regex=True).to_numpy(dtype=object)


@dataclass(frozen=True)
class GeneMatch:
    """Reference genes matched to spot genes.

    ``reference_index[i]`` is the position in the reference's ``var`` of the gene the spots
    call ``genes[i]`` (one-to-one: each reference gene and each spot gene appear at most once,
    in the spots' order). ``routes`` counts the matches per route, e.g.
    ``{"var_names = var_names": 11000, "var['feature_name'] = var_names": 20}``.
    """

    reference_index: np.ndarray
    genes: list[str]
    routes: dict[str, int] = field(default_factory=dict)
    n_reference_genes: int = 0
    n_spot_genes: int = 0

    @property
    def n_matched(self) -> int:
        return len(self.genes)



def _identifier_lists(names: Sequence[str], var: pd.DataFrame | None) -> list[tuple[str, np.ndarray]]:
    """``(label, identifiers)`` for var_names and each identifier column of ``var`` (None: no value)."""
    out: list[tuple[str, np.ndarray]] = [("var_names", np.asarray([str(n) for n in names], dtype=object))]
    if var is not None:
        for col in IDENTIFIER_COLUMNS:
            if col not in var.columns:
                continue
            dtype = var[col].dtype
            if not (isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)):
                continue
            vals = np.asarray(
                [v if isinstance(v, str) and v.strip() else None for v in var[col].astype(object)], dtype=object
            )
            if any(v is not None for v in vals):
                out.append((f"var['{col}']", vals))
    return out


def _normalise(ids: np.ndarray) -> np.ndarray:
    keys = np.empty(len(ids), dtype=object)
    present = np.asarray([i is not None for i in ids], dtype=bool)
    keys[present] = strip_ensembl_version(ids[present])
    return keys


def match_genes(
    reference_names: Sequence[str],
    spot_names: Sequence[str],
    *,
    reference_var: pd.DataFrame | None = None,
    spot_var: pd.DataFrame | None = None,
) -> GeneMatch:
    """Match reference genes to spot genes through names and identifier columns.

    Every identifier list of the reference (``var_names`` and the :data:`IDENTIFIER_COLUMNS`
    present in ``reference_var``) is paired with every list of the spots (a list may mix
    symbols and Ensembl ids); ``var_names = var_names`` comes first, pairs with one
    ``var_names`` next. Ensembl ids are compared without their version suffix. Genes still
    unmatched after one pairing are tried with the next; a reference gene is used at most once
    and an identifier shared by several reference genes is matched to the first of them.
    """
    ref_lists = _identifier_lists(reference_names, reference_var)
    spot_lists = _identifier_lists(spot_names, spot_var)
    spot_out = np.asarray([str(n) for n in spot_names], dtype=object)
    n_ref, n_spot = len(ref_lists[0][1]), len(spot_out)

    pairs = [(r, s) for r in ref_lists for s in spot_lists]
    pairs.sort(key=lambda p: (p[0][0] != "var_names") + (p[1][0] != "var_names"))

    ref_of_spot = np.full(n_spot, -1, dtype=np.int64)
    ref_used = np.zeros(n_ref, dtype=bool)
    routes: dict[str, int] = {}
    first_spot = ~pd.Index(spot_out).duplicated()
    for (r_label, r_ids), (s_label, s_ids) in pairs:
        r_keys, s_keys = _normalise(r_ids), _normalise(s_ids)
        lookup = pd.Series(np.arange(n_ref))[~ref_used & np.asarray([k is not None for k in r_keys])]
        lookup.index = pd.Index(r_keys[lookup.to_numpy()])
        lookup = lookup[~lookup.index.duplicated()]
        todo = np.flatnonzero((ref_of_spot < 0) & first_spot & np.asarray([k is not None for k in s_keys]))
        if not len(todo) or not len(lookup):
            continue
        hit = lookup.reindex(pd.Index(s_keys[todo])).to_numpy()
        ok = ~np.isnan(hit)
        todo, hit = todo[ok], hit[ok].astype(np.int64)
        _, keep = np.unique(hit, return_index=True)  # one spot gene per reference gene
        keep.sort()
        todo, hit = todo[keep], hit[keep]
        if not len(todo):
            continue
        ref_of_spot[todo] = hit
        ref_used[hit] = True
        versioned = r_ids[hit] != s_ids[todo]
        label = f"{r_label} = {s_label}"
        if versioned.any():
            routes[f"{label} (Ensembl version removed)"] = int(versioned.sum())
        if (~versioned).any():
            routes[label] = int((~versioned).sum())
    matched = np.flatnonzero(ref_of_spot >= 0)
    return GeneMatch(
        reference_index=ref_of_spot[matched],
        genes=[str(g) for g in spot_out[matched]],
        routes=routes,
        n_reference_genes=n_ref,
        n_spot_genes=n_spot,
    )
