"""The spatial residual correction: measured neighbours of the same section, never the spot itself."""

import numpy as np

from napari_scr2st.model.spatial import SpatialResidual, spot_pitch


def _lattice(n_side=20, pitch=100.0):
    g = np.arange(n_side) * pitch
    xx, yy = np.meshgrid(g, g)
    return np.c_[xx.ravel(), yy.ravel()]


def test_pitch_is_the_lattice_spacing():
    assert spot_pitch(_lattice(pitch=137.0)) == 137.0


def test_smooth_residuals_are_corrected_and_noise_is_left_alone():
    xy = _lattice()
    n = len(xy)
    rng = np.random.default_rng(0)
    smooth = np.sin(xy[:, :1] / 400.0) + np.cos(xy[:, 1:] / 300.0)  # what histology missed, spatially smooth
    ids = np.arange(n).astype(str)
    secs = np.full(n, "S")
    meas = rng.random(n) < 0.3
    sr = SpatialResidual(pitch=100.0).fit(xy[meas], secs[meas], ids[meas], smooth[meas])
    assert np.isfinite(sr.shrinkage) and sr.loo_mse < 0.3 * sr.base_loo_mse
    corr = sr.correction(xy[~meas], secs[~meas], ids[~meas], xy[meas], secs[meas], ids[meas], smooth[meas])
    err_before = np.mean(smooth[~meas] ** 2)
    err_after = np.mean((smooth[~meas] - corr) ** 2)
    assert err_after < 0.3 * err_before
    noise = rng.normal(size=(n, 1))
    sr2 = SpatialResidual(pitch=100.0).fit(xy[meas], secs[meas], ids[meas], noise[meas])
    assert sr2.loo_mse <= sr2.base_loo_mse and (not np.isfinite(sr2.shrinkage) or sr2.loo_mse > 0.8 * sr2.base_loo_mse)


def test_a_spot_never_counts_for_itself_and_sections_stay_apart():
    xy = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 0.0]])
    secs = np.array(["A", "A", "B"])
    ids = np.array(["a0", "a1", "b0"])
    resid = np.array([[10.0], [0.0], [50.0]])
    sr = SpatialResidual(bandwidth=1.0, shrinkage=0.0, pitch=100.0)
    # query a0 against itself only: no neighbour but itself -> no correction
    c = sr.correction(xy[:1], secs[:1], ids[:1], xy[:1], secs[:1], ids[:1], resid[:1])
    assert c[0, 0] == 0.0
    # a new spot at a0's place in section A sees a0 and a1, never b0 (other section, same position)
    c = sr.correction(np.array([[0.0, 0.0]]), np.array(["A"]), np.array(["new"]), xy, secs, ids, resid)
    w0, w1 = 1.0, np.exp(-0.5)
    assert np.isclose(c[0, 0], (w0 * 10.0 + w1 * 0.0) / (w0 + w1))
    # without measured spots in the query's section: no correction (cross-slide prediction unchanged)
    c = sr.correction(np.array([[0.0, 0.0]]), np.array(["C"]), np.array(["x"]), xy, secs, ids, resid)
    assert c[0, 0] == 0.0
