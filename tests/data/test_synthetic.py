import numpy as np
import pytest

from napari_scr2st.data import make_sample, validate_section
from napari_scr2st.data.model import get_fullres_image, get_lowres_image, spot_diameter_px
from napari_scr2st.data.synthetic import CELL_TYPES, COMPARTMENTS, RARE_COMPARTMENT


@pytest.fixture(scope="module")
def sample():
    return make_sample(n_spots=600, seed=3)


def test_sample_follows_the_data_model(sample):
    a = sample.section
    validate_section(a)
    assert 0.9 * 600 <= a.n_obs <= 1.1 * 600
    assert a.obsm["spatial"].shape == (a.n_obs, 2)
    assert a.X.format == "csr" and a.X.dtype == np.float32
    assert np.all(a.X.data >= 0) and np.all(np.mod(a.X.data, 1) == 0)  # integer counts
    assert set(a.obs.columns) >= {"section", "patient", "array_row", "array_col"}
    assert spot_diameter_px(a) == pytest.approx(16.0)
    full = get_fullres_image(a)
    assert full.dtype == np.uint8 and full.shape[2] == 3
    # every spot centre lies inside the image
    xy = a.obsm["spatial"]
    assert xy[:, 0].max() < full.shape[1] and xy[:, 1].max() < full.shape[0]
    low, s = get_lowres_image(a)
    assert low.shape[0] == pytest.approx(full.shape[0] * s, abs=1)


def test_sample_is_deterministic_and_seed_dependent():
    a = make_sample(n_spots=300, seed=1).section
    b = make_sample(n_spots=300, seed=1).section
    c = make_sample(n_spots=300, seed=2).section
    assert (a.X != b.X).nnz == 0
    np.testing.assert_array_equal(get_fullres_image(a), get_fullres_image(b))
    assert a.shape != c.shape or (a.X != c.X).nnz > 0


def test_sample_has_compartments_including_a_rare_one(sample):
    counts = sample.section.obs["true_compartment"].value_counts(normalize=True)
    assert counts[RARE_COMPARTMENT] > 0.005
    assert counts[RARE_COMPARTMENT] < 0.08  # rare
    assert (counts > 0).sum() >= 4


def test_image_differs_between_compartments(sample):
    a = sample.section
    full = get_fullres_image(a).astype(float)
    xy = a.obsm["spatial"].astype(int)
    grey = full[xy[:, 1], xy[:, 0]].mean(axis=1)
    comp = a.obs["true_compartment"].astype(str).to_numpy()
    means = {c: grey[comp == c].mean() for c in COMPARTMENTS if (comp == c).sum() > 5}
    assert max(means.values()) - min(means.values()) > 15


def test_counts_follow_compartment_programmes(sample):
    a = sample.section
    comp = a.obs["true_compartment"].astype(str).to_numpy()
    epcam = np.asarray(a[:, "EPCAM"].X.todense()).ravel() / np.asarray(a.X.sum(1)).ravel()
    jchain = np.asarray(a[:, "JCHAIN"].X.todense()).ravel() / np.asarray(a.X.sum(1)).ravel()
    assert epcam[comp == "tumour"].mean() > 3 * epcam[comp == "stroma"].mean()
    assert jchain[comp == RARE_COMPARTMENT].mean() > 3 * jchain[comp == "tumour"].mean()


def test_reference_matches_the_section(sample):
    ref = sample.reference
    assert list(ref.var_names) == list(sample.section.var_names)
    assert set(ref.obs["celltype_major"].unique()) == set(CELL_TYPES)
    assert ref.X.nnz > 0


def test_sample_scales_without_image():
    s = make_sample(n_spots=20000, seed=0, with_image=False, n_genes=100)
    assert 18000 <= s.section.n_obs <= 22000
    assert get_fullres_image(s.section) is None


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="n_spots"):
        make_sample(n_spots=5)
    with pytest.raises(ValueError, match="n_genes"):
        make_sample(n_spots=100, n_genes=10)
