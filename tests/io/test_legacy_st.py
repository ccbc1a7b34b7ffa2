"""Legacy ST / her2st reader on the real her2st data (C3 with image, B4, A1 without image)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.spatial import cKDTree

from napari_scr2st.data.model import (
    get_fullres_image,
    get_lowres_image,
    library_id,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import list_her2st_sections, read_collection, read_her2st, read_legacy_st
from napari_scr2st.io.legacy_st import estimate_pixel_pitch, her2st_paths


def _patch_means(grey: np.ndarray, pts: np.ndarray, r: int) -> np.ndarray:
    out = []
    for x, y in np.rint(pts).astype(int):
        p = grey[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        if p.size:
            out.append(p.mean())
    return np.asarray(out)


def _darkness_contrast(adata, xy_fullres: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Mean grey under spot centres vs at random points far (> 2 pitches) from any spot."""
    img, scale = get_lowres_image(adata)
    grey = img.astype(float).mean(axis=2)
    xy = xy_fullres * scale
    r = max(2, int(spot_diameter_px(adata) * scale / 4))
    pitch = adata.uns["spatial"][library_id(adata)]["metadata"]["pixel_pitch"] * scale
    h, w = grey.shape
    cand = np.random.default_rng(seed).uniform([0, 0], [w, h], size=(5000, 2))
    d, _ = cKDTree(adata.obsm["spatial"] * scale).query(cand)
    far = cand[d > 2 * pitch][:300]
    assert len(far) >= 100
    return float(_patch_means(grey, xy, r).mean()), float(_patch_means(grey, far, r).mean())


def test_c3_shape_and_fields(c3, her2st_root):
    validate_section(c3)
    assert c3.n_obs == 180
    assert c3.n_vars > 10_000
    assert list(c3.uns["spatial"]) == ["C3"]
    assert (c3.obs["section"] == "C3").all()
    assert (c3.obs["patient"] == "C").all()
    # spot ids "{x}x{y}", array_col = x, array_row = y
    ids = c3.obs_names.str.split("x", expand=True).to_frame().astype(int).to_numpy()
    np.testing.assert_array_equal(c3.obs["array_col"].to_numpy(), ids[:, 0])
    np.testing.assert_array_equal(c3.obs["array_row"].to_numpy(), ids[:, 1])
    # obsm["spatial"] = (pixel_x, pixel_y) of the spot file
    spots = pd.read_csv(her2st_root / "data/ST-spotfiles/C3_selection.tsv", sep="\t")
    spots.index = [f"{x}x{y}" for x, y in zip(spots.x, spots.y, strict=True)]
    np.testing.assert_allclose(
        c3.obsm["spatial"], spots.loc[c3.obs_names, ["pixel_x", "pixel_y"]].to_numpy()
    )
    # raw integer counts, sparse, equal to the file
    assert sp.isspmatrix_csr(c3.X) or sp.issparse(c3.X)
    assert np.all(np.mod(c3.X.data, 1) == 0) and c3.X.data.min() > 0
    raw = pd.read_csv(her2st_root / "data/ST-cnts/C3.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_array_equal(
        np.asarray(c3.X.sum(axis=1)).ravel(), raw.loc[c3.obs_names].sum(axis=1).to_numpy()
    )
    j = c3.var_names.get_loc("ERBB2")
    np.testing.assert_array_equal(
        c3.X[:, j].toarray().ravel(), raw.loc[c3.obs_names, "ERBB2"].to_numpy()
    )


def test_c3_image_and_scalefactors(c3):
    entry = c3.uns["spatial"]["C3"]
    sf, meta = entry["scalefactors"], entry["metadata"]
    assert 120 <= sf["spot_diameter_fullres"] <= 170
    assert 270 <= meta["pixel_pitch"] <= 310
    low = entry["images"]["lowres"]
    assert low.dtype == np.uint8 and low.ndim == 3 and low.shape[2] == 3
    assert max(low.shape[:2]) <= 2000
    assert "hires" not in entry["images"]  # the full image is not stored twice
    h, w = meta["fullres_shape"][:2]
    assert sf["tissue_lowres_scalef"] == pytest.approx(low.shape[0] / h, rel=1e-3)
    assert meta["source_image_path"].endswith(".jpg")
    full = get_fullres_image(c3)
    assert full.shape == (h, w, 3) and (h, w) == (9936, 9270)
    # all spots inside the image
    xy = c3.obsm["spatial"]
    assert (xy >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] < h).all()


def test_c3_spots_lie_on_tissue(c3):
    """H&E tissue is darker than the background glass: under spots vs far from any spot."""
    on, off = _darkness_contrast(c3, c3.obsm["spatial"])
    assert on < off - 40, (on, off)
    # a wrong convention (x and y swapped) loses most of the contrast
    swapped, _ = _darkness_contrast(c3, c3.obsm["spatial"][:, ::-1])
    assert on < swapped - 15, (on, swapped)


