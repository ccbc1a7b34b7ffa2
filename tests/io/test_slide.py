"""``io.slide``: a slide before sequencing (tissue, spot lattices, layouts, read_slide)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _slides import tissue_image, tissue_mask, write_ome_pyramid
from PIL import Image
from scipy.spatial import cKDTree

from napari_scr2st.data.model import (
    SectionError,
    get_fullres_image,
    get_fullres_slide,
    validate_section,
)
from napari_scr2st.features.crops import extract_crops, iter_crops
from napari_scr2st.io import read, sniff
from napari_scr2st.io.slide import detect_tissue, read_layout, read_slide, spot_lattice


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    """A 2048 x 2048 pyramidal OME-TIFF at 0.5 um/px with an elliptical tissue."""
    path = tmp_path_factory.mktemp("wsi") / "S1.ome.tif"
    levels = write_ome_pyramid(path, tissue_image(2048, 2048, seed=2), um_per_px=0.5)
    return path, levels[0]


# ------------------------------------------------------------------------------ tissue
def test_detect_tissue_finds_the_tissue():
    img = tissue_image(400, 500, seed=3)
    img[40:46, 40:46] = 60  # a speck of dust: removed as a small object
    truth = tissue_mask(400, 500)
    for method in ("grey", "saturation"):
        m = detect_tissue(img, method=method)
        assert m.shape == truth.shape and m.dtype == bool
        iou = (m & truth).sum() / (m | truth).sum()
        assert iou > 0.95, method
        assert not m[40:46, 40:46].any()
    assert not detect_tissue(np.full((50, 60, 3), 240, np.uint8)).any()


# ------------------------------------------------------------------------------ lattices
def _nn(xy: np.ndarray, k: int) -> np.ndarray:
    d, _ = cKDTree(xy).query(xy, k=k + 1)
    return d[:, 1:]


def test_visium_lattice_is_hexagonal_at_the_right_pitch():
    lat = spot_lattice((3000, 3000), 0.5, platform="visium")
    s = lat.spots
    assert lat.pitch_px == pytest.approx(200.0) and lat.spot_diameter_px == pytest.approx(110.0)
    assert lat.hexagonal
    xy = s[["pixel_x", "pixel_y"]].to_numpy()
    interior = (xy[:, 0] > 400) & (xy[:, 0] < 2600) & (xy[:, 1] > 400) & (xy[:, 1] < 2600)
    d = _nn(xy, 6)[interior]
    np.testing.assert_allclose(d, 200.0, atol=1e-6)  # six neighbours at one pitch
    rows = np.sort(s["pixel_y"].unique())
    np.testing.assert_allclose(np.diff(rows), 200 * np.sqrt(3) / 2)
    x0 = s.loc[s.array_row == 0, "pixel_x"].min()
    x1 = s.loc[s.array_row == 1, "pixel_x"].min()
    assert abs(x1 - x0) == pytest.approx(100.0)  # odd rows offset by half a pitch
    assert ((s.array_row + s.array_col) % 2 == 0).all()
    r, c = s.array_row.iloc[5], s.array_col.iloc[5]
    assert s.index[5] == f"r{r}c{c}"


def test_legacy_st_lattice_is_square_with_her2st_ids():
    lat = spot_lattice((2400, 2000), 1.0, platform="legacy_st")
    s = lat.spots
    assert lat.pitch_px == pytest.approx(200.0) and lat.spot_diameter_px == pytest.approx(100.0)
    assert s.array_col.min() == 1 and s.array_row.min() == 1
    assert (s.index == [f"{c}x{r}" for r, c in zip(s.array_row, s.array_col, strict=True)]).all()
    assert len(s) == 10 * 12
    d = _nn(s[["pixel_x", "pixel_y"]].to_numpy(), 4)
    np.testing.assert_allclose(d[(d[:, 3] < 201)], 200.0)
    margins = (s.pixel_x.min(), 1999 - s.pixel_x.max(), s.pixel_y.min(), 2399 - s.pixel_y.max())
    assert margins[0] == pytest.approx(margins[1]) and margins[2] == pytest.approx(margins[3])


def test_custom_lattice_and_tissue_filter():
    with pytest.raises(SectionError, match="spot_um"):
        spot_lattice((100, 100), 1.0, platform="custom")
    with pytest.raises(SectionError, match="unknown platform"):
        spot_lattice((100, 100), 1.0, platform="slide-seq")
    mask = np.zeros((50, 100), bool)
    mask[:, :50] = True  # left half, at 0.1 mask px per image px
    lat = spot_lattice(
        (500, 1000), 2.0, platform="custom", spot_um=20, pitch_um=60, hexagonal=True,
        tissue=mask, tissue_scale=0.1,
    )  # fmt: skip
    s = lat.spots
    assert lat.pitch_px == pytest.approx(30.0) and lat.spot_diameter_px == pytest.approx(10.0)
    assert len(s) > 100 and (s.pixel_x < 500).all()
    full = spot_lattice((500, 1000), 2.0, platform="custom", spot_um=20, pitch_um=60, hexagonal=True)
    assert len(full.spots) == pytest.approx(2 * len(s), rel=0.1)


# ------------------------------------------------------------------------------ layouts
def test_spaceranger_positions_with_and_without_header(tmp_path):
    rows = [("AAAC-1", 1, 0, 0, 110.5, 220.0), ("AAAG-1", 0, 0, 2, 110.0, 420.0), ("AACT-1", 1, 1, 1, 283.2, 320.0)]
    cols = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]
    df = pd.DataFrame(rows, columns=cols)
    new = tmp_path / "tissue_positions.csv"
    df.to_csv(new, index=False)
    old = tmp_path / "tissue_positions_list.csv"
    df.to_csv(old, index=False, header=False)
    for p in (new, old):
        lay = read_layout(p)
        assert list(lay.index) == ["AAAC-1", "AAAG-1", "AACT-1"]
        np.testing.assert_allclose(lay.pixel_x, [220.0, 420.0, 320.0])
        np.testing.assert_allclose(lay.pixel_y, [110.5, 110.0, 283.2])
        assert list(lay.in_tissue) == [1, 0, 1] and list(lay.array_col) == [0, 2, 1]


def test_generic_layouts(tmp_path):
    p = tmp_path / "layout.csv"
    pd.DataFrame({"spot_id": ["a", "b", "c", "d"], "pixel_x": [10, 30, 10, 30], "pixel_y": [5, 5, 25, 25]}).to_csv(p, index=False)
    lay = read_layout(p)
    assert list(lay.index) == ["a", "b", "c", "d"] and (lay.in_tissue == 1).all()
    assert list(lay.array_row) == [0, 0, 1, 1] and list(lay.array_col) == [0, 1, 0, 1]
    t = tmp_path / "layout.tsv"
    pd.DataFrame({"barcode": ["x", "y"], "pxl_col_in_fullres": [1.5, 2.5], "pxl_row_in_fullres": [3, 4]}).to_csv(t, sep="\t", index=False)
    lay = read_layout(t)
    np.testing.assert_allclose(lay.pixel_x, [1.5, 2.5])
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["a"], "x_px": [1]}).to_csv(bad, index=False)
    with pytest.raises(SectionError, match="bad.csv.*spot id column"):
        read_layout(bad)
    dup = tmp_path / "dup.csv"
    pd.DataFrame({"spot_id": ["a", "a"], "pixel_x": [1, 2], "pixel_y": [1, 2]}).to_csv(dup, index=False)
    with pytest.raises(SectionError, match="dup.csv.*more than once"):
        read_layout(dup)
    nan = tmp_path / "nan.csv"
    nan.write_text("spot_id,pixel_x,pixel_y\na,1,oops\n")
    with pytest.raises(SectionError, match="nan.csv.*pixel_y"):
        read_layout(nan)


# ------------------------------------------------------------------------------ read_slide
def test_read_slide_lattice_on_a_whole_slide(wsi):
    path, full = wsi
    a = read_slide(path, platform="visium")  # scale from the OME metadata
    validate_section(a)
    assert sp.issparse(a.X) and a.X.shape == (a.n_obs, 0)
    assert a.obs["section"].iloc[0] == "S1"
    entry = a.uns["spatial"]["S1"]
    meta, sf = entry["metadata"], entry["scalefactors"]
    assert meta["um_per_px"] == pytest.approx(0.5) and meta["um_per_px_source"] == "file metadata"
    assert meta["platform"] == "visium" and meta["source_image_path"] == str(path.resolve())
    assert sf["spot_diameter_fullres"] == pytest.approx(110.0) and sf["microns_per_pixel"] == 0.5
    low = entry["images"]["lowres"]
    assert low.shape == (2000, 2000, 3) and sf["tissue_lowres_scalef"] == pytest.approx(2000 / 2048)
    xy = a.obsm["spatial"]
    truth = tissue_mask(2048, 2048)
    on = truth[np.rint(xy[:, 1]).astype(int), np.rint(xy[:, 0]).astype(int)]
    assert on.mean() > 0.97
    # about every lattice position over the ellipse: area / (pitch^2 * sqrt(3) / 2)
    expected = truth.sum() / (200**2 * np.sqrt(3) / 2)
    assert 0.8 * expected < a.n_obs < 1.2 * expected

    # the image stays lazy: a dask array / a SlideImage cut region by region
    img = get_fullres_image(a)
    assert not isinstance(img, np.ndarray) and img.shape == (2048, 2048, 3)
    slide = get_fullres_slide(a)
    assert slide.is_lazy and slide.n_levels == 3
    got = np.concatenate([c for _, c in iter_crops(a, crop_px=220, out_size=None, batch_size=7)])
    want = extract_crops(full, xy, 220)
    np.testing.assert_array_equal(got, want)
    edge = np.array([[5.0, 5.0], [2040.0, 1000.0]])
    for mode in ("constant", "reflect"):
        from napari_scr2st.features.crops import extract_crops_from_slide

        np.testing.assert_array_equal(
            extract_crops_from_slide(slide, edge, 64, pad_mode=mode),
            extract_crops(full, edge, 64, pad_mode=mode),
        )


def test_patch_statistics_embedding_on_a_new_slide(wsi):
    from napari_scr2st.features import ensure_vision_embedding

    a = read_slide(wsi[0], platform="legacy_st", um_per_px=0.4)
    assert a.uns["spatial"]["S1"]["metadata"]["um_per_px_source"] == "argument"
    used = ensure_vision_embedding(a, "patch-stats")
    emb = a.obsm["X_vision"]
    assert "patch" in used and emb.shape == (a.n_obs, 20) and np.isfinite(emb).all()
    assert emb.std(axis=0).max() > 0  # spots differ


def test_read_slide_with_a_layout_and_round_trip(wsi, tmp_path):
    import anndata

    from napari_scr2st.io import read_h5ad_section, write_h5ad_section

    path, _ = wsi
    lay = tmp_path / "tissue_positions.csv"
    pd.DataFrame(
        {"barcode": ["A-1", "B-1", "C-1"], "in_tissue": [1, 1, 0], "array_row": [0, 0, 1],
         "array_col": [0, 2, 1], "pxl_row_in_fullres": [800, 800, 973], "pxl_col_in_fullres": [900, 1100, 1000]}
    ).to_csv(lay, index=False)  # fmt: skip
    a = read_slide(path, platform="visium", layout=lay, section="mine")
    assert list(a.obs_names) == ["A-1", "B-1"]
    np.testing.assert_allclose(a.obsm["spatial"], [[900, 800], [1100, 800]])
    assert a.uns["spatial"]["mine"]["metadata"]["layout_path"] == str(lay.resolve())
    out = tmp_path / "mine.h5ad"
    write_h5ad_section(a, out)
    b = anndata.read_h5ad(out)
    validate_section(b)
    assert b.n_obs == 2 and b.n_vars == 0
    assert get_fullres_slide(b).is_lazy
    c = read_h5ad_section(out)  # a section with no genes reads back through the package reader
    assert c.shape == (2, 0) and list(c.obs_names) == ["A-1", "B-1"]
    np.testing.assert_allclose(c.obsm["spatial"], a.obsm["spatial"])
    assert get_fullres_slide(c).is_lazy
    outside = tmp_path / "outside.csv"
    pd.DataFrame({"spot_id": ["z"], "pixel_x": [5000.0], "pixel_y": [10.0]}).to_csv(outside, index=False)
    with pytest.raises(SectionError, match="outside the image"):
        read_slide(path, layout=outside)


def test_missing_scale_asks_for_um_per_px(tmp_path):
    p = tmp_path / "he.png"
    Image.fromarray(tissue_image(200, 300)).save(p)
    with pytest.raises(SectionError, match=r"he.png.*um_per_px.*micrometres per"):
        read_slide(p)
    a = read_slide(p, platform="custom", spot_um=10, pitch_um=20, um_per_px=1.0)
    assert a.n_obs > 20


def test_sniff_and_read_dispatch(wsi, tmp_path):
    path, _ = wsi
    assert sniff(path) == "image"
    j = tmp_path / "x.jpg"
    Image.fromarray(tissue_image(200, 300)).save(j)
    assert sniff(j) == "image"
    a = read(j, platform="legacy_st", um_per_px=0.5, section="J")
    assert a.obs["section"].iloc[0] == "J" and a.n_vars == 0
    (tmp_path / "notes.txt").write_text("x")
    assert sniff(tmp_path / "notes.txt") is None


def test_her2st_c3_image_without_counts(shared_data):
    """The real C3 H&E, no counts: the legacy ST lattice lands where the real spots are."""
    folder = shared_data / "her2st" / "data" / "ST-imgs" / "C" / "C3"
    if not folder.is_dir():
        pytest.skip(f"her2st image folder not found: {folder}")
    jpg = next(folder.glob("*.jpg"))
    a = read_slide(jpg, platform="legacy_st", um_per_px=0.69, section="C3")
    validate_section(a)
    real = pd.read_csv(shared_data / "her2st/data/ST-spotfiles/C3_selection.tsv", sep="\t")
    real = real[real["selected"] == 1]
    pitch = 200 / 0.69
    assert len(real) / 1.5 < a.n_obs < len(real) * 1.5
    real_xy = real[["pixel_x", "pixel_y"]].to_numpy()
    d_lat, _ = cKDTree(real_xy).query(a.obsm["spatial"])
    assert (d_lat < 0.75 * pitch).mean() > 0.9  # lattice spots lie on the real array
    d_real, _ = cKDTree(a.obsm["spatial"]).query(real_xy)
    assert (d_real < 0.75 * pitch).mean() > 0.9  # and cover the real spots under tissue
