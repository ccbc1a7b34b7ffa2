"""Single-cell reference: reading, gene overlap, the space, label transfer, persistence."""

import gzip

import numpy as np
import pytest

from napari_scr2st.reference import (
    GeneOverlap,
    ReferenceDataError,
    ReferenceSpace,
    default_n_clusters,
    prepare_reference,
    read_reference,
)


@pytest.fixture(scope="module")
def sample():
    from napari_scr2st.data import make_sample

    return make_sample(300, seed=0, with_image=False)


@pytest.fixture(scope="module")
def fitted(sample):
    prep = prepare_reference(sample.reference, sample.section.var_names, spots_name="SYN1")
    return prep, ReferenceSpace.fit(prep, seed=0)


def test_prepare_and_overlap(fitted, sample):
    prep, space = fitted
    ov = prep.overlap
    assert isinstance(ov, GeneOverlap)
    assert ov.n_shared == sample.section.n_vars == 300 and ov.fraction_of_spots == 1.0
    assert "share 300 genes" in str(ov) and "SYN1" in str(ov)
    # the prepared X is the package's one scale: log1p(counts / total * 1e4)
    from napari_scr2st.data.expression import log1p_normalized

    assert np.allclose(prep.adata.X.toarray(), log1p_normalized(sample.reference), atol=1e-4)
    assert np.allclose(np.asarray(prep.adata.layers["counts"].sum(axis=1)).ravel(),
                       np.asarray(sample.reference.X.sum(axis=1)).ravel())


def test_space_clusters_labels(fitted, sample):
    _, space = fitted
    assert space.n_clusters == default_n_clusters(sample.reference.n_obs) == 100
    assert default_n_clusters(50) == 10 and default_n_clusters(5) == 5 and default_n_clusters(10**6) == 1000
    assert space.n_dims == 50 and space.n_types == 9
    # label transfer recovers the reference's own labels
    lt = space.transfer_labels(space.ref_embedding)
    assert (lt.codes == space.ref_codes).mean() > 0.95
    assert np.allclose(lt.proportions.sum(axis=1), 1.0)
    # spots: dominated by the compartment's main type (tumour -> Cancer Epithelial)
    Z = space.embed(sample.section)
    lab = space.transfer_labels(Z).labels
    comp = sample.section.obs["true_compartment"].astype(str).to_numpy()
    assert (lab[comp == "tumour"] == "Cancer Epithelial").mean() > 0.8
    assert (lab[comp == "plasma aggregate"] == "Plasmablasts").mean() > 0.5
    # transform == embed on the same genes/scale
    from napari_scr2st.data.expression import log1p_normalized

    assert np.allclose(space.transform(log1p_normalized(sample.section, space.genes)), Z, atol=1e-4)
    # kNN is exact: compare with a brute-force argsort
    d = ((Z[:5, None, :] - space.ref_embedding[None]) ** 2).sum(-1)
    assert np.array_equal(space.kneighbors(Z[:5], 7), np.argsort(d, axis=1)[:, :7])


def test_save_load_round_trip(fitted, sample, tmp_path):
    _, space = fitted
    p = space.save(tmp_path / "space.npz")
    sp2 = ReferenceSpace.load(p)
    Z1, Z2 = space.embed(sample.section), sp2.embed(sample.section)
    assert np.array_equal(Z1, Z2)
    assert np.array_equal(space.nearest_cluster(Z1), sp2.nearest_cluster(Z2))
    assert list(space.transfer_labels(Z1).labels) == list(sp2.transfer_labels(Z2).labels)
    assert sp2.meta["overlap"]["n_shared"] == 300


def test_obsm_key_space(sample):
    ref = sample.reference.copy()
    rng = np.random.default_rng(0)
    ref.obsm["X_fm"] = rng.normal(size=(ref.n_obs, 16)).astype(np.float32)
    space = ReferenceSpace.fit(prepare_reference(ref, sample.section.var_names), embedding_key="X_fm")
    assert space.n_dims == 16 and space.genes == []
    with pytest.raises(ReferenceDataError, match="obsm\\['X_fm'\\]"):
        space.embed(sample.section)
    spots = sample.section.copy()
    spots.obsm["X_fm"] = rng.normal(size=(spots.n_obs, 16)).astype(np.float32)
    assert space.embed(spots).shape == (spots.n_obs, 16)
    with pytest.raises(ReferenceDataError):
        space.transform(np.zeros((2, 3)))
    with pytest.raises(ReferenceDataError, match="no obsm"):
        ReferenceSpace.fit(prepare_reference(sample.reference, sample.section.var_names), embedding_key="X_none")


def test_read_reference_errors(tmp_path, sample):
    with pytest.raises(FileNotFoundError, match="missing.h5ad"):
        read_reference(tmp_path / "missing.h5ad")
    bad = tmp_path / "broken.h5ad"
    bad.write_bytes(b"not an h5 file")
    with pytest.raises(ReferenceDataError, match="broken.h5ad"):
        read_reference(bad)
    good = tmp_path / "ref.h5ad"
    sample.reference.write_h5ad(good)
    with pytest.raises(ReferenceDataError, match=r"no obs column 'cell_type'.*available obs columns: celltype_major"):
        read_reference(good, celltype_key="cell_type")
    assert read_reference(good).n_obs == sample.reference.n_obs


def test_too_small_overlap_is_an_error(sample):
    genes = list(sample.section.var_names[:50]) + [f"OTHER{i}" for i in range(500)]
    with pytest.raises(ReferenceDataError, match=r"'myref'.*'spots-x'.*share 50 genes.*at least 200"):
        prepare_reference(sample.reference, genes, reference_name="myref", spots_name="spots-x")


# ------------------------------------------------------------------------------ real data


def _her2st_genes(shared_data, section):
    with gzip.open(shared_data / "her2st" / "data" / "ST-cnts" / f"{section}.tsv.gz", "rt") as fh:
        return [g for g in fh.readline().rstrip("\n").split("\t")[1:] if g]


@pytest.fixture(scope="module")
def wu(shared_data):
    return read_reference(shared_data / "sc_reference" / "wu2021_breast_CID4465.h5ad")


def test_real_reference_overlap_with_her2st(shared_data, wu):
    assert wu.n_obs == 1564 and wu.obs["celltype_major"].nunique() == 9
    for section in ("B4", "C3"):
        genes = _her2st_genes(shared_data, section)
        prep = prepare_reference(wu, genes, spots_name=section)
        ov = prep.overlap
        assert ov.n_shared > 10_000, str(ov)
        assert ov.hvg_fraction > 0.5
        assert section in str(ov) and "wu2021_breast_CID4465.h5ad" in str(ov)
    space = ReferenceSpace.fit(prep, seed=0)
    assert space.n_clusters == default_n_clusters(1564) == 104
    assert (space.transfer_labels(space.ref_embedding).codes == space.ref_codes).mean() > 0.85
