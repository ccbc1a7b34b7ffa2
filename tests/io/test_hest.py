"""HEST-1k samples: st/{id}.h5ad + wsis/{id}.tif + metadata/{id}.json -> section."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_scr2st.data.model import (
    SectionError,
    get_lowres_image,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import read, read_collection, read_hest, sniff

H, W = 600, 800
N = 24


def _sample(root, sid="TENX01", *, wsi=True, diameter_in_h5ad=True, meta_extra=None):
    rng = np.random.default_rng(1)
    for d in ("st", "wsis", "metadata"):
        (root / d).mkdir(parents=True, exist_ok=True)
    gx, gy = np.meshgrid(np.arange(6) * 100.0 + 150, np.arange(4) * 100.0 + 120)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    counts = rng.poisson(4, (N, 15)).astype(np.float32)
    obs = pd.DataFrame({"in_tissue": np.ones(N, int), "array_row": np.repeat(np.arange(4), 6),
                        "array_col": np.tile(np.arange(6) * 2, 4),
                        "pxl_col_in_fullres": xy[:, 0], "pxl_row_in_fullres": xy[:, 1]},
                       index=[f"bc{i}" for i in range(N)])
    a = ad.AnnData(X=sp.csr_matrix(counts), obs=obs,
                   var=pd.DataFrame({"gene_ids": [f"ENSG{i:011d}" for i in range(15)]},
                                    index=[f"G{i}" for i in range(15)]))
    a.obsm["spatial"] = xy
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    sf = {"tissue_downscaled_fullres_scalef": 0.1}
    if diameter_in_h5ad:
        sf["spot_diameter_fullres"] = 55.0
    a.uns["spatial"] = {"ST": {"images": {"downscaled_fullres": img[::10, ::10].copy()}, "scalefactors": sf}}
    a.write_h5ad(root / "st" / f"{sid}.h5ad")
    if wsi:
        import tifffile

        tifffile.imwrite(root / "wsis" / f"{sid}.tif", img, photometric="rgb", tile=(256, 256))
    meta = {"id": sid, "patient": "P7", "tissue": "Breast", "species": "Homo sapiens", "st_technology": "Visium",
            "pixel_size_um_embedded": 0.25, "pixel_size_um_estimated": 0.5, "spot_diameter": 55.0,
            "inter_spot_dist": 100.0, "magnification": "40x", "fullres_px_width": W, "fullres_px_height": H}
    meta.update(meta_extra or {})
    (root / "metadata" / f"{sid}.json").write_text(json.dumps(meta))
    return counts, xy


def test_read_hest_sample(tmp_path):
    counts, xy = _sample(tmp_path)
    assert sniff(tmp_path) == "hest"
    a = read_hest(tmp_path, "TENX01")
    validate_section(a)
    assert list(a.uns["spatial"]) == ["TENX01"] and (a.obs["patient"] == "P7").all()
    assert np.array_equal(a.X.toarray(), counts) and np.allclose(a.obsm["spatial"], xy)
    assert spot_diameter_px(a) == 55.0
    assert list(a.obs["array_col"][:3]) == [0, 2, 4] and "in_tissue" in a.obs
    entry = a.uns["spatial"]["TENX01"]
    meta = entry["metadata"]
    assert meta["source_image_path"] == str((tmp_path / "wsis" / "TENX01.tif").resolve())
    assert meta["fullres_shape"] == [H, W, 3]
    assert meta["um_per_px"] == 0.5 and meta["um_per_px_from"] == "pixel_size_um_estimated"
    assert entry["scalefactors"]["microns_per_pixel"] == 0.5
    assert meta["hest"]["tissue"] == "Breast" and meta["hest"]["inter_spot_dist"] == 100.0
    low, s = get_lowres_image(a)
    assert low.shape == (60, 80, 3) and s == pytest.approx(0.1)
    assert list(a.var["gene_ids"][:1]) == ["ENSG00000000000"]
    # the only sample is read without naming it; read() dispatches
    assert read(tmp_path).n_obs == N


def test_hest_diameter_from_metadata_and_no_wsi(tmp_path):
    _sample(tmp_path, "S2", wsi=False, diameter_in_h5ad=False, meta_extra={"pixel_size_um_estimated": None})
    a = read_hest(tmp_path, "S2")
    assert spot_diameter_px(a) == pytest.approx(55.0 / 0.25)  # um / embedded pixel size
    meta = a.uns["spatial"]["S2"]["metadata"]
    assert meta["source_image_path"] == "" and meta["um_per_px_from"] == "pixel_size_um_embedded"
    assert meta["fullres_shape"] == [H, W, 3]


def test_hest_several_samples_and_errors(tmp_path):
    _sample(tmp_path, "A")
    _sample(tmp_path, "B")
    with pytest.raises(SectionError, match=r"2 HEST samples \(A, B\); name one with section="):
        read_hest(tmp_path)
    assert set(read_collection(tmp_path)) == {"A", "B"}
    assert list(read(tmp_path, section=["B"])) == ["B"]
    with pytest.raises(SectionError, match=r"st/C\.h5ad; samples in .*: A, B"):
        read_hest(tmp_path, "C")
    (tmp_path / "metadata" / "B.json").write_text("{not json")
    with pytest.raises(SectionError, match=r"invalid HEST metadata file .*B\.json"):
        read_hest(tmp_path, "B")
    (tmp_path / "metadata" / "B.json").unlink()
    with pytest.raises(SectionError, match=r"HEST metadata file not found: .*B\.json"):
        read_hest(tmp_path, "B")
    (tmp_path / "wsis" / "A.tif").write_bytes(b"not a tiff")
    with pytest.raises(SectionError, match=r"cannot read image .*A\.tif"):
        read_hest(tmp_path, "A")


def test_hest_spots_outside_wsi_and_log_counts(tmp_path):
    _sample(tmp_path, "A")
    a = ad.read_h5ad(tmp_path / "st" / "A.h5ad")
    a.obsm["spatial"] = a.obsm["spatial"] * 2.0  # e.g. coordinates of another level
    a.write_h5ad(tmp_path / "st" / "A.h5ad")
    with pytest.raises(SectionError, match=r"lie outside the image .*A\.tif"):
        read_hest(tmp_path, "A")
    a.obsm["spatial"] = a.obsm["spatial"] / 2.0
    a.X = np.log1p(a.X.toarray())
    a.write_h5ad(tmp_path / "st" / "A.h5ad")
    with pytest.raises(SectionError, match=r"A\.h5ad: X is not raw counts"):
        read_hest(tmp_path, "A")


@pytest.mark.parametrize(("sid", "wsi", "mpp"), [("TENX01", True, 0.5), ("S2", False, 0.25)])
def test_hest_export_gives_the_samples_fullres_pixels_and_um(tmp_path, sid, wsi, mpp):
    """Exported centres are the sample's own full-resolution pixels (obs pxl_col/row_in_fullres
    of st/{id}.h5ad), micrometres use the metadata's pixel size (estimated, else embedded)."""
    from types import SimpleNamespace

    from napari_scr2st.io.export import read_selection_csv, selection_table, write_selection_csv

    _sample(tmp_path, sid, wsi=wsi, meta_extra=None if wsi else {"pixel_size_um_estimated": None})
    a = read_hest(tmp_path, sid)
    n = a.n_obs
    sel = SimpleNamespace(round=np.zeros(n, int), source=np.full(n, "random", dtype=object),
                          measured=np.zeros(n, bool), rank=np.arange(n), score=np.zeros(n))
    df = read_selection_csv(write_selection_csv(selection_table(a, sel), tmp_path / "lab.csv"))
    src = ad.read_h5ad(tmp_path / "st" / f"{sid}.h5ad").obs.loc[df["spot_id"]]
    np.testing.assert_allclose(df["pixel_x"], src["pxl_col_in_fullres"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(df["pixel_y"], src["pxl_row_in_fullres"], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(df["array_col"], src["array_col"])
    np.testing.assert_allclose(df[["x_um", "y_um"]], src[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy() * mpp)
