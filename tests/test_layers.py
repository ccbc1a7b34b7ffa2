import numpy as np
import pytest

from napari_scr2st.data import make_sample
from napari_scr2st.layers import image_layer, image_pyramid, section_layers, spots_layer


@pytest.fixture(scope="module")
def section():
    return make_sample(n_spots=300, seed=0).section


def test_section_layers_are_image_and_points(section):
    layers = section_layers(section)
    assert [t for _, _, t in layers] == ["image", "points"]
    (img, ikw, _), (pts, pkw, _) = layers
    assert ikw["rgb"] and img.shape[2] == 3
    # napari (y, x) order: the first spot's y is obsm x-column 1
    np.testing.assert_allclose(pts[:, 0], section.obsm["spatial"][:, 1])
    assert pkw["size"] == pytest.approx(16.0)
    assert len(pkw["features"]) == section.n_obs
    np.testing.assert_allclose(pkw["features"]["total_counts"], np.asarray(section.X.sum(1)).ravel())


def test_spots_coloured_by_a_feature(section):
    section = section.copy()
    section.obs["cell_type"] = section.obs["true_compartment"].astype(str)
    _, kw, _ = spots_layer(section, color_by="cell_type")
    assert kw["face_color"] == "cell_type"
    assert "cell_type" in kw["features"]


def test_pyramid_and_multiscale_choice():
    big = np.zeros((5000, 4200, 3), np.uint8)
    levels = image_pyramid(big)
    assert [lv.shape[0] for lv in levels] == [5000, 2500, 1250]
    assert all(lv.shape[2] == 3 for lv in levels)


def test_lowres_only_section_is_scaled_to_fullres(section):
    s = section.copy()
    s.uns["spatial"]["SYN1"]["images"].pop("hires")
    data, kw, _ = image_layer(s)
    sf = s.uns["spatial"]["SYN1"]["scalefactors"]["tissue_lowres_scalef"]
    assert kw["scale"] == (1 / sf, 1 / sf)
    assert data is s.uns["spatial"]["SYN1"]["images"]["lowres"]


# ------------------------------------------------------------------ builders for the docks
from types import SimpleNamespace  # noqa: E402

import pandas as pd  # noqa: E402

from napari_scr2st.layers import (  # noqa: E402
    celltype_layer,
    expression_layer,
    expression_layer_name,
    expression_values,
    inspect_layer,
    layer_name,
    measured_expression,
    roi_layer,
    selection_layer,
    spot_features,
    spot_yx,
    spots_in_shapes,
)
from napari_scr2st.palette import MANUAL_COLOR, hex_to_rgba, picked_by_label, round_color  # noqa: E402


def _selection(n, picks):
    """A duck-typed selection: picks = [(index, round, source, measured)]."""
    s = SimpleNamespace(
        round=np.full(n, -1), source=np.full(n, "", dtype=object), measured=np.zeros(n, bool),
        rank=np.full(n, -1), score=np.full(n, np.nan),
    )
    for r, (i, rnd, src, meas) in enumerate(picks):
        s.round[i], s.source[i], s.measured[i], s.rank[i] = rnd, src, meas, r
        s.score[i] = np.nan if src == "manual" else 1.0 / (r + 1)
    return s


def test_spot_features_carry_selection_celltype_and_predictions(section):
    n = section.n_obs
    sel = _selection(n, [(3, 0, "scrl", True), (5, 1, "manual", False), (9, 1, "random", False)])
    excluded = np.zeros(n, bool)
    excluded[7] = True
    pred = pd.DataFrame({"ERBB2": np.arange(n, dtype=float)}, index=section.obs_names)
    ct = np.array(["T-cells"] * n, dtype=object)
    f = spot_features(section, selection=sel, excluded=excluded, cell_types=ct, predicted=pred, genes=["ERBB2", "NOPE"])
    assert list(f.columns[:5]) == ["spot_id", "section", "array_row", "array_col", "total_counts"]
    assert f.loc[3, "state"] == "sequenced" and f.loc[5, "state"] == "selected"
    assert f.loc[7, "state"] == "excluded" and f.loc[0, "state"] == "not selected"
    assert f.loc[3, "picked_by"] == "policy" and f.loc[5, "picked_by"] == "manual" and f.loc[9, "picked_by"] == "random"
    # rounds on hover count from 1 (the second round is "2"); 0 = not selected
    assert f.loc[3, "round"] == 1 and f.loc[9, "round"] == 2 and f.loc[0, "round"] == 0
    assert f.loc[4, "pred_ERBB2"] == 4.0 and "pred_NOPE" not in f
    assert (f["cell_type"] == "T-cells").all()
    _, kw, kind = spots_layer(section, selection=sel, cell_types=ct)
    assert kind == "points" and "state" in kw["features"] and kw["metadata"]["adata"] is section


