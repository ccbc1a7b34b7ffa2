"""Space Ranger outs/ reader on a tiny synthetic run written in the 10x layout."""

from __future__ import annotations

import numpy as np
import pytest
from _spaceranger import write_spaceranger_outs

from napari_scr2st.data.model import (
    SectionError,
    get_fullres_image,
    get_lowres_image,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import read_visium


def _grey_at(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    pts = np.rint(xy).astype(int)
    return img[pts[:, 1], pts[:, 0]].astype(float).mean(axis=1)


@pytest.mark.parametrize("positions_format", ["new", "old"])
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
    with pytest.raises(SectionError, match="positions file"):
        read_visium(outs)
    # missing matrix
    write_spaceranger_outs(tmp_path / "t")
    (tmp_path / "t" / "outs" / "filtered_feature_bc_matrix.h5").unlink()
    with pytest.raises(SectionError, match="count matrix not found.*filtered_feature_bc_matrix.h5"):
        read_visium(tmp_path / "t")