def test_c3_annotations(c3):
    cl = c3.obs["her2st_cluster"]
    assert isinstance(cl.dtype, pd.CategoricalDtype)
    assert cl.notna().sum() == 179  # one spot has no cluster label in the authors' file
    assert set(cl.dropna().unique()) == {str(i) for i in range(7)}
    props = c3.obsm["stereoscope_major"]
    assert isinstance(props, pd.DataFrame)
    assert list(props.index) == list(c3.obs_names)
    assert {
        "B-cells",
        "CAFs",
        "Endothelial",
        "Epithelial",
        "Myeloid",
        "Plasma Cells",
        "PVL",
        "T-cells",
    } == set(props.columns)
    np.testing.assert_allclose(props.dropna().sum(axis=1), 1.0, atol=1e-3)


def test_b4_reads_with_image(her2st_root):
    b4 = read_her2st(her2st_root, "B4", annotations=False)
    validate_section(b4)
    assert b4.n_obs == 283
    assert (b4.obs["patient"] == "B").all()
    assert "lowres" in b4.uns["spatial"]["B4"]["images"]
    assert 120 <= spot_diameter_px(b4) <= 170
    on, off = _darkness_contrast(b4, b4.obsm["spatial"])
    assert on < off - 20, (on, off)
    assert "her2st_cluster" not in b4.obs and "stereoscope_major" not in b4.obsm


def test_a1_reads_without_image(her2st_root):
    a1 = read_her2st(her2st_root, "A1")
    validate_section(a1)
    assert a1.n_obs == 346
    assert (a1.obs["patient"] == "A").all()
    entry = a1.uns["spatial"]["A1"]
    assert entry["images"] == {}
    assert entry["metadata"]["source_image_path"] == ""
    assert get_fullres_image(a1) is None and get_lowres_image(a1) is None
    assert "stereoscope_major" in a1.obsm and "her2st_cluster" in a1.obs


def test_read_legacy_st_explicit_paths(her2st_root, tmp_path):
    """Outside the her2st layout: explicit paths, section from the file name, no annotations."""
    shutil.copy(her2st_root / "data/ST-cnts/C2.tsv.gz", tmp_path / "C2.tsv.gz")
    shutil.copy(her2st_root / "data/ST-spotfiles/C2_selection.tsv", tmp_path / "spots.tsv")
    a = read_legacy_st(tmp_path / "C2.tsv.gz", tmp_path / "spots.tsv", patient="pC")
    validate_section(a)
    assert a.n_obs == 187
    assert list(a.uns["spatial"]) == ["C2"]
    assert (a.obs["patient"] == "pC").all()
    assert a.uns["spatial"]["C2"]["images"] == {}
    assert 120 <= spot_diameter_px(a) <= 170
    assert "her2st_cluster" not in a.obs
    # the physical spot geometry sets the diameter: half the pitch by default, here 55/100
    b = read_legacy_st(
        tmp_path / "C2.tsv.gz", tmp_path / "spots.tsv", spot_diameter_um=55, center_distance_um=100
    )
    assert spot_diameter_px(b) == pytest.approx(spot_diameter_px(a) * 1.1)


def test_selected_column_is_honoured(tmp_path):
    counts = "\tG1\tG2\n1x1\t1\t2\n1x2\t3\t0\n2x1\t0\t5\n2x2\t4\t4\n"
    spots = "x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n"
    for i, (x, y) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        spots += f"{x}\t{y}\t{x}\t{y}\t{100 * x}\t{100 * y}\t{0 if i == 3 else 1}\n"
    (tmp_path / "S.tsv").write_text(counts)
    (tmp_path / "S_selection.tsv").write_text(spots)
    a = read_legacy_st(tmp_path / "S.tsv", tmp_path / "S_selection.tsv")
    assert list(a.obs_names) == ["1x1", "1x2", "2x1"]
    assert spot_diameter_px(a) == pytest.approx(50.0)
    np.testing.assert_array_equal(a.X.toarray(), [[1, 2], [3, 0], [0, 5]])


def test_pitch_estimate_is_robust():
    g = np.array([(x, y) for x in range(10) for y in range(10)], dtype=float)
    px = g * 290.0 + 50
    px[3] += 80  # one misplaced spot does not move the median
    assert estimate_pixel_pitch(g, px) == pytest.approx(290.0)


def test_her2st_layout_helpers(her2st_root):
    secs = list_her2st_sections(her2st_root)
    assert len(secs) == 36 and secs[0] == "A1" and secs[-1] == "H3"
    paths = her2st_paths(her2st_root, "C3")
    assert paths["image"] is not None and paths["image"].parent.name == "C3"
    assert her2st_paths(her2st_root, "A1")["image"] is None


def test_read_collection_her2st(her2st_root):
    coll = read_collection(her2st_root, sections=["A2", "C4"], load_image=False, annotations=False)
    assert list(coll) == ["A2", "C4"]
    assert coll["C4"].n_obs == 184
    assert coll["C4"].uns["spatial"]["C4"]["metadata"]["available_image_path"].endswith(".jpg")