def test_picked_by_labels():
    assert picked_by_label("manual") == "manual"
    assert picked_by_label("scrl") == "policy"
    assert picked_by_label("kcenter") == "kcenter"


def test_selection_layer_distinguishes_rounds_and_manual(section):
    n = section.n_obs
    sel = _selection(n, [(3, 0, "scrl", True), (5, 1, "manual", False), (9, 1, "scrl", False)])
    sel.budget = 12
    data, kw, kind = selection_layer(section, sel)
    assert kind == "points" and data.shape == (3, 2)
    np.testing.assert_allclose(data, spot_yx(section)[[3, 5, 9]])
    assert kw["name"] == layer_name("SYN1", "selected") == "SYN1 selected"
    assert kw["symbol"] == ["disc", "star", "disc"]
    ring = np.asarray(kw["border_color"])
    np.testing.assert_allclose(ring[0, :3], hex_to_rgba(round_color(0))[:3])  # the round's colour
    np.testing.assert_allclose(ring[1, :3], ring[2, :3])  # same round, same colour
    assert not np.allclose(ring[0, :3], ring[2, :3])  # different rounds, different colours
    assert ring[0, 3] == 1.0 and ring[2, 3] < 1.0  # sequenced opaque, pending faded
    face = np.asarray(kw["face_color"])
    assert face[0, 3] == 0 and face[2, 3] == 0  # rings: transparent inside
    np.testing.assert_allclose(face[1, :3], hex_to_rgba(MANUAL_COLOR)[:3])  # manual: white star
    d = section.uns["spatial"]["SYN1"]["scalefactors"]["spot_diameter_fullres"]
    size = np.asarray(kw["size"])
    assert size[1] > size[0] > d  # rings larger than a spot, manual stars larger still
    assert list(kw["features"]["picked_by"]) == ["policy", "manual", "policy"]
    md = kw["metadata"]
    assert md["legend"] == {"round 1": round_color(0), "round 2": round_color(1)} and md["map"] == "selected"
    assert list(kw["features"]["round"]) == [1, 2, 2]  # shown on hover: counted from 1
    assert md["n_manual"] == 1 and md["n_selected"] == 3 and md["budget"] == 12
    assert md["index"].tolist() == [3, 5, 9]
    empty, kw0, _ = selection_layer(section, _selection(n, []))
    assert empty.shape == (0, 2) and len(kw0["features"]) == 0


def test_expression_layer_predicted_and_measured(section):
    s = section.copy()
    n = s.n_obs
    s.obsm["X_pred"] = pd.DataFrame({"ERBB2": np.linspace(0, 5, n), "CD3E": 1.0}, index=s.obs_names)
    v = expression_values(s, "ERBB2")
    data, kw, _ = expression_layer(s, "ERBB2", v, colormap="viridis")
    assert kw["face_colormap"] == "viridis" and kw["face_color"] == "value"
    assert kw["name"] == expression_layer_name("SYN1", "ERBB2", "predicted") == "SYN1 · ERBB2 · predicted"
    lo, hi = kw["face_contrast_limits"]
    assert 0 <= lo < hi <= 5 and kw["metadata"]["colorbar"] and len(data) == n
    assert kw["metadata"]["title"].splitlines() == ["ERBB2 · predicted", "log1p normalised counts"]
    with pytest.raises(KeyError, match="not in the predicted panel"):
        expression_values(s, "NOPE")
    mask = np.zeros(n, bool)
    mask[:10] = True
    mv = expression_values(s, "ERBB2", source="measured", measured=mask)
    assert np.isnan(mv[10:]).all() and np.isfinite(mv[:10]).all()
    # measured values are the package's log1p-normalised scale
    from napari_scr2st.data.expression import log1p_normalized

    np.testing.assert_allclose(mv[:10], log1p_normalized(s, ["ERBB2"])[:10, 0], rtol=1e-6)
    np.testing.assert_allclose(measured_expression(s, "ERBB2", mask), mv)
    data2, kw2, _ = expression_layer(s, "ERBB2", mv, source="measured", contrast_limits=(0, 3))
    assert kw2["face_contrast_limits"] == (0.0, 3.0) and kw2["name"] == "SYN1 · ERBB2 · measured"
    assert kw2["metadata"]["source"] == "measured"
    assert f"10 of {n} spots sequenced" in kw2["metadata"]["title"]


