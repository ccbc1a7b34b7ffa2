"""Space Ranger outs/ reader on tiny synthetic runs written in the exact 10x layouts."""

from __future__ import annotations

import numpy as np
import pytest
from _spaceranger import write_spaceranger_outs, write_visium_hd_outs

from napari_scr2st.data.model import (
    SectionError,
    fullres_coordinates,
    get_fullres_image,
    get_lowres_image,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import read_visium


def _grey_at(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    pts = np.rint(xy).astype(int)
    return img[pts[:, 1], pts[:, 0]].astype(float).mean(axis=1)


@pytest.mark.parametrize("positions_format", ["csv", "list"])
def test_read_visium_hires_frame(tmp_path, positions_format):
    truth = write_spaceranger_outs(tmp_path / "s", positions_format=positions_format)
    a = read_visium(truth["outs"])
    validate_section(a)
    hs, ls = truth["hires_scalef"], truth["lowres_scalef"]
    assert list(a.uns["spatial"]) == ["lib1"]
    assert (a.obs["section"] == "lib1").all()
    assert list(a.obs_names) == truth["barcodes"]
    assert list(a.var_names) == ["GENE_A", "GENE_B", "GENE_C", "GENE_D", "GENE_A-1"]
    assert list(a.var["gene_ids"])[0] == "ENSG00000000000"
    np.testing.assert_array_equal(a.X.toarray(), truth["counts"])
    np.testing.assert_array_equal(a.obs["array_row"], truth["array_row"])
    np.testing.assert_array_equal(a.obs["array_col"], truth["array_col"])
    assert (a.obs["in_tissue"] == 1).all()
    # no full-res image given: the frame is the hires image
    np.testing.assert_allclose(a.obsm["spatial"], truth["xy_fullres"] * hs)
    assert spot_diameter_px(a) == pytest.approx(truth["spot_diameter_fullres"] * hs)
    entry = a.uns["spatial"]["lib1"]
    assert entry["metadata"]["frame"] == "tissue_hires_image"
    assert entry["metadata"]["frame_scale"] == pytest.approx(hs)
    assert entry["metadata"]["source_image_path"].endswith("tissue_hires_image.png")
    assert entry["metadata"]["software_version"] == "spaceranger-2.0.0"
    full = get_fullres_image(a)
    assert full.shape == (400, 500, 3) and full.dtype == np.uint8
    assert entry["metadata"]["fullres_shape"] == [400, 500, 3]
    low, s = get_lowres_image(a)
    assert low.dtype == np.uint8 and low.shape == (120, 150, 3)
    assert s == pytest.approx(ls / hs)
    # spots sit on the dark disks in both images, background is light
    assert _grey_at(full, a.obsm["spatial"]).max() < 100
    assert _grey_at(low, a.obsm["spatial"] * s).max() < 120
    assert full[5, 5].mean() > 200


def test_read_visium_with_fullres_image(tmp_path):
    truth = write_spaceranger_outs(tmp_path / "s", write_fullres=True)
    a = read_visium(
        truth["outs"].parent, source_image_path=truth["fullres"], patient="P7", library_id="mine"
    )
    validate_section(a)
    assert list(a.uns["spatial"]) == ["mine"] and (a.obs["patient"] == "P7").all()
    np.testing.assert_allclose(a.obsm["spatial"], truth["xy_fullres"])
    assert spot_diameter_px(a) == pytest.approx(truth["spot_diameter_fullres"])
    entry = a.uns["spatial"]["mine"]
    assert entry["metadata"]["frame"] == "fullres" and entry["metadata"]["frame_scale"] == 1.0
    assert entry["metadata"]["fullres_shape"] == [800, 1000, 3]
    assert entry["scalefactors"]["tissue_hires_scalef"] == pytest.approx(truth["hires_scalef"])
    assert entry["scalefactors"]["tissue_lowres_scalef"] == pytest.approx(truth["lowres_scalef"])
    full = get_fullres_image(a)
    assert full.shape == (800, 1000, 3)
    assert _grey_at(full, a.obsm["spatial"]).max() < 100
    low, s = get_lowres_image(a)
    assert _grey_at(low, a.obsm["spatial"] * s).max() < 120


def test_visium_errors(tmp_path):
    truth = write_spaceranger_outs(tmp_path / "s")
    outs = truth["outs"]
    # not a Space Ranger folder
    with pytest.raises(SectionError, match="no spatial/ sub-folder"):
        read_visium(tmp_path)
    with pytest.raises(SectionError, match="Visium folder not found"):
        read_visium(tmp_path / "missing")
    # unreadable hires image
    hires = outs / "spatial" / "tissue_hires_image.png"
    good = hires.read_bytes()
    hires.write_bytes(good[: len(good) // 2])
    with pytest.raises(SectionError) as ei:
        read_visium(outs)
    assert "cannot read image" in str(ei.value) and str(hires) in str(ei.value)
    hires.write_bytes(good)
    # missing scale factors
    sf = outs / "spatial" / "scalefactors_json.json"
    sf_text = sf.read_text()
    sf.unlink()
    with pytest.raises(SectionError, match="scale factors file not found.*scalefactors_json.json"):
        read_visium(outs)
    sf.write_text("{not json")
    with pytest.raises(SectionError, match="invalid Visium scale factors file"):
        read_visium(outs)
    sf.write_text(sf_text)
    # positions that do not cover the barcodes
    pos = outs / "spatial" / "tissue_positions.csv"
    lines = pos.read_text().splitlines()
    pos.write_text(
        "\n".join(lines[:1] + [line.replace("AAAC", "GGGG") for line in lines[1:]]) + "\n"
    )
    with pytest.raises(SectionError) as ei:
        read_visium(outs)
    assert "have no row in" in str(ei.value) and str(pos) in str(ei.value)
    pos.unlink()
    with pytest.raises(SectionError, match="positions file not found.*tissue_positions.parquet"):
        read_visium(outs)
    # missing matrix
    write_spaceranger_outs(tmp_path / "t")
    (tmp_path / "t" / "outs" / "filtered_feature_bc_matrix.h5").unlink()
    with pytest.raises(SectionError, match="count matrix not found.*filtered_feature_bc_matrix.h5"):
        read_visium(tmp_path / "t")


@pytest.mark.parametrize(
    ("positions_format", "matrix", "filtered"),
    [
        ("list", "h5", True),  # Space Ranger 1.x
        ("csv", "mtx", True),  # 2.x, MEX folder
        ("parquet", "h5", True),  # 3.x
        ("parquet", "mtx", False),  # only raw_feature_bc_matrix/
        ("csv", "h5", False),  # only raw_feature_bc_matrix.h5
    ],
)
def test_spaceranger_layouts(tmp_path, positions_format, matrix, filtered):
    truth = write_spaceranger_outs(
        tmp_path / "s", positions_format=positions_format, matrix=matrix, filtered=filtered
    )
    if filtered:
        a = read_visium(truth["outs"], library_id="lib1")
    else:
        n_in, n_all = len(truth["barcodes"]), truth["n_barcodes"]
        with pytest.warns(UserWarning, match=f"kept {n_in} of {n_all} barcodes under tissue"):
            a = read_visium(truth["outs"], library_id="lib1")
    validate_section(a)
    assert list(a.obs_names) == truth["barcodes"]
    np.testing.assert_array_equal(a.X.toarray(), truth["counts"])
    np.testing.assert_array_equal(a.obs["array_row"], truth["array_row"])
    assert (a.obs["in_tissue"] == 1).all()
    meta = a.uns["spatial"]["lib1"]["metadata"]
    assert meta["positions_path"] == str(truth["positions"].resolve())
    assert meta["microns_per_pixel"] == pytest.approx(65.0 / truth["spot_diameter_fullres"])


@pytest.mark.parametrize("matrix", ["h5", "mtx"])
def test_probe_based_cytassist_run_keeps_gene_expression(tmp_path, matrix):
    truth = write_spaceranger_outs(tmp_path / "s", matrix=matrix, probe=True, cytassist=True)
    a = read_visium(truth["outs"], library_id="lib1")
    assert list(a.var_names) == ["GENE_A", "GENE_B", "GENE_C", "GENE_D", "GENE_A-1"]
    assert set(a.var["feature_types"]) == {"Gene Expression"}  # protein rows dropped
    np.testing.assert_array_equal(a.X.toarray(), truth["counts"])
    if matrix == "h5":  # a probe-style h5: gene ids from features/gene_id, probe ids kept
        assert a.var["gene_ids"].iloc[0] == "ENSG00000000000"
        assert a.var["probe_ids"].iloc[0].startswith("ENSG00000000000|GENE_A|")
    meta = a.uns["spatial"]["lib1"]["metadata"]
    assert meta["cytassist_image_path"].endswith("cytassist_image.tiff")
    # the CytAssist image is recorded, never used as the H&E
    assert meta["source_image_path"].endswith("tissue_hires_image.png")


@pytest.mark.filterwarnings("ignore:.*tissue_lowres_image.png is blank")
def test_blank_images_are_not_used_silently(tmp_path):
    from PIL import Image

    truth = write_spaceranger_outs(tmp_path / "s", write_fullres=True)
    sp_dir = truth["outs"] / "spatial"
    Image.new("RGB", (150, 120), (240, 240, 240)).save(sp_dir / "tissue_lowres_image.png")
    with pytest.warns(UserWarning, match="tissue_lowres_image.png is blank or nearly uniform"):
        read_visium(truth["outs"])
    Image.new("RGB", (500, 400), (0, 0, 0)).save(sp_dir / "tissue_hires_image.png")
    # the section would be built on the blank hires image: refused
    with pytest.raises(SectionError, match="tissue_hires_image.png is blank.*source_image_path"):
        read_visium(truth["outs"])
    # with the full-resolution image named, a blank hires image is only a warning
    with pytest.warns(UserWarning, match="tissue_hires_image.png is blank"):
        a = read_visium(truth["outs"], source_image_path=truth["fullres"])
    np.testing.assert_allclose(a.obsm["spatial"], truth["xy_fullres"])


@pytest.mark.parametrize("bin_size", [2, 8, 16])
def test_visium_hd_bins_are_square_spots(tmp_path, bin_size):
    hd = write_visium_hd_outs(tmp_path / "hd")
    t = hd["bins"][bin_size]
    kw = {} if bin_size == 8 else {"bin_size_um": bin_size}  # 8 um is the default
    a = read_visium(hd["outs"].parent, **kw)
    validate_section(a)
    assert list(a.uns["spatial"]) == ["hd1"]
    assert list(a.obs_names) == t["barcodes"]
    np.testing.assert_array_equal(a.X.toarray(), t["counts"])
    np.testing.assert_array_equal(a.obs["array_col"], t["array_col"])
    meta = a.uns["spatial"]["hd1"]["metadata"]
    assert meta["platform"] == "visium_hd" and meta["spot_shape"] == "square"
    assert meta["bin_size_um"] == bin_size and meta["microns_per_pixel"] == 0.5
    # hires frame: one bin = bin_size / microns_per_pixel full-res px, times the hires scale
    np.testing.assert_allclose(a.obsm["spatial"], t["xy_fullres"] * 0.5)
    assert spot_diameter_px(a) == pytest.approx(t["bin_px"] * 0.5)
    xy_px, xy_um = fullres_coordinates(a)
    np.testing.assert_allclose(xy_px, t["xy_fullres"])
    np.testing.assert_allclose(xy_um, t["xy_fullres"] * 0.5)
    # tissue bins sit on the dark tissue of the hires image
    assert _grey_at(get_fullres_image(a), a.obsm["spatial"]).max() < 100


def test_visium_hd_unknown_bin_size_lists_the_bins(tmp_path):
    hd = write_visium_hd_outs(tmp_path / "hd", bins=(2, 16))
    with pytest.raises(SectionError, match=r"no 8 um bins .*bin sizes present: 2 um, 16 um"):
        read_visium(hd["outs"])
    assert read_visium(hd["outs"], bin_size_um=16).n_obs == len(hd["bins"][16]["barcodes"])
