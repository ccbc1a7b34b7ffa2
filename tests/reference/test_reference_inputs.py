"""References as users have them: gene naming, where the counts are, cell-type columns, thin data."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_scr2st.reference import (
    ReferenceDataError,
    ReferenceSpace,
    ReferenceWarning,
    list_celltype_columns,
    match_genes,
    prepare_reference,
    read_reference,
    reference_counts,
    strip_ensembl_version,
)

N_GENES = 240
TYPES = ("T cell", "B cell", "fibroblast")
SYMBOLS = [f"GENE{i}" for i in range(N_GENES)]
ENSEMBL = [f"ENSG{i:011d}" for i in range(N_GENES)]


def _counts(n_cells: int, seed: int = 0, types=TYPES) -> tuple[sp.csr_matrix, np.ndarray]:
    """Poisson counts with a block of marker genes per type."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(types, dtype=object)[np.arange(n_cells) % len(types)]
    rate = np.full((n_cells, N_GENES), 0.5)
    for t, name in enumerate(types):
        rate[labels == name, t * 40 : (t + 1) * 40] = 6.0
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32)), labels


def _log(X: sp.csr_matrix) -> sp.csr_matrix:
    tot = np.asarray(X.sum(axis=1)).ravel()
    return sp.csr_matrix(np.log1p(X.multiply(1e4 / tot[:, None]))).astype(np.float32)


