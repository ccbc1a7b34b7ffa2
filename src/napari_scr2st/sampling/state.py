"""Selection bookkeeping and the ONLY store of measured expression a sampler can reach.

:class:`SelectionState` records, per pool spot, whether it is selected, in which round, by which
sampler (or ``"manual"`` for locked picks, ``"imported"`` for counts of spots never selected),
its score and its rank in the selection order, and whether its counts have been REVEALED
(sequenced). The counts of revealed spots are stored in the state itself (sparse rows), so a
saved state is the complete record of a (possibly months-long) real acquisition.

Counts enter the state only through :meth:`SelectionState.add_counts`, which the simulated
oracle (``loop.SimulatedOracle``) and the real import (:func:`import_counts`) call.
:meth:`SelectionState.measured_view` returns a :class:`MeasuredView` with revealed rows only.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..atomic import save_npz_atomic

__all__ = ["SelectionState", "MeasuredView", "import_counts", "STATE_FORMAT_VERSION"]

STATE_FORMAT_VERSION = 1


@dataclass
class MeasuredView:
    """Revealed spots only: pool ``index`` (sorted), raw ``counts`` rows, ``genes``, ``obsm``."""

    index: np.ndarray
    counts: sp.csr_matrix
    genes: list[str]
    obsm: dict[str, np.ndarray] = field(default_factory=dict)
    versions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)

    def log1p(self, genes: Sequence[str] | None = None) -> np.ndarray:
        """log1p-normalised expression (totals over all stored genes; the package's scale)."""
        import anndata as ad

        from ..data.expression import log1p_normalized

        a = ad.AnnData(X=self.counts, var=pd.DataFrame(index=pd.Index(self.genes, dtype=str)))
        return log1p_normalized(a, genes)


class SelectionState:
    """Which spots are selected/measured, when and by whom; the revealed counts (see module doc)."""

    def __init__(self, spot_ids: Sequence[str], sections: Sequence[str]) -> None:
        self.spot_ids = np.asarray(spot_ids).astype(str)
        self.sections = np.asarray(sections).astype(str)
        n = len(self.spot_ids)
        if len(self.sections) != n:
            raise ValueError("spot_ids and sections must have the same length")
        self.round = np.full(n, -1, dtype=np.int64)
        self.source = np.full(n, "", dtype=object)
        self.score = np.full(n, np.nan, dtype=np.float64)
        self.rank = np.full(n, -1, dtype=np.int64)
        self.measured = np.zeros(n, dtype=bool)
        self.current_round = 0
        self.budget: int | None = None
        self.n_rounds: int | None = None
        self.meta: dict[str, Any] = {}
        self.genes: list[str] | None = None
        # counts of revealed spots: row `_row[i]` of `_counts` holds spot i (-1: not revealed)
        self._row = np.full(n, -1, dtype=np.int64)
        self._counts: sp.csr_matrix | None = None
        self._obsm: dict[str, np.ndarray] = {}
        self._version = np.zeros(n, dtype=np.int64)  # bumped when counts of a spot are overwritten

    @classmethod
    def for_pool(cls, pool) -> SelectionState:
        return cls(pool.spot_ids, pool.sections)

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        return len(self.spot_ids)

    @property
    def selected(self) -> np.ndarray:
        """Boolean mask of selected spots (pending or measured)."""
        return self.round >= 0

    @property
    def n_selected(self) -> int:
        return int(self.selected.sum())

    @property
    def pending(self) -> np.ndarray:
        """Selected but not yet measured."""
        return self.selected & ~self.measured

    def fingerprint(self) -> str:
        """A digest of everything a sampler may condition on: picks, rounds, measured spots (and
        count versions), the current round, budget and rounds. Equal digests, equal states."""
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        for arr in (self.round, self.measured, self._version):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update(repr((self.current_round, self.budget, self.n_rounds)).encode())
        return h.hexdigest()

    def selection_order(self) -> np.ndarray:
        """Pool indices of selected spots in selection order (by rank)."""
        idx = np.flatnonzero(self.selected)
        return idx[np.argsort(self.rank[idx], kind="stable")]

    def check_pool(self, pool) -> None:
        """The state must describe the same spots, in the same order, as ``pool``."""
        if pool.n != self.n or not (np.array_equal(pool.spot_ids, self.spot_ids) and np.array_equal(pool.sections, self.sections)):
            raise ValueError(
                f"the selection state ({self.n} spots, sections {', '.join(sorted(set(map(str, self.sections))))}) "
                f"does not match the pool ({pool.n} spots, sections {', '.join(map(str, pool.section_names))})"
            )

    # ------------------------------------------------------------------ selection
    def mark_selected(self, idx: Sequence[int], *, round: int | None = None, source: str = "",
                      scores: Sequence[float] | None = None) -> None:
        """Record picks (pool indices) in order; re-selecting a spot is an error."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        if idx.size == 0:
            return
        if len(np.unique(idx)) != len(idx):
            raise ValueError("the same spot was picked twice in one batch")
        again = idx[self.selected[idx]]
        if again.size:
            raise ValueError(f"spots already selected cannot be picked again: {self._names(again[:5])}")
        r = self.current_round if round is None else int(round)
        start = int(self.rank.max()) + 1 if self.selected.any() else 0
        self.round[idx] = r
        self.source[idx] = source
        self.rank[idx] = start + np.arange(len(idx))
        if scores is not None:
            self.score[idx] = np.asarray(scores, dtype=np.float64)

    def lock(self, idx: Sequence[int], *, round: int = 0) -> None:
        """Manual picks: selected with source ``"manual"`` (they count toward the budget)."""
        idx = np.asarray(idx, dtype=np.int64).ravel()
        new = idx[~self.selected[idx]]
        self.mark_selected(new, round=round, source="manual")

    def _names(self, idx: np.ndarray) -> list[str]:
        return [f"{self.sections[i]}:{self.spot_ids[i]}" for i in idx]

    # ------------------------------------------------------------------ counts
    def add_counts(
        self,
        idx: Sequence[int],
        counts,
        genes: Sequence[str],
        *,
        obsm: dict[str, np.ndarray] | None = None,
        overwrite: bool = False,
        source_if_unselected: str = "imported",
    ) -> None:
        """Store revealed counts (rows aligned with ``idx``). Validates BEFORE changing anything.

        The first call fixes the gene list; later calls are re-indexed to it (genes missing from
        a later batch are an error, extra genes are dropped with a warning). Counts of spots
        already measured are an error unless ``overwrite``. Spots revealed without having been
        selected are recorded as selected by ``source_if_unselected``.
        """
        idx = np.asarray(idx, dtype=np.int64).ravel()
        genes = [str(g) for g in genes]
        X = counts if sp.issparse(counts) else sp.csr_matrix(np.asarray(counts))
        X = X.tocsr().astype(np.float32)
        if X.shape != (len(idx), len(genes)):
            raise ValueError(f"counts shape {X.shape} does not match {len(idx)} spots x {len(genes)} genes")
        if len(np.unique(idx)) != len(idx):
            raise ValueError("the same spot appears twice in one batch of counts")
        if X.nnz and (X.data < 0).any():
            raise ValueError("counts must be non-negative")
        if (len(idx) and (idx.min() < 0 or idx.max() >= self.n)):
            raise ValueError("spot index out of range")
        already = idx[self.measured[idx]]
        if already.size and not overwrite:
            raise ValueError(
                f"{already.size} spot(s) already have imported counts: {self._names(already[:8])}; "
                "pass overwrite=True (CLI: --overwrite) to replace them"
            )
        if self.genes is None:
            if len(set(genes)) != len(genes):
                raise ValueError("duplicate gene names in the counts")
            target = genes
        else:
            target = self.genes
            gi = pd.Index(genes)
            if not gi.is_unique:
                raise ValueError("duplicate gene names in the counts")
            missing = pd.Index(target).difference(gi)
            if len(missing):
                raise ValueError(
                    f"the new counts lack {len(missing)} of the {len(target)} genes of earlier imports: "
                    f"{list(missing[:8])}"
                )
            extra = gi.difference(pd.Index(target))
            if len(extra):
                warnings.warn(f"dropping {len(extra)} genes not present in earlier imports: {list(extra[:5])}", stacklevel=2)
            X = X[:, gi.get_indexer(target)].tocsr()
        obsm = obsm or {}
        for k, v in obsm.items():
            v = np.asarray(v)
            if len(v) != len(idx):
                raise ValueError(f"revealed obsm['{k}'] has {len(v)} rows for {len(idx)} spots")
            if k in self._obsm and self._obsm[k].shape[1:] != v.shape[1:]:
                raise ValueError(f"revealed obsm['{k}'] shape {v.shape[1:]} differs from earlier {self._obsm[k].shape[1:]}")
        if self._obsm and set(obsm) != set(self._obsm):
            raise ValueError(f"revealed obsm keys {sorted(obsm)} differ from earlier ones {sorted(self._obsm)}")
        # ---- all checks passed: mutate
        if self.genes is None:
            self.genes = list(target)
        base = 0 if self._counts is None else self._counts.shape[0]
        self._counts = X if self._counts is None else sp.vstack([self._counts, X], format="csr")
        for k, v in obsm.items():
            v = np.asarray(v)
            self._obsm[k] = v if k not in self._obsm else np.concatenate([self._obsm[k], v], axis=0)
        self._version[idx[self.measured[idx]]] += 1
        self._row[idx] = base + np.arange(len(idx))
        self.measured[idx] = True
        unsel = idx[~self.selected[idx]]
        if unsel.size:
            self.mark_selected(unsel, source=source_if_unselected)
        if self._counts.shape[0] > 2 * max(int(self.measured.sum()), 1) + 64:
            self._compact()

    def _compact(self) -> None:
        idx = np.flatnonzero(self.measured)
        rows = self._row[idx]
        self._counts = self._counts[rows].tocsr() if self._counts is not None else None
        self._obsm = {k: v[rows] for k, v in self._obsm.items()}
        self._row[:] = -1
        self._row[idx] = np.arange(len(idx))

    def measured_view(self) -> MeasuredView:
        """Revealed spots only (sorted pool indices); nothing about unrevealed spots."""
        idx = np.flatnonzero(self.measured)
        genes = list(self.genes or [])
        if idx.size == 0 or self._counts is None:
            return MeasuredView(idx, sp.csr_matrix((0, len(genes)), dtype=np.float32), genes,
                                {k: v[:0] for k, v in self._obsm.items()}, self._version[idx].copy())
        rows = self._row[idx]
        return MeasuredView(idx, self._counts[rows].tocsr(), genes, {k: v[rows] for k, v in self._obsm.items()},
                            self._version[idx].copy())

    # ------------------------------------------------------------------ tables and files
    def to_frame(self) -> pd.DataFrame:
        """One row per SELECTED spot in selection order: id, section, round, source, score, rank, measured."""
        idx = self.selection_order()
        return pd.DataFrame(
            {
                "spot_id": self.spot_ids[idx],
                "section": self.sections[idx],
                "round": self.round[idx],
                "source": self.source[idx].astype(str),
                "score": self.score[idx],
                "rank": self.rank[idx],
                "measured": self.measured[idx],
            }
        )

    def save(self, path: str | Path) -> Path:
        """Write the whole state (incl. revealed counts) to one ``.npz``, atomically."""
        path = Path(path)
        self._compact() if self._counts is not None else None
        meta = {
            "format_version": STATE_FORMAT_VERSION,
            "current_round": int(self.current_round),
            "budget": self.budget,
            "n_rounds": self.n_rounds,
            "genes": self.genes,
            "obsm_keys": sorted(self._obsm),
            "meta": self.meta,
        }
        arrays: dict[str, np.ndarray] = {
            "spot_ids": self.spot_ids.astype(str),
            "sections": self.sections.astype(str),
            "round": self.round,
            "source": self.source.astype(str),
            "score": self.score,
            "rank": self.rank,
            "measured": self.measured,
            "row": self._row,
            "version": self._version,
            "meta_json": np.array(json.dumps(meta, default=_json_default)),
        }
        if self._counts is not None:
            c = self._counts.tocsr()
            arrays.update(counts_data=c.data, counts_indices=c.indices, counts_indptr=c.indptr,
                          counts_shape=np.array(c.shape))
        for k, v in self._obsm.items():
            arrays[f"obsm__{k}"] = v
        return save_npz_atomic(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> SelectionState:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"selection state not found: {path}")
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"cannot read selection state {path}: {e}") from e
        with z:
            meta = json.loads(str(z["meta_json"]))
            if meta.get("format_version") != STATE_FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported selection state format {meta.get('format_version')}")
            st = cls(z["spot_ids"], z["sections"])
            st.round = z["round"].astype(np.int64)
            st.source = z["source"].astype(object)
            st.score = z["score"].astype(np.float64)
            st.rank = z["rank"].astype(np.int64)
            st.measured = z["measured"].astype(bool)
            st._row = z["row"].astype(np.int64)
            st._version = z["version"].astype(np.int64)
            if "counts_data" in z.files:
                st._counts = sp.csr_matrix((z["counts_data"], z["counts_indices"], z["counts_indptr"]),
                                           shape=tuple(z["counts_shape"]))
            st._obsm = {k[len("obsm__"):]: z[k] for k in z.files if k.startswith("obsm__")}
        st.current_round = int(meta["current_round"])
        st.budget = meta["budget"]
        st.n_rounds = meta["n_rounds"]
        st.genes = meta["genes"]
        st.meta = meta["meta"]
        return st

    def copy(self) -> SelectionState:
        st = SelectionState(self.spot_ids, self.sections)
        for a in ("round", "source", "score", "rank", "measured", "_row", "_version"):
            setattr(st, a, getattr(self, a).copy())
        st._counts = None if self._counts is None else self._counts.copy()
        st._obsm = {k: v.copy() for k, v in self._obsm.items()}
        st.current_round, st.budget, st.n_rounds = self.current_round, self.budget, self.n_rounds
        st.genes = None if self.genes is None else list(self.genes)
        st.meta = json.loads(json.dumps(self.meta, default=_json_default))
        return st

    def __repr__(self) -> str:
        return (f"SelectionState({self.n} spots, {self.n_selected} selected, {int(self.measured.sum())} measured, "
                f"{self.current_round} rounds committed)")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ------------------------------------------------------------------------------ real import


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if any(name.endswith(s) for s in (".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        sep = "\t"
    elif any(name.endswith(s) for s in (".csv", ".csv.gz")):
        sep = ","
    else:
        sep = None  # sniffed
    try:
        df = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", index_col=None)
    except Exception as e:
        raise ValueError(f"cannot read counts file {path}: {e}") from e
    if df.shape[1] < 2:
        raise ValueError(f"counts file {path}: expected spots x genes with a spot id column, got {df.shape[1]} column(s)")
    if df.empty:
        raise ValueError(f"counts file {path}: no spots (a header without rows)")
    return df


#: a counts file whose gene names match fewer than this share of the expected names (the genes
#: of earlier imports, else of the section) uses another naming; one that covers less than this
#: share of the expected genes is truncated
MIN_GENE_MATCH = 0.5


def _sample(names, k: int = 3) -> str:
    names = list(names)
    return ", ".join(map(str, names[:k])) + (", ..." if len(names) > k else "")


def _check_genes(path: Path, genes: list[str], earlier: list[str] | None, section_genes: list[str] | None) -> None:
    """Refuse another gene naming or a truncated gene set (numbers in the message)."""
    if earlier:
        expected, what = earlier, "earlier imports"
    elif section_genes:
        expected, what = section_genes, "the section"
    else:
        return
    shared = len(set(genes) & set(expected))
    if shared < MIN_GENE_MATCH * min(len(genes), len(expected)):
        raise ValueError(
            f"counts file {path}: only {shared} of its {len(genes)} gene names match the {len(expected)} genes of "
            f"{what} (file: {_sample(genes)}; expected: {_sample(expected)}): another gene naming (e.g. Ensembl "
            f"ids instead of symbols)? Write the file with the gene names of {what}"
        )
    if shared < MIN_GENE_MATCH * len(expected):
        raise ValueError(
            f"counts file {path}: its {len(genes)} genes cover only {shared} of the {len(expected)} genes of "
            f"{what}: a truncated gene set? Send the whole table"
        )


def _check_values(path: Path, df: pd.DataFrame, gene_cols: list, ids: np.ndarray) -> np.ndarray:
    """The gene columns as float32 raw counts; the first offending column is named."""
    num = df[gene_cols].apply(pd.to_numeric, errors="coerce")
    bad = num.isna() & df[gene_cols].notna()
    if bad.to_numpy().any():
        col = gene_cols[int(np.flatnonzero(bad.to_numpy().any(axis=0))[0])]
        row = int(np.flatnonzero(bad[col].to_numpy())[0])
        raise ValueError(f"counts file {path}: column {col!r} is not numeric (spot {ids[row]}: "
                         f"{df[col].iloc[row]!r}); gene columns must hold raw counts")
    X = num.to_numpy(dtype=np.float64)
    checks = (
        (~np.isfinite(X), "holds infinite or NaN values (an empty cell reads as NaN)"),
        (X < 0, "is negative"),
        (np.isfinite(X) & (X != np.rint(X)), "is not an integer (log-normalised or scaled values?)"),
    )
    for mask, what in checks:
        if mask.any():
            j = int(np.flatnonzero(mask.any(axis=0))[0])
            i = int(np.flatnonzero(mask[:, j])[0])
            raise ValueError(f"counts file {path}: column {gene_cols[j]!r} at spot {ids[i]} {what} ({float(X[i, j]):g}); "
                             "the lab's file must hold raw integer counts")
    return X.astype(np.float32)


def import_counts(
    state: SelectionState,
    counts_file: str | Path,
    *,
    section: str | None = None,
    overwrite: bool = False,
    save_to: str | Path | None = None,
    genes: Sequence[str] | None = None,
) -> np.ndarray:
    """Import sequencing results (CSV/TSV, spots x genes) into ``state``; returns pool indices.

    The first column (or a column named ``spot_id``/``spot``/``barcode``/``id``) holds spot ids.
    Every row must be tied to exactly one section: by a ``section`` column, by the ``section``
    argument, or because the state holds one section; a state of several sections without
    either is an error. Refused, with the file named: unknown sections or ids (a few are
    listed), repeated spots, gene names that do not match the naming of earlier imports or, for
    the first import, of the section (``genes``, default ``state.meta["section_genes"]``; fewer
    than :data:`MIN_GENE_MATCH` of the names shared), a gene set that covers less than that
    share of them, non-numeric, NaN/inf, negative or non-integer values (the first offending
    column is named). Spots imported before are kept; importing one again is an error unless
    ``overwrite``. Everything is validated before the state changes, and with ``save_to`` the
    updated state is written atomically (the previous file stays intact if anything fails).
    """
    path = Path(counts_file)
    if not path.is_file():
        raise FileNotFoundError(f"counts file not found: {path}")
    df = _read_table(path)
    cols = [str(c) for c in df.columns]
    df.columns = cols
    lower = [c.lower() for c in cols]
    id_col = next((cols[i] for i, c in enumerate(lower) if c in ("spot_id", "spot", "barcode", "id")), cols[0])
    sec_col = next((cols[i] for i, c in enumerate(lower) if c == "section"), None)
    ids = df[id_col].astype(str).to_numpy()
    names = sorted(set(state.sections))
    if sec_col is not None:
        secs = df[sec_col].astype(str).to_numpy()
        if section is not None and set(secs) != {str(section)}:
            raise ValueError(f"counts file {path}: its 'section' column names {_sample(sorted(set(secs)))}, "
                             f"not section {section!r}")
    elif section is not None:
        secs = np.full(len(ids), str(section))
    elif len(names) == 1:
        secs = np.full(len(ids), names[0])
    else:
        raise ValueError(
            f"counts file {path} has no 'section' column and the selection holds several sections "
            f"({', '.join(names)}): spot ids like {ids[0] if len(ids) else '10x12'} repeat across sections, so its "
            "counts cannot be tied to one; add a 'section' column or pass section= (CLI: --section)"
        )
    unknown = sorted(set(secs) - set(names))
    if unknown:
        raise ValueError(f"counts file {path}: section(s) {[str(u) for u in unknown[:5]]} are not in the selection; "
                         f"its sections: {', '.join(names)}")
    gene_cols = [c for c in cols if c not in (id_col, sec_col)]
    keys = pd.MultiIndex.from_arrays([state.sections, state.spot_ids])
    idx = keys.get_indexer(pd.MultiIndex.from_arrays([secs, ids]))
    if (idx < 0).any():
        bad = ids[idx < 0]
        hint = ""
        if set(map(str, gene_cols[:50])) & set(state.spot_ids):
            hint = " (the column names look like spot ids: is the file genes x spots? it must be spots x genes)"
        raise ValueError(
            f"counts file {path}: {len(bad)} of {len(ids)} spot ids are not in the selection "
            f"(sections {', '.join(names)}): {list(bad[:8])}{' ...' if len(bad) > 8 else ''}{hint}"
        )
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"counts file {path}: some spots appear more than once")
    if len(set(gene_cols)) != len(gene_cols):
        raise ValueError(f"counts file {path}: duplicate gene names in the counts")
    expected = genes if genes is not None else state.meta.get("section_genes")
    _check_genes(path, gene_cols, state.genes, [str(g) for g in expected] if expected is not None else None)
    X = _check_values(path, df, gene_cols, ids)
    try:
        state.add_counts(idx, sp.csr_matrix(X), gene_cols, overwrite=overwrite)
    except ValueError as e:
        raise ValueError(f"counts file {path}: {e}") from e
    if save_to is not None:
        state.save(save_to)
    return idx
