"""Exports give spot centres in the ORIGINAL full-resolution pixels (and micrometres) for
every reader, checked against each source's own full-resolution coordinates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _slides import tissue_image, write_ome_pyramid
from _spaceranger import write_spaceranger_outs, write_visium_hd_outs
from PIL import Image
from scipy.spatial import cKDTree

from napari_scr2st.data.model import SectionError, concat_sections, fullres_coordinates
from napari_scr2st.io import read, read_h5ad_section, read_her2st, read_visium, write_h5ad_section
from napari_scr2st.io.export import (
    read_selection_csv,
    selection_geojson,
    selection_table,
    write_selection_csv,
)


def _select_all(adata):
    n = adata.n_obs
    return SimpleNamespace(
        round=np.zeros(n, np.int64),
        source=np.full(n, "random", dtype=object),
        measured=np.zeros(n, bool),
        rank=np.arange(n),
        score=np.zeros(n),
    )


def _spaceranger_fullres(truth) -> pd.DataFrame:
    pos = pd.read_csv(truth["positions"]).set_index("barcode")
    return pos[["pxl_col_in_fullres", "pxl_row_in_fullres"]].astype(float)


def test_visium_hires_frame_exports_spaceranger_fullres(tmp_path):
    truth = write_spaceranger_outs(tmp_path / "s", hires_scalef=0.15)
    a = read_visium(truth["outs"])
    assert not np.allclose(a.obsm["spatial"], truth["xy_fullres"])  # displayed in hires pixels
    df = selection_table(a, _select_all(a))
    src = _spaceranger_fullres(truth).loc[df["spot_id"]]
    np.testing.assert_allclose(df["pixel_x"], src["pxl_col_in_fullres"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["pixel_y"], src["pxl_row_in_fullres"], rtol=0, atol=1e-9)
    mpp = 65.0 / truth["spot_diameter_fullres"]
    np.testing.assert_allclose(df[["x_um", "y_um"]], src.to_numpy() * mpp)
    assert df["spot_id"].tolist() == truth["barcodes"]
    np.testing.assert_array_equal(df["array_row"], truth["array_row"])
    pt = selection_geojson(df)["features"][0]["geometry"]["coordinates"]
    assert pt == pytest.approx(src.iloc[0].tolist())


def test_visium_fullres_frame_and_h5ad_round_trip(tmp_path):
    truth = write_spaceranger_outs(tmp_path / "s", write_fullres=True)
    src = _spaceranger_fullres(truth).loc[truth["barcodes"]].to_numpy()
    hires = read_visium(truth["outs"], library_id="H")
    full = read_visium(truth["outs"], library_id="F", source_image_path=truth["fullres"])
    for a in (hires, full):
        back = read_h5ad_section(
            write_h5ad_section(a, tmp_path / f"{a.obs['section'].iloc[0]}.h5ad")
        )
        for b in (a, back):
            df = selection_table(b, _select_all(b))
            np.testing.assert_allclose(df[["pixel_x", "pixel_y"]], src, atol=1e-9)
    # a concatenated collection keeps each library's frame
    both = concat_sections({"H": hires, "F": full})
    px, um = fullres_coordinates(both)
    np.testing.assert_allclose(px, np.vstack([src, src]), atol=1e-9)
    assert np.isfinite(um).all()


def test_squidpy_h5ad_is_taken_as_original_frame(tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    xy = np.array([[10.0, 20.0], [30.0, 20.0], [20.0, 37.3]])
    a = ad.AnnData(sp.csr_matrix(np.ones((3, 2), np.float32)))
    a.obsm["spatial"] = xy
    a.uns["spatial"] = {
        "L": {"images": {}, "scalefactors": {"spot_diameter_fullres": 8.0}, "metadata": {}}
    }
    a.write_h5ad(tmp_path / "sq.h5ad")
    b = read_h5ad_section(tmp_path / "sq.h5ad")
    df = selection_table(b, _select_all(b))
    np.testing.assert_array_equal(df[["pixel_x", "pixel_y"]], xy)
    assert df["x_um"].isna().all()  # scale unknown: empty, not a guess
    b.uns["spatial"]["L"]["metadata"]["frame_scale"] = 0.0
    with pytest.raises(
        SectionError, match=r"\['L'\]\['metadata'\]\['frame_scale'\] must be a positive"
    ):
        fullres_coordinates(b)


def test_her2st_exports_the_spot_file_pixels(her2st_root):
    a = read_her2st(her2st_root, "C5", load_image=False, annotations=False)
    df = selection_table(a, _select_all(a))
    spots = pd.read_csv(her2st_root / "data/ST-spotfiles/C5_selection.tsv", sep="\t")
    spots.index = [f"{x}x{y}" for x, y in zip(spots["x"], spots["y"], strict=True)]
    src = spots.loc[df["spot_id"]]
    np.testing.assert_array_equal(df["pixel_x"], src["pixel_x"])
    np.testing.assert_array_equal(df["pixel_y"], src["pixel_y"])
    np.testing.assert_array_equal(df["array_col"], src["x"])
    # micrometres: lattice neighbours one array step apart in x are 200 um apart
    um = pd.DataFrame(df[["x_um", "y_um"]].to_numpy(), index=df["spot_id"])
    right = [f"{x + 1}x{y}" for x, y in zip(df["array_col"], df["array_row"], strict=True)]
    has = np.isin(right, um.index)
    step = np.linalg.norm(um.loc[np.asarray(right)[has]].to_numpy() - um[has].to_numpy(), axis=1)
    assert has.sum() > 100 and np.median(step) == pytest.approx(200.0, rel=0.02)


def _exported(adata, tmp_path) -> pd.DataFrame:
    """Every spot selected, written as the lab's CSV and read back (the file the lab gets);
    the QuPath GeoJSON points are checked to match the CSV."""
    df = read_selection_csv(write_selection_csv(selection_table(adata, _select_all(adata)), tmp_path / "lab.csv"))
    pts = [f["geometry"]["coordinates"] for f in selection_geojson(df)["features"]]
    np.testing.assert_allclose(pts, df[["pixel_x", "pixel_y"]].to_numpy(), rtol=0, atol=1e-6)
    return df


@pytest.mark.parametrize("kind", ["ome-pyramid", "png"])
def test_new_slide_exports_the_lattice_in_fullres_pixels_and_um(tmp_path, kind):
    """A slide before sequencing: the exported centres are the lattice positions in the image's
    full-resolution pixels (not the thumbnail's), micrometres = pixels * um_per_px."""
    from napari_scr2st.io.slide import read_slide, spot_lattice

    H, W = (2200, 2600) if kind == "ome-pyramid" else (500, 700)
    img = tissue_image(H, W, seed=4)
    if kind == "ome-pyramid":  # larger than the thumbnail: the thumbnail frame differs
        path, mpp, platform = tmp_path / "S7.ome.tif", 0.5, "visium"
        write_ome_pyramid(path, img, um_per_px=mpp)
        a = read_slide(path, platform=platform)  # the scale from the OME metadata
        assert a.uns["spatial"]["S7"]["scalefactors"]["tissue_lowres_scalef"] < 1
    else:
        path, mpp, platform = tmp_path / "S8.png", 4.0, "legacy_st"
        Image.fromarray(img).save(path)
        a = read_slide(path, platform=platform, um_per_px=mpp)
    df = _exported(a, tmp_path)
    full = spot_lattice((H, W), mpp, platform=platform).spots  # every position, no tissue filter
    assert len(df) > 10 and set(df["spot_id"]) <= set(full.index)
    src = full.loc[df["spot_id"]]
    np.testing.assert_allclose(df["pixel_x"], src["pixel_x"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(df["pixel_y"], src["pixel_y"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(df["array_row"], src["array_row"])
    np.testing.assert_allclose(df[["x_um", "y_um"]], src[["pixel_x", "pixel_y"]].to_numpy() * mpp, rtol=1e-12)
    pitch_um = {"visium": 100.0, "legacy_st": 200.0}[platform]
    d, _ = cKDTree(df[["x_um", "y_um"]].to_numpy()).query(df[["x_um", "y_um"]].to_numpy(), k=2)
    assert np.median(d[:, 1]) == pytest.approx(pitch_um, rel=1e-6)  # the platform's pitch in um


@pytest.mark.parametrize("bin_um", [8, 16])
def test_visium_hd_exports_the_bins_fullres_positions(tmp_path, bin_um):
    """Visium HD bins: exported centres are the bins' full-resolution positions of
    ``binned_outputs/square_NNNum/spatial/tissue_positions.parquet``; micrometres use the
    scale factors' ``microns_per_pixel``."""
    t = write_visium_hd_outs(tmp_path / "hd", microns_per_pixel=0.5)
    a = read(t["outs"], bin_size_um=bin_um)
    assert a.uns["spatial"][a.obs["section"].iloc[0]]["metadata"]["frame_scale"] != 1.0  # works in hires px
    df = _exported(a, tmp_path)
    pos = pd.read_parquet(t["outs"] / "binned_outputs" / f"square_{bin_um:03d}um" / "spatial" / "tissue_positions.parquet")
    pos = pos.set_index("barcode")
    assert len(df) == int(pos["in_tissue"].sum()) and set(df["spot_id"]) == set(pos.index[pos["in_tissue"] == 1])
    src = pos.loc[df["spot_id"]]
    np.testing.assert_allclose(df["pixel_x"], src["pxl_col_in_fullres"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["pixel_y"], src["pxl_row_in_fullres"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(df["array_row"], src["array_row"])
    np.testing.assert_array_equal(df["array_col"], src["array_col"])
    np.testing.assert_allclose(df[["x_um", "y_um"]], src[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy() * 0.5)


@pytest.mark.parametrize("lowres_only", [False, True])
def test_visium_through_a_spatialdata_store_keeps_spaceranger_fullres(tmp_path, lowres_only):
    """A Visium section (working in hires pixels) written as a SpatialData store and read back:
    the exports still give Space Ranger's full-resolution pixels and micrometres."""
    import warnings

    from napari_scr2st.io.spatialdata import read_spatialdata, write_spatialdata

    truth = write_spaceranger_outs(tmp_path / "s", hires_scalef=0.15)
    a = read_visium(truth["outs"])
    if lowres_only:  # no full image, only a half-size copy: the store scales it into 'global'
        entry = a.uns["spatial"]["lib1"]
        entry["metadata"]["source_image_path"] = ""
        entry["images"] = {"lowres": np.ascontiguousarray(entry["images"]["lowres"][::2, ::2])}
        entry["scalefactors"]["tissue_lowres_scalef"] = 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = read_spatialdata(write_spatialdata(a, tmp_path / "v.zarr"))
    np.testing.assert_allclose(b.obsm["spatial"], a.obsm["spatial"] * (0.5 if lowres_only else 1.0))
    assert not np.allclose(b.obsm["spatial"], truth["xy_fullres"])  # not Space Ranger's frame itself
    df = _exported(b, tmp_path)
    src = _spaceranger_fullres(truth).loc[df["spot_id"]]
    np.testing.assert_allclose(df["pixel_x"], src["pxl_col_in_fullres"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(df["pixel_y"], src["pxl_row_in_fullres"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(df[["x_um", "y_um"]], src.to_numpy() * 65.0 / truth["spot_diameter_fullres"])