def _cellxgene(n_cells: int = 90) -> ad.AnnData:
    """CELLxGENE layout: Ensembl ids in var_names, symbols in feature_name, log X, counts in raw."""
    X, labels = _counts(n_cells)
    var = pd.DataFrame({"feature_name": pd.Categorical(SYMBOLS)}, index=ENSEMBL)
    onto = {"T cell": "CL:0000084", "B cell": "CL:0000236", "fibroblast": "CL:0000057"}
    obs = pd.DataFrame(
        {
            "assay": pd.Categorical(["10x 3' v3"] * n_cells),
            "donor_id": pd.Categorical(np.where(np.arange(n_cells) < n_cells // 2, "D1", "D2")),
            "cell_type_ontology_term_id": pd.Categorical([onto[t] for t in labels]),
            "cell_type": pd.Categorical(labels),
            "barcode": [f"c{i}" for i in range(n_cells)],
        },
        index=[f"c{i}" for i in range(n_cells)],
    )
    a = ad.AnnData(X=X, obs=obs, var=var)
    a.raw = a
    a.X = _log(X)
    return a


def _write(a: ad.AnnData, tmp_path, name: str = "ref.h5ad"):
    p = tmp_path / name
    a.write_h5ad(p)
    return p


def test_cellxgene_style_reference(tmp_path):
    src = _cellxgene()
    p = _write(src, tmp_path, "cxg.h5ad")
    with pytest.warns(ReferenceWarning, match=r"using obs\['cell_type'\].*cell_type_ontology_term_id.*donor_id"):
        ref = read_reference(p)
    info = ref.uns["scr2st_reference"]
    assert info == {"source": str(p), "counts": "raw.X", "celltype_key": "cell_type"}
    assert np.array_equal(ref.X.toarray(), src.raw.X.toarray())  # raw counts, not the log X
    prep = prepare_reference(ref, SYMBOLS[:200], n_top_genes=100, min_shared=50, spots_name="symbols")
    assert prep.overlap.n_shared == 200
    assert prep.overlap.routes == {"var['feature_name'] = var_names": 200}
    assert "200 by var['feature_name'] = var_names" in str(prep.overlap)
    assert list(prep.adata.var_names) == SYMBOLS[:200]  # the space speaks the spots' names
    assert list(prep.adata.var["reference_id"]) == ENSEMBL[:200]
    assert prep.celltype_key == "cell_type"
    space = ReferenceSpace.fit(prep, n_comps=10, seed=0)
    assert space.celltypes == sorted(TYPES)
    assert (space.transfer_labels(space.ref_embedding).codes == space.ref_codes).mean() > 0.95


def test_log_normalised_without_counts_is_refused(tmp_path):
    a = _cellxgene()
    a = ad.AnnData(X=a.X, obs=a.obs, var=a.var)  # no raw: only log values left
    p = _write(a, tmp_path, "lognorm.h5ad")
    with pytest.raises(
        ReferenceDataError, match=r"lognorm\.h5ad.*X looks log-normalised.*max .*X, layers\['counts'\] or raw\.X"
    ):
        read_reference(p, celltype_key="cell_type")


def test_counts_in_layer(tmp_path):
    X, labels = _counts(60)
    a = ad.AnnData(X=_log(X), obs=pd.DataFrame({"celltype": pd.Categorical(labels)}, index=[f"c{i}" for i in range(60)]),
                   var=pd.DataFrame(index=SYMBOLS))
    a.layers["counts"] = X
    ref = read_reference(_write(a, tmp_path), celltype_key="celltype")
    assert ref.uns["scr2st_reference"]["counts"] == "layers['counts']"
    assert np.array_equal(ref.X.toarray(), X.toarray())
    # an in-memory AnnData is read the same way by prepare_reference
    prep = prepare_reference(a, SYMBOLS, n_top_genes=50, min_shared=50)
    assert np.allclose(prep.adata.layers["counts"].toarray(), X.toarray())


def test_raw_with_more_genes_is_aligned():
    X, labels = _counts(60)
    full = ad.AnnData(X=X, obs=pd.DataFrame({"cell_type": labels}, index=[f"c{i}" for i in range(60)]),
                      var=pd.DataFrame(index=ENSEMBL))
    a = full[:, ::2].copy()
    a.var["feature_name"] = [SYMBOLS[i] for i in range(0, N_GENES, 2)]
    a.raw = full
    a.X = _log(a.X)
    counts, var, source = reference_counts(a)
    assert source == "raw.X" and counts.shape == (60, N_GENES)
    assert list(var.index) == ENSEMBL
    assert var["feature_name"].iloc[2] == "GENE2" and pd.isna(var["feature_name"].iloc[1])


def test_versioned_and_ensembl_ids():
    ref_names = [f"{e}.{i % 7 + 1}" for i, e in enumerate(ENSEMBL)]  # GENCODE-style versions
    assert strip_ensembl_version(["ENSG00000141510.17", "ENSMUSG00000059552.1", "TP53", "ENSG1.x"]).tolist() == [
        "ENSG00000141510", "ENSMUSG00000059552", "TP53", "ENSG1.x"]
    # spots with unversioned Ensembl ids as var_names
    m = match_genes(ref_names, ENSEMBL[::-1])
    assert m.n_matched == N_GENES and m.routes == {"var_names = var_names (Ensembl version removed)": N_GENES}
    assert [ref_names[i] for i in m.reference_index[:2]] == [ref_names[-1], ref_names[-2]]
    # Visium-style spots: symbols in var_names, Ensembl ids in var['gene_ids']
    spot_var = pd.DataFrame({"gene_ids": ENSEMBL[:100]}, index=SYMBOLS[:100])
    m = match_genes(ref_names, SYMBOLS[:100], spot_var=spot_var)
    assert m.genes == SYMBOLS[:100]
    assert m.routes == {"var_names = var['gene_ids'] (Ensembl version removed)": 100}
    # reference with symbols and gene ids; spots in Ensembl ids; a mix of routes
    ref_var = pd.DataFrame({"gene_ids": ENSEMBL}, index=SYMBOLS)
    spots = ENSEMBL[:50] + SYMBOLS[50:80] + ["NOT_A_GENE"]
    m = match_genes(SYMBOLS, spots, reference_var=ref_var)
    assert m.n_matched == 80 and "NOT_A_GENE" not in m.genes
    assert m.routes == {"var_names = var_names": 30, "var['gene_ids'] = var_names": 50}
    # mouse ids, and a spot gene listed twice is matched once
    mouse = [f"ENSMUSG{i:011d}" for i in range(5)]
    m = match_genes([g + ".3" for g in mouse], mouse + [mouse[0]])
    assert m.n_matched == 5 and list(m.reference_index) == [0, 1, 2, 3, 4]


def test_prepare_with_spots_anndata_gene_ids():
    X, labels = _counts(90)
    ref = ad.AnnData(X=X, obs=pd.DataFrame({"celltype_major": labels}, index=[f"c{i}" for i in range(90)]),
                     var=pd.DataFrame(index=[f"{e}.2" for e in ENSEMBL]))
    spots = ad.AnnData(X=sp.csr_matrix((4, N_GENES), dtype=np.float32),
                       var=pd.DataFrame({"gene_ids": ENSEMBL}, index=SYMBOLS))
    prep = prepare_reference(ref, spots, n_top_genes=60, min_shared=100)
    assert prep.overlap.n_shared == N_GENES and list(prep.adata.var_names) == SYMBOLS
    assert "matched 240 by var_names = var['gene_ids'] (Ensembl version removed)" in str(prep.overlap)
    # names alone cannot match symbols to versioned ids: the error says how to fix it
    with pytest.raises(ReferenceDataError, match=r"share 0 genes.*feature_name, gene_ids"):
        prepare_reference(ref, SYMBOLS, min_shared=100)


def test_celltype_columns_and_missing_key(tmp_path):
    a = _cellxgene()
    assert list_celltype_columns(a) == ["cell_type", "cell_type_ontology_term_id", "donor_id"]
    obs = pd.DataFrame({"leiden": pd.Categorical(list("0123") * 5), "author_annotation": ["x", "y"] * 10,
                        "n_genes": np.arange(20)})
    assert list_celltype_columns(obs) == ["author_annotation", "leiden"]
    p = _write(a, tmp_path)
    with pytest.raises(ReferenceDataError,
                       match=r"ref\.h5ad has no obs column 'celltype_major'.*candidate cell-type columns: cell_type, "
                             r"cell_type_ontology_term_id, donor_id"):
        read_reference(p, celltype_key="celltype_major")
    b = ad.AnnData(X=a.raw.X, obs=a.obs[["assay", "barcode"]], var=a.var)
    with pytest.raises(ReferenceDataError, match=r"no obs column looks like cell types.*assay, barcode"):
        read_reference(_write(b, tmp_path, "nolabels.h5ad"))


def test_thin_references_warn(tmp_path):
    X, _ = _counts(60, types=("tumour",))
    one = ad.AnnData(X=X, obs=pd.DataFrame({"celltype": ["tumour"] * 60, "sample": ["s1", "s2"] * 30},
                                           index=[f"c{i}" for i in range(60)]), var=pd.DataFrame(index=SYMBOLS))
    with pytest.warns(ReferenceWarning, match=r"only 1 cell type \(tumour\)"):
        read_reference(_write(one, tmp_path, "one.h5ad"), celltype_key="celltype")
    X, labels = _counts(12)
    tiny = ad.AnnData(X=X, obs=pd.DataFrame({"celltype": labels}, index=[f"c{i}" for i in range(12)]),
                      var=pd.DataFrame(index=SYMBOLS))
    tiny.obs.loc["c0", "celltype"] = "rare"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        read_reference(_write(tiny, tmp_path, "tiny.h5ad"), celltype_key="celltype")
    msgs = [str(w.message) for w in rec if issubclass(w.category, ReferenceWarning)]
    assert any("only 12 cells (fewer than 50)" in m for m in msgs), msgs
    assert any("4 cell type(s)" in m and "rare (1)" in m for m in msgs), msgs
    # in-memory references not read by read_reference are checked by prepare_reference
    with pytest.warns(ReferenceWarning, match="only 12 cells"):
        prepare_reference(tiny, SYMBOLS, n_top_genes=50, min_shared=50, celltype_key="celltype")


def test_nan_inf_and_negative_counts(tmp_path):
    X, labels = _counts(60)
    obs = pd.DataFrame({"celltype": labels}, index=[f"c{i}" for i in range(60)])
    D = X.toarray()
    D[3, 17] = np.nan
    D[5, 9] = np.inf
    p = _write(ad.AnnData(X=sp.csr_matrix(D), obs=obs, var=pd.DataFrame(index=SYMBOLS)), tmp_path, "nan.h5ad")
    with pytest.raises(ReferenceDataError, match=r"nan\.h5ad.*X has 2 NaN or infinite value\(s\) in 2 gene\(s\), "
                                                 r"the first gene being 'GENE9'"):
        read_reference(p, celltype_key="celltype")
    D = X.toarray()
    D[0, 30] = -1
    p = _write(ad.AnnData(X=D, obs=obs, var=pd.DataFrame(index=SYMBOLS)), tmp_path, "neg.h5ad")
    with pytest.raises(ReferenceDataError, match=r"neg\.h5ad.*X has 1 negative value\(s\).*'GENE30'"):
        read_reference(p, celltype_key="celltype")


def test_real_reference_routes(shared_data):
    import gzip

    ref = read_reference(shared_data / "sc_reference" / "wu2021_breast_CID4465.h5ad", celltype_key="celltype_major")
    assert ref.uns["scr2st_reference"]["counts"] == "X"
    with gzip.open(shared_data / "her2st" / "data" / "ST-cnts" / "C3.tsv.gz", "rt") as fh:
        genes = [g for g in fh.readline().rstrip("\n").split("\t")[1:] if g]
    m = match_genes(ref.var_names, genes, reference_var=ref.var)
    assert m.n_matched > 10_000 and set(m.routes) == {"var_names = var_names"}
