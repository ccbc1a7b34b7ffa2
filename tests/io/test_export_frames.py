"""Exports give spot centres in the ORIGINAL full-resolution pixels (and micrometres) for
every reader, checked against each source's own full-resolution coordinates."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from _spaceranger import write_spaceranger_outs

from napari_scr2st.data.model import SectionError, concat_sections, fullres_coordinates
from napari_scr2st.io import read_h5ad_section, read_her2st, read_visium, write_h5ad_section
from napari_scr2st.io.export import selection_geojson, selection_table


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
