"""The single-cell reference: reading, gene overlap with the spots, the shared space.

METHOD section 3. Reference cells and sequenced spots are embedded in ONE space:

- default: a PCA fitted on the reference (log-normalised, highly variable genes shared with the
  spots, each gene centred and scaled with the reference's mean and standard deviation and
  clipped at ``max_value`` as ``scanpy.pp.scale`` does); spots are projected with the SAME
  genes, the same normalisation (:func:`napari_scr2st.data.expression.log1p_normalized`: counts
  to 1e4 per profile over all its genes, then log1p), the same per-gene mean/sd and the same
  components (what ``scanpy.tl.ingest`` does);
- or any precomputed embedding the user names (``embedding_key``), e.g. a foundation-model
  embedding in ``reference.obsm[key]``; the spots must then bring the same key (computed from
  their MEASURED expression, revealed only after sequencing).

Spots are mixtures of several cells. We do not deconvolve: a spot's profile is embedded as a
"pseudo-cell". Its projection lies between the clusters of the cell types it mixes, the nearest
k-means centroid credits the reference state closest to that mixture, and the kNN votes of
:meth:`ReferenceSpace.transfer_labels` serve as approximate type proportions (an honest but
crude deconvolution; the hard label is the majority vote).

The manifold is summarised by k-means with ``k = clip(round(n_cells / 15), 10, 1000)`` (never
more than the number of cells): about 15 cells per cluster, the paper's 1000 clusters for atlases
of 15,000 cells and more, and at least 10 so that small references still have a resolution
finer than their cell types.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..atomic import save_npz_atomic
from ..data.expression import TARGET_SUM, log1p_normalized

__all__ = [
    "ReferenceDataError",
    "ReferenceWarning",
    "reference_counts",
    "list_celltype_columns",
    "GeneOverlap",
    "PreparedReference",
    "LabelTransfer",
    "ReferenceSpace",
    "read_reference",
    "prepare_reference",
    "default_n_clusters",
]

DEFAULT_CELLTYPE_KEY = "celltype_major"
SPACE_FORMAT_VERSION = 1
#: Below this many cells (or this many per type) the reference is too thin to trust; a warning says so.
MIN_CELLS = 50
MIN_CELLS_PER_TYPE = 5
#: Non-integer values whose maximum is below this look log-transformed.
LOG_MAX = 20.0
MAX_CELLTYPE_LEVELS = 500


class ReferenceDataError(ValueError):
    """The reference cannot be used as given; the message names the file/dataset and numbers."""


class ReferenceWarning(UserWarning):
    """The reference is usable but thin or was read with a choice the user should know about."""


# --------------------------------------------------------------------------------------------
# counts
# --------------------------------------------------------------------------------------------


def _first_bad(X, bad_data: np.ndarray, genes: Sequence[str]) -> tuple[str, int, int]:
    """(first gene in var order with a bad entry, number of bad entries, number of such genes)."""
    if sp.issparse(X):
        cols = X.indices[bad_data]
    else:
        cols = np.nonzero(bad_data.reshape(X.shape))[1]
    ucols = np.unique(cols)
    return str(genes[int(ucols[0])]), int(bad_data.sum()), len(ucols)


def _counts_problem(X, genes: Sequence[str]) -> str | None:
    """Why ``X`` is not a matrix of raw counts (None when it is: finite, >= 0, integer)."""
    if sp.issparse(X):
        X = X.tocsr()
        data = X.data
    else:
        X = np.asarray(X)
        data = X.ravel()
    if data.size == 0:
        return None
    if data.dtype.kind not in "biuf":
        return f"is not numeric (dtype {data.dtype})"
    if data.dtype.kind == "f":
        bad = ~np.isfinite(data)
        if bad.any():
            gene, n, ng = _first_bad(X, bad, genes)
            return f"has {n} NaN or infinite value(s) in {ng} gene(s), the first gene being '{gene}'"
    neg = data < 0
    if neg.any():
        gene, n, ng = _first_bad(X, neg, genes)
        return f"has {n} negative value(s) in {ng} gene(s), the first gene being '{gene}' (counts are >= 0)"
    if data.dtype.kind == "f":
        sample = data[:: max(1, data.size // 200_000)]
        if not np.all(np.mod(sample, 1) == 0):
            top = float(data.max())
            if top < LOG_MAX:
                return f"looks log-normalised (non-integer values, max {top:.3g})"
            return f"is not integer (normalised or corrected values, max {top:.3g})"
    return None


def reference_counts(ref, *, where: str = "reference") -> tuple[sp.csr_matrix, pd.DataFrame, str]:
    """The raw counts of a reference AnnData: ``(counts, var, source)``.

    Looks in ``X``, then ``layers["counts"]``, then ``raw.X`` (whose ``var`` may have more
    genes than ``var``: the counts then cover all of ``raw``'s genes and ``var``'s columns
    are joined onto ``raw.var`` by gene). The first that holds finite, non-negative integers
    is used. When none does, :class:`ReferenceDataError` names ``where`` and says what is wrong
    with each place (log-normalised values, NaN with the first gene affected, negatives).
    """
    candidates = [("X", ref.X, ref.var)]
    if "counts" in ref.layers:
        candidates.append(("layers['counts']", ref.layers["counts"], ref.var))
    if ref.raw is not None:
        raw_var = ref.raw.var.copy()
        for col in ref.var.columns:
            if col not in raw_var.columns:
                raw_var[col] = ref.var[col].reindex(raw_var.index).to_numpy()
        candidates.append(("raw.X", ref.raw.X, raw_var))
    problems = []
    for source, X, var in candidates:
        if X is None:
            continue
        problem = _counts_problem(X, list(map(str, var.index)))
        if problem is None:
            counts = X.tocsr() if sp.issparse(X) else sp.csr_matrix(np.asarray(X))
            return counts.astype(np.float32), var, source
        problems.append(f"{source} {problem}")
    raise ReferenceDataError(
        f"single-cell reference {where}: no raw counts found: {'; '.join(problems) or 'X is empty'}. "
        "Raw integer counts are expected in X, layers['counts'] or raw.X"
    )


# --------------------------------------------------------------------------------------------
# cell types
# --------------------------------------------------------------------------------------------

_CELLTYPE_WORDS = ("celltype", "annotation")
_SECONDARY_WORDS = ("label", "cluster", "type", "class", "leiden", "louvain", "lineage")
_ID_WORDS = ("ontology", "termid", "_id", "id_")


def list_celltype_columns(ref, *, max_levels: int = MAX_CELLTYPE_LEVELS) -> list[str]:
    """``obs`` columns that can hold cell types, the most likely first.

    Candidates are categorical or text columns with 2..``max_levels`` distinct values (not one
    distinct value per cell). Order: names with "cell_type"/"celltype"/"cell type"/"annotation"
    (ontology-id columns last among them), then names with words like "label", "cluster",
    "type", then the rest; within a group fewer levels first (the broadest annotation).
    ``ref`` is an AnnData or its ``obs`` DataFrame.
    """
    obs = ref.obs if hasattr(ref, "obs") else ref
    scored = []
    for col in obs.columns:
        s = obs[col]
        if not (isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype)):
            continue
        n = int(s.nunique(dropna=True))
        if n < 2 or n > max_levels or (n == len(obs) and n > 2):
            continue
        name = str(col).lower()
        flat = name.replace(" ", "").replace("_", "").replace(".", "").replace("-", "")
        is_id = any(w in name for w in _ID_WORDS) or "termid" in flat
        if any(w in flat for w in _CELLTYPE_WORDS):
            tier = 1 if is_id else 0
        elif any(w in name for w in _SECONDARY_WORDS) and not is_id:
            tier = 2
        else:
            tier = 3
        scored.append((tier, n, str(col)))
    return [c for _, _, c in sorted(scored)]


def _missing_key_error(where: str, key: str, obs: pd.DataFrame) -> ReferenceDataError:
    cands = ", ".join(list_celltype_columns(obs)) or "(none)"
    cols = ", ".join(map(str, obs.columns)) or "(none)"
    return ReferenceDataError(
        f"single-cell reference {where} has no obs column '{key}' with cell types; "
        f"candidate cell-type columns: {cands}; available obs columns: {cols}"
    )


def _resolve_celltype_key(ref, celltype_key: str | None, where: str, *, announce: bool) -> str:
    """The given key (checked), else the key :func:`read_reference` chose, else the best candidate.

    A chosen candidate is announced with a :class:`ReferenceWarning` when ``announce`` or when
    there were several candidates.
    """
    if celltype_key is None:
        celltype_key = ref.uns.get("scr2st_reference", {}).get("celltype_key")
    if celltype_key is not None:
        if celltype_key not in ref.obs.columns:
            raise _missing_key_error(where, celltype_key, ref.obs)
        return str(celltype_key)
    cands = list_celltype_columns(ref)
    if not cands:
        raise ReferenceDataError(
            f"single-cell reference {where}: no obs column looks like cell types (categorical or text with "
            f"2..{MAX_CELLTYPE_LEVELS} values); obs columns: {', '.join(map(str, ref.obs.columns)) or '(none)'}"
        )
    if not announce and len(cands) == 1:
        return cands[0]
    others = f" (other candidates: {', '.join(cands[1:])})" if len(cands) > 1 else ""
    warnings.warn(
        f"single-cell reference {where}: using obs['{cands[0]}'] as cell types{others}; "
        "pass celltype_key to choose another",
        ReferenceWarning,
        stacklevel=3,
    )
    return cands[0]


def _warn_thin(labels: pd.Series, where: str, key: str) -> None:
    """Warn when the reference has < 2 types, < MIN_CELLS cells or types with < MIN_CELLS_PER_TYPE cells."""
    sizes = labels.astype(str).value_counts()
    if len(sizes) < 2:
        warnings.warn(
            f"single-cell reference {where}: obs['{key}'] has only {len(sizes)} cell type "
            f"({', '.join(sizes.index)}); the reward cannot tell cell types apart",
            ReferenceWarning,
            stacklevel=3,
        )
    if int(sizes.sum()) < MIN_CELLS:
        warnings.warn(
            f"single-cell reference {where}: only {int(sizes.sum())} cells (fewer than {MIN_CELLS}); "
            "its cell states are poorly sampled",
            ReferenceWarning,
            stacklevel=3,
        )
    small = sizes[sizes < MIN_CELLS_PER_TYPE]
    if len(small) and len(sizes) >= 2:
        warnings.warn(
            f"single-cell reference {where}: {len(small)} cell type(s) of obs['{key}'] have fewer than "
            f"{MIN_CELLS_PER_TYPE} cells: " + ", ".join(f"{t} ({n})" for t, n in small.items()),
            ReferenceWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_reference(path: str | Path, *, celltype_key: str | None = None):
    """Read a single-cell reference ``.h5ad``: raw counts and a cell-type column in ``obs``.

    Returns an AnnData with the raw counts in ``X`` (found in ``X``, ``layers["counts"]`` or
    ``raw.X`` by :func:`reference_counts`; its ``var`` has the gene identifier columns),
    ``obs``, ``obsm`` and ``uns``; ``uns["scr2st_reference"]`` records ``source`` (the path),
    ``counts`` (where the counts were found) and ``celltype_key``. With ``celltype_key=None``
    the best of :func:`list_celltype_columns` is used and a :class:`ReferenceWarning` says
    which. Errors (:class:`ReferenceDataError`, or ``FileNotFoundError``) name the file: missing
    or unreadable files, a missing ``celltype_key`` (the message lists the candidates), no
    usable counts (log-normalised, NaN/inf with the first gene affected, negative values).
    Cells without a label are dropped with a warning; fewer than two cell types, fewer than
    :data:`MIN_CELLS` cells or types with fewer than :data:`MIN_CELLS_PER_TYPE` cells warn.
    """
    import anndata as ad

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"single-cell reference not found: {p}")
    if not p.is_file():
        raise ReferenceDataError(f"single-cell reference {p} is not a file (expected an .h5ad file)")
    try:
        adata = ad.read_h5ad(p)
    except Exception as e:  # h5py/anndata raise many types for broken files
        raise ReferenceDataError(f"cannot read single-cell reference {p} as .h5ad: {type(e).__name__}: {e}") from e
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ReferenceDataError(f"single-cell reference {p} is empty ({adata.n_obs} cells x {adata.n_vars} genes)")
    key = _resolve_celltype_key(adata, celltype_key, str(p), announce=True)
    counts, var, source = reference_counts(adata, where=str(p))
    out = ad.AnnData(X=counts, obs=adata.obs.copy(), var=var.copy(), uns=dict(adata.uns))
    for k in adata.obsm.keys():
        out.obsm[k] = adata.obsm[k]
    labels = out.obs[key]
    missing = labels.isna().to_numpy()
    if missing.all():
        raise ReferenceDataError(f"single-cell reference {p}: obs['{key}'] has no labels")
    if missing.any():
        warnings.warn(f"single-cell reference {p}: dropping {int(missing.sum())} cells without '{key}'", stacklevel=2)
        out = out[~missing].copy()
    _warn_thin(out.obs[key], str(p), key)
    out.uns["scr2st_reference"] = {"source": str(p), "counts": source, "celltype_key": key}
    out.var_names_make_unique()
    return out


# --------------------------------------------------------------------------------------------
# gene overlap and preparation
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneOverlap:
    """How many genes the reference and the spots share (and how many informative ones).

    ``routes`` counts the shared genes per matching route (see
    :func:`napari_scr2st.reference.genes.match_genes`).
    """

    reference_name: str
    spots_name: str
    n_reference_genes: int
    n_spot_genes: int
    n_shared: int
    n_reference_hvg: int
    n_reference_hvg_shared: int
    routes: dict[str, int] = field(default_factory=dict)

    @property
    def fraction_of_reference(self) -> float:
        return self.n_shared / max(self.n_reference_genes, 1)

    @property
    def fraction_of_spots(self) -> float:
        return self.n_shared / max(self.n_spot_genes, 1)

    @property
    def hvg_fraction(self) -> float:
        """Fraction of the reference's own highly variable genes that the spots measure."""
        return self.n_reference_hvg_shared / max(self.n_reference_hvg, 1)

    def __str__(self) -> str:
        routes = ", ".join(f"{n:,} by {r}" for r, n in self.routes.items() if n)
        return (
            f"reference '{self.reference_name}' ({self.n_reference_genes:,} genes) and spots "
            f"'{self.spots_name}' ({self.n_spot_genes:,} genes) share {self.n_shared:,} genes "
            f"({self.fraction_of_reference:.1%} of the reference, {self.fraction_of_spots:.1%} of the spots"
            f"{'; matched ' + routes if routes else ''}); "
            f"{self.n_reference_hvg_shared:,} of the reference's {self.n_reference_hvg:,} highly variable "
            f"genes ({self.hvg_fraction:.1%}) are measured in the spots"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PreparedReference:
    """A reference restricted to the genes shared with the spots, log-normalised, with HVGs.

    ``adata.var_names`` are the SPOTS' names of the shared genes (``var["reference_id"]`` the
    reference's); ``adata.X`` holds ``log1p(counts / total * 1e4)`` where totals are over ALL
    the reference's genes (the package's one expression scale); ``adata.layers["counts"]`` the
    raw counts; ``adata.var["highly_variable"]`` the HVGs among the shared genes (also in
    ``hvg``).
    """

    adata: Any
    hvg: list[str]
    overlap: GeneOverlap
    celltype_key: str = DEFAULT_CELLTYPE_KEY
    name: str = "reference"


def _hvg_names(log_adata, n_top: int) -> list[str]:
    """Highly variable genes (scanpy 'seurat' flavour on log data), in var order."""
    import scanpy as sc

    if n_top >= log_adata.n_vars:
        return list(map(str, log_adata.var_names))
    tmp = log_adata.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.highly_variable_genes(tmp, n_top_genes=n_top, flavor="seurat")
    return list(map(str, tmp.var_names[tmp.var["highly_variable"].to_numpy()]))


def _spot_genes(spots) -> tuple[list[str], pd.DataFrame | None]:
    """Gene names and ``var`` table (if any) of the spots: names, a ``var`` DataFrame or an AnnData."""
    if hasattr(spots, "var") and hasattr(spots, "var_names"):
        spots = spots.var
    if isinstance(spots, pd.DataFrame):
        return [str(g) for g in spots.index], spots
    return [str(g) for g in spots], None


def prepare_reference(
    ref,
    spots_var_names,
    n_top_genes: int = 2000,
    *,
    min_shared: int = 200,
    min_hvg_fraction: float = 0.05,
    celltype_key: str | None = None,
    reference_name: str | None = None,
    spots_name: str = "spots",
    min_overlap: int | None = None,
) -> PreparedReference:
    """Normalise the reference, restrict it to the genes shared with the spots, pick HVGs.

    ``spots_var_names`` are the spots' gene names, or their ``var`` DataFrame / the spots'
    AnnData (then identifier columns such as Visium's ``var["gene_ids"]`` are used too).
    Reference genes are matched to them by :func:`~napari_scr2st.reference.genes.match_genes`
    (symbols or Ensembl ids, versions ignored, ``var`` columns such as ``feature_name``) and
    renamed to the spots' names. Counts come from :func:`reference_counts`. ``celltype_key``
    None: the key :func:`read_reference` chose, else the best of
    :func:`list_celltype_columns` (with a :class:`ReferenceWarning`).

    ``scanpy.pp.normalize_total`` (1e4, totals over all reference genes) and ``log1p`` on the
    reference, ``highly_variable_genes`` (``n_top_genes``, 'seurat' flavour) once on all its genes
    (to report how many of its informative genes the spots measure) and once on the shared
    genes (the genes of the space). Raises :class:`ReferenceDataError` naming both datasets and
    the numbers when fewer than ``min_shared`` genes are shared or fewer than
    ``min_hvg_fraction`` of the reference's HVGs are measured in the spots (``min_overlap`` is
    an alias of ``min_shared``).
    """
    import anndata as ad
    import scanpy as sc

    from .genes import match_genes

    if min_overlap is not None:
        min_shared = int(min_overlap)

    info = ref.uns.get("scr2st_reference", {})
    name = reference_name or str(info.get("source", "reference"))
    name = Path(name).name if ("/" in name or "\\" in name) else name
    key = _resolve_celltype_key(ref, celltype_key, f"'{name}'", announce=False)
    if info.get("celltype_key") != key:  # read_reference has not checked this key
        _warn_thin(ref.obs[key].dropna(), f"'{name}'", key)
    counts, var, _ = reference_counts(ref, where=f"'{name}'")
    spot_names, spot_var = _spot_genes(spots_var_names)
    spot_index = pd.Index(spot_names)
    n_spot_genes = int(spot_index.nunique())
    ref_genes = pd.Index(map(str, var.index))
    match = match_genes(ref_genes, spot_names, reference_var=var, spot_var=spot_var)

    full = ad.AnnData(X=counts, obs=ref.obs[[key]].copy(), var=pd.DataFrame(index=ref_genes))
    full.var_names_make_unique()
    full.layers["counts"] = full.X.copy()
    for k in ref.obsm.keys():  # user embeddings (e.g. a foundation model's) travel along
        full.obsm[k] = np.asarray(ref.obsm[k])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sc.pp.normalize_total(full, target_sum=TARGET_SUM)
        sc.pp.log1p(full)
    ref_hvg = _hvg_names(full, min(n_top_genes, full.n_vars))
    shared_ref = full.var_names[match.reference_index]
    n_hvg_shared = int(pd.Index(ref_hvg).isin(shared_ref).sum())
    overlap = GeneOverlap(
        reference_name=name,
        spots_name=spots_name,
        n_reference_genes=int(len(ref_genes)),
        n_spot_genes=n_spot_genes,
        n_shared=match.n_matched,
        n_reference_hvg=len(ref_hvg),
        n_reference_hvg_shared=n_hvg_shared,
        routes=dict(match.routes),
    )
    if match.n_matched < min_shared or overlap.hvg_fraction < min_hvg_fraction:
        raise ReferenceDataError(
            f"gene overlap too small to use the reference: {overlap}. Need at least {min_shared} shared genes "
            f"and {min_hvg_fraction:.0%} of the reference's highly variable genes. Check that both use the "
            "same species and that gene symbols or Ensembl ids are in var_names or in a var column "
            "(feature_name, gene_ids, gene_symbols, gene_name, symbol)."
        )
    sub = full[:, match.reference_index].copy()
    sub.var["reference_id"] = np.asarray(shared_ref, dtype=object)
    sub.var_names = pd.Index(match.genes)
    sub.uns.pop("log1p", None)
    hvg = _hvg_names(sub, min(n_top_genes, sub.n_vars))
    sub.var["highly_variable"] = sub.var_names.isin(hvg)
    return PreparedReference(adata=sub, hvg=hvg, overlap=overlap, celltype_key=key, name=name)


# --------------------------------------------------------------------------------------------
# the space
# --------------------------------------------------------------------------------------------


def default_n_clusters(n_cells: int) -> int:
    """``k = clip(round(n_cells / 15), 10, 1000)``, never more than ``n_cells``."""
    return int(min(n_cells, int(np.clip(round(n_cells / 15), 10, 1000))))


@dataclass
class LabelTransfer:
    """kNN label transfer: hard labels, vote proportions (n, n_types), and the type names."""

    labels: np.ndarray
    proportions: np.ndarray
    celltypes: list[str]

    @property
    def codes(self) -> np.ndarray:
        """Integer codes of ``labels`` in ``celltypes``."""
        return self.proportions.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.proportions.max(axis=1)


@dataclass
class ReferenceSpace:
    """The single-cell space of METHOD section 3 (fit with :meth:`fit`, see module docstring).

    Attributes: ``genes`` (the space's genes; empty for an ``obsm``-key space), ``mean``/``std``
    (per-gene scaling), ``components`` (n_comps x n_genes PCA loadings), ``ref_embedding``
    (cells x dims), ``ref_codes`` (cell-type code per cell), ``celltypes``, ``centroids``
    (k x dims), ``cell_cluster`` (k-means cluster per cell).
    """

    genes: list[str]
    celltypes: list[str]
    ref_embedding: np.ndarray
    ref_codes: np.ndarray
    centroids: np.ndarray
    cell_cluster: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    components: np.ndarray | None = None
    pca_center: np.ndarray | None = None
    embedding_key: str | None = None
    max_value: float | None = 10.0
    n_neighbors: int = 15
    meta: dict[str, Any] = field(default_factory=dict)
    _ref_sqnorm: Any = field(default=None, repr=False, compare=False)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        prepared: PreparedReference,
        *,
        embedding_key: str | None = None,
        n_comps: int = 50,
        n_clusters: int | None = None,
        scale: bool = True,
        max_value: float | None = 10.0,
        n_neighbors: int = 15,
        seed: int = 0,
    ) -> ReferenceSpace:
        """Fit the space on a :class:`PreparedReference` (PCA or ``obsm[embedding_key]``) + k-means."""
        from sklearn.decomposition import PCA

        ref = prepared.adata
        labels = ref.obs[prepared.celltype_key].astype(str).to_numpy()
        celltypes = sorted(pd.unique(labels).tolist())
        codes = pd.Categorical(labels, categories=celltypes).codes.astype(np.int32)
        mean = std = comps = center = None
        genes: list[str] = []
        if embedding_key is not None:
            if embedding_key not in ref.obsm:
                raise ReferenceDataError(
                    f"reference '{prepared.name}' has no obsm['{embedding_key}']; available: {list(ref.obsm.keys())}"
                )
            Z = np.asarray(ref.obsm[embedding_key], dtype=np.float32)
        else:
            genes = list(prepared.hvg)
            X = ref[:, genes].X
            X = X.toarray() if sp.issparse(X) else np.asarray(X)
            X = X.astype(np.float32)
            mean = X.mean(axis=0)
            if scale:
                std = X.std(axis=0, ddof=1) if X.shape[0] > 1 else np.ones_like(mean)
                std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
            else:
                std = np.ones_like(mean)
            Xs = _scale(X, mean, std, max_value)
            k = int(min(n_comps, X.shape[0] - 1, X.shape[1] - 1))
            if k < 2:
                raise ReferenceDataError(f"reference '{prepared.name}' too small for a PCA ({X.shape[0]} cells x {X.shape[1]} genes)")
            pca = PCA(n_components=k, svd_solver="full" if max(X.shape) <= 3000 else "randomized", random_state=seed)
            pca.fit(Xs)
            comps = pca.components_.astype(np.float32)
            # PCA centres on the mean of the scaled data (not exactly 0 after clipping)
            center = pca.mean_.astype(np.float32)
            Z = ((Xs - center) @ comps.T).astype(np.float32)
            mean = mean.astype(np.float32)
        kc = n_clusters if n_clusters is not None else default_n_clusters(Z.shape[0])
        kc = int(min(max(kc, 1), Z.shape[0]))
        centroids, cell_cluster = _kmeans(Z, kc, seed)
        return cls(
            genes=genes,
            celltypes=celltypes,
            ref_embedding=Z,
            ref_codes=codes,
            centroids=centroids,
            cell_cluster=cell_cluster,
            mean=mean,
            std=std,
            components=comps,
            pca_center=center,
            embedding_key=embedding_key,
            max_value=max_value,
            n_neighbors=n_neighbors,
            meta={
                "reference": prepared.name,
                "celltype_key": prepared.celltype_key,
                "overlap": prepared.overlap.to_dict(),
                "n_cells": int(Z.shape[0]),
                "seed": int(seed),
                "scale": bool(scale),
                "cluster_rule": "k = clip(round(n_cells / 15), 10, 1000)" if n_clusters is None else f"k = {kc} (user)",
            },
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_dims(self) -> int:
        return int(self.ref_embedding.shape[1])

    @property
    def n_clusters(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def n_types(self) -> int:
        return len(self.celltypes)

    @property
    def is_gene_space(self) -> bool:
        return self.embedding_key is None

    # ------------------------------------------------------------------ projection
    def transform(self, X_log1p: np.ndarray) -> np.ndarray:
        """Project log1p-normalised expression of the space's ``genes`` (n, len(genes)) -> (n, dims)."""
        if not self.is_gene_space:
            raise ReferenceDataError(
                f"this space uses the precomputed embedding obsm['{self.embedding_key}']; spots must bring "
                "that key (use embed()) instead of expression"
            )
        X = np.asarray(X_log1p, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != len(self.genes):
            raise ValueError(f"expected (n, {len(self.genes)}) log1p expression of the space's genes, got {X.shape}")
        Xs = _scale(X, self.mean, self.std, self.max_value)
        if self.pca_center is not None:
            Xs = Xs - self.pca_center
        return (Xs @ self.components.T).astype(np.float32)

    def embed(self, adata, rows=None) -> np.ndarray:
        """Embed spots of ``adata`` (its COUNTS must be measured for these rows, or obsm key)."""
        if self.is_gene_space:
            return self.transform(log1p_normalized(adata, self.genes, rows=rows))
        if self.embedding_key not in adata.obsm:
            raise ReferenceDataError(f"spots lack obsm['{self.embedding_key}'] required by this reference space")
        Z = np.asarray(adata.obsm[self.embedding_key], dtype=np.float32)
        Z = Z if rows is None else Z[rows]
        if Z.shape[1] != self.n_dims:
            raise ReferenceDataError(f"spots' obsm['{self.embedding_key}'] has {Z.shape[1]} dims, the reference {self.n_dims}")
        return Z

    def embed_counts(self, counts, var_names: Sequence[str]) -> np.ndarray:
        """Embed raw counts (n, len(var_names)); totals over all given genes (one scale)."""
        import anndata as ad

        X = counts if sp.issparse(counts) else sp.csr_matrix(np.asarray(counts))
        a = ad.AnnData(X=X.tocsr(), var=pd.DataFrame(index=pd.Index([str(g) for g in var_names])))
        return self.embed(a)

    # ------------------------------------------------------------------ clusters, labels
    def nearest_cluster(self, Z: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
        """Index of the nearest k-means centroid for each row of ``Z``."""
        Z = np.asarray(Z, dtype=np.float32)
        out = np.empty(len(Z), dtype=np.int64)
        c2 = (self.centroids**2).sum(axis=1)
        for s in range(0, len(Z), chunk):
            z = Z[s : s + chunk]
            d = c2[None, :] - 2.0 * z @ self.centroids.T
            out[s : s + chunk] = d.argmin(axis=1)
        return out

    def kneighbors(self, Z: np.ndarray, k: int, *, chunk: int = 2048) -> np.ndarray:
        """Indices of the ``k`` nearest reference cells of each row of ``Z`` (exact, brute force)."""
        Z = np.asarray(Z, dtype=np.float32)
        R = self.ref_embedding
        if self._ref_sqnorm is None:
            self._ref_sqnorm = (R**2).sum(axis=1)
        r2 = self._ref_sqnorm
        k = int(min(k, len(R)))
        out = np.empty((len(Z), k), dtype=np.int64)
        for s in range(0, len(Z), chunk):
            d = r2[None, :] - 2.0 * Z[s : s + chunk] @ R.T
            if k < len(R):
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                part = np.tile(np.arange(len(R)), (len(d), 1))
            order = np.take_along_axis(d, part, axis=1).argsort(axis=1, kind="stable")
            out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
        return out

    def transfer_labels(self, Z: np.ndarray, *, k: int | None = None) -> LabelTransfer:
        """kNN label transfer: each spot's ``k`` nearest reference cells vote (uniform votes).

        Equivalent to ``scanpy.tl.ingest``'s kNN classifier on the same space (exact neighbours).
        """
        Z = np.asarray(Z, dtype=np.float32)
        T = self.n_types
        if len(Z) == 0:
            return LabelTransfer(np.array([], dtype=object), np.zeros((0, T), np.float32), list(self.celltypes))
        kk = int(min(k or self.n_neighbors, len(self.ref_embedding)))
        idx = self.kneighbors(Z, kk)
        votes = self.ref_codes[idx]  # (n, k)
        props = np.zeros((len(Z), T), dtype=np.float32)
        np.add.at(props, (np.repeat(np.arange(len(Z)), kk), votes.ravel()), 1.0)
        props /= kk
        labels = np.asarray(self.celltypes, dtype=object)[props.argmax(axis=1)]
        return LabelTransfer(labels=labels, proportions=props, celltypes=list(self.celltypes))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the space to one ``.npz`` (arrays + a JSON config), atomically."""
        path = Path(path)
        cfg = {
            "format_version": SPACE_FORMAT_VERSION,
            "genes": self.genes,
            "celltypes": self.celltypes,
            "embedding_key": self.embedding_key,
            "max_value": self.max_value,
            "n_neighbors": self.n_neighbors,
            "meta": self.meta,
        }
        arrays = {
            "ref_embedding": self.ref_embedding,
            "ref_codes": self.ref_codes,
            "centroids": self.centroids,
            "cell_cluster": self.cell_cluster,
            "config_json": np.array(json.dumps(cfg)),
        }
        if self.is_gene_space:
            arrays.update(mean=self.mean, std=self.std, components=self.components, pca_center=self.pca_center)
        return save_npz_atomic(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceSpace:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reference space file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                cfg = json.loads(str(z["config_json"]))
                arrays = {k: z[k] for k in z.files if k != "config_json"}
        except Exception as e:
            raise ReferenceDataError(f"cannot read reference space {path}: {e}") from e
        if cfg.get("format_version") != SPACE_FORMAT_VERSION:
            raise ReferenceDataError(f"{path}: unsupported reference space format {cfg.get('format_version')}")
        return cls(
            genes=list(cfg["genes"]),
            celltypes=list(cfg["celltypes"]),
            ref_embedding=arrays["ref_embedding"],
            ref_codes=arrays["ref_codes"],
            centroids=arrays["centroids"],
            cell_cluster=arrays["cell_cluster"],
            mean=arrays.get("mean"),
            std=arrays.get("std"),
            components=arrays.get("components"),
            pca_center=arrays.get("pca_center"),
            embedding_key=cfg["embedding_key"],
            max_value=cfg["max_value"],
            n_neighbors=int(cfg["n_neighbors"]),
            meta=dict(cfg["meta"]),
        )

    def __str__(self) -> str:
        kind = f"obsm['{self.embedding_key}']" if self.embedding_key else f"PCA of {len(self.genes)} genes"
        return (
            f"ReferenceSpace({kind}, {self.n_dims} dims, {self.ref_embedding.shape[0]} cells, "
            f"{self.n_types} cell types, {self.n_clusters} clusters)"
        )


def _scale(X: np.ndarray, mean, std, max_value) -> np.ndarray:
    Xs = (X - mean) / std
    if max_value is not None:
        np.clip(Xs, -max_value, max_value, out=Xs)
    return Xs.astype(np.float32, copy=False)


def _kmeans(Z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if len(Z) > 20_000:
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        km = KMeans(n_clusters=k, random_state=seed, n_init=3)
    lab = km.fit_predict(Z)
    return km.cluster_centers_.astype(np.float32), lab.astype(np.int32)