def test_expression_layer_leaves_missing_values_out(section):
    """NaN (not sequenced) spots are not in the layer at all, so nothing draws them (on magma a
    drawn NaN spot read as the lowest expression, black)."""
    n = section.n_obs
    v = np.full(n, np.nan, np.float32)
    v[[2, 7, 11]] = [0.5, 1.5, 3.0]
    data, kw, _ = expression_layer(section, "ERBB2", v, source="measured")
    np.testing.assert_allclose(data, spot_yx(section)[[2, 7, 11]])
    assert kw["metadata"]["index"].tolist() == [2, 7, 11]
    assert kw["features"]["value"].tolist() == [0.5, 1.5, 3.0]
    assert list(kw["features"]["spot_id"]) == list(section.obs_names[[2, 7, 11]])
    assert np.isfinite(kw["features"]["value"]).all() and "shown" not in kw
    empty, kw0, _ = expression_layer(section, "ERBB2", np.full(n, np.nan, np.float32))
    assert empty.shape == (0, 2) and kw0["face_contrast_limits"] == (0.0, 1.0)


def test_celltype_layer_has_legend_and_rgba(section):
    n = section.n_obs
    ct = np.array(["B-cells", "T-cells", ""] * (n // 3) + ["B-cells"] * (n % 3), dtype=object)
    data, kw, _ = celltype_layer(section, ct)
    assert list(kw["metadata"]["legend"]) == ["B-cells", "T-cells"]
    face = kw["face_color"]
    assert face.shape == (n, 4)
    assert np.allclose(face[0], face[3]) and not np.allclose(face[0], face[1])
    assert (~kw["shown"]).sum() == (ct == "").sum()
    assert (face[ct == "", 3] == 0).all() and (face[ct != "", 3] == 1).all()  # unknown: transparent
    np.testing.assert_allclose(face[0], hex_to_rgba(kw["metadata"]["legend"]["B-cells"]))


def test_roi_layers_and_point_in_shape():
    data, kw, kind = roi_layer("exclude", library="SYN1")
    assert kind == "shapes" and data == [] and kw["name"] == "SYN1 exclude ROI"
    with pytest.raises(ValueError):
        roi_layer("maybe", library="SYN1")
    pts = np.array([[5, 5], [15, 5], [5, 15], [45, 45], [100, 100]], float)
    square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)
    tri = np.array([[40, 40], [60, 40], [40, 60]], float)
    ell = np.array([[90, 90], [90, 110], [110, 110], [110, 90]], float)  # circle r=10 at 100,100
    m = spots_in_shapes(pts, [square, tri, ell], ["rectangle", "polygon", "ellipse"])
    assert m.tolist() == [True, False, False, True, True]
    m2 = spots_in_shapes(pts, [tri], ["polygon"])
    assert m2.tolist() == [False, False, False, True, False]
    assert not spots_in_shapes(pts, [square[:2]], ["line"]).any()


def test_inspect_layer_marks_query_kept_and_filtered(section):
    data, kw, _ = inspect_layer(section, 4, neighbours=[8, 9, -1], kept=[True, False, True])
    assert len(data) == 3
    assert list(kw["features"]["role"]) == ["query", "kept", "filtered"]
    assert kw["symbol"] == ["ring", "ring", "x"]


def test_spot_patch_is_a_square_rgb_crop(section):
    from napari_scr2st.layers import spot_patch

    p = spot_patch(section, 0, out_size=48)
    assert p.shape == (48, 48, 3) and p.dtype == np.uint8
    assert p.std() > 0  # tissue, not a flat fill
    s = section.copy()
    s.uns["spatial"]["SYN1"]["images"] = {}
    assert (spot_patch(s, 0, out_size=16) == 128).all()
