"""SpatialData zarr stores: read as a section (frames, circles, counts) and write a run's result."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import spatialdata as sd
from spatialdata.models import Image2DModel, ShapesModel, TableModel
from spatialdata.transformations import Identity, Scale, Translation

from napari_scr2st.data.model import (
    SectionError,
    get_fullres_image,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import read, sniff
from napari_scr2st.io.spatialdata import read_spatialdata, write_spatialdata

N = 30


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _store(tmp_path, *, multiscale=False, extra_image=False, extra_table=False, name="sample1.zarr"):
    """200x200 RGB image scaled 0.5 into 'global'; 30 circles (Identity + translation) and a table.

    Circle i sits at global (x, y) = grid + (5, 10), i.e. image pixel 2 * that; radius 3 global
    units = 6 image pixels.
    """
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (3, 200, 200), dtype=np.uint8)
    img[:, :10, :10] = 7  # a marker in the top-left corner
    image = Image2DModel.parse(img, dims=("c", "y", "x"), scale_factors=[2] if multiscale else None,
                               transformations={"global": Scale([0.5, 0.5], axes=("x", "y"))})
    gx, gy = np.meshgrid(np.arange(6) * 12.0 + 10, np.arange(5) * 15.0 + 10)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    circles = ShapesModel.parse(xy, geometry=0, radius=np.full(N, 3.0), index=pd.Index(np.arange(100, 100 + N)),
                                transformations={"global": Translation([5.0, 10.0], axes=("x", "y"))})
    counts = rng.poisson(3, (N, 12)).astype(np.float32)
    order = rng.permutation(N)  # table rows in another order than the circles
    obs = pd.DataFrame({"region": pd.Categorical(["circles"] * N), "cell_id": (100 + order).astype(int),
                        "cluster": pd.Categorical(np.where(order < 15, "a", "b"))},
                       index=[f"spot{i}" for i in order])
    var = pd.DataFrame({"gene_ids": [f"ENSG{i:011d}" for i in range(12)]}, index=[f"G{i}" for i in range(12)])
    table = TableModel.parse(ad.AnnData(X=sp.csr_matrix(counts[order]), obs=obs, var=var),
                             region="circles", region_key="region", instance_key="cell_id")
    images = {"he": image}
    if extra_image:
        images["if"] = Image2DModel.parse(img[:1], dims=("c", "y", "x"), transformations={"global": Identity()})
    tables = {"counts": table}
    if extra_table:
        tables["other"] = table.copy()
    s = sd.SpatialData(images=images, shapes={"circles": circles}, tables=tables)
    p = tmp_path / name
    s.write(p)
    expected_xy = 2.0 * (xy + [5.0, 10.0])
    return p, expected_xy, counts


def test_read_spatialdata(tmp_path):
    p, exy, counts = _store(tmp_path)
    assert sniff(p) == "spatialdata"
    a = read_spatialdata(p)
    validate_section(a)
    assert a.n_obs == N and list(a.uns["spatial"]) == ["sample1"]
    order = np.array([int(s[4:]) for s in a.obs_names])
    assert np.allclose(a.obsm["spatial"], exy[order])  # centres in image pixels
    assert spot_diameter_px(a) == pytest.approx(12.0)  # 2 * radius 3, image twice finer than global
    assert np.array_equal(a.X.toarray(), counts[order]) and sp.issparse(a.X)
    assert list(a.var["gene_ids"][:2]) == ["ENSG00000000000", "ENSG00000000001"]
    assert list(a.obs["cluster"].unique()) and "cell_id" not in a.obs and "region" not in a.obs
    full = get_fullres_image(a)
    assert full.shape == (200, 200, 3) and (full[:10, :10] == 7).all()
    meta = a.uns["spatial"]["sample1"]["metadata"]
    assert meta["source_path"] == str(p.resolve()) and meta["image"] == "he" and meta["fullres_shape"] == [200, 200, 3]
    assert read(p, section="S9").uns["spatial"].keys() == {"S9"}


def test_read_multiscale_and_choices(tmp_path):
    p, exy, _ = _store(tmp_path, multiscale=True, extra_image=True, extra_table=True)
    with pytest.raises(SectionError, match=r"sample1\.zarr.*2 tables \(counts, other\).*table="):
        read_spatialdata(p)
    with pytest.raises(SectionError, match=r"2 images \(he, if\).*image="):
        read_spatialdata(p, table="counts")
    with pytest.raises(SectionError, match=r"no image 'nope'; available images: he, if"):
        read_spatialdata(p, table="counts", image="nope")
    a = read_spatialdata(p, table="counts", image="he")
    order = np.array([int(s[4:]) for s in a.obs_names])
    assert np.allclose(a.obsm["spatial"], exy[order]) and spot_diameter_px(a) == pytest.approx(12.0)
    b = read_spatialdata(p, table="counts", image="if")  # identity image: global units are its pixels
    assert np.allclose(b.obsm["spatial"], exy[order] / 2) and spot_diameter_px(b) == pytest.approx(6.0)


def test_bad_stores(tmp_path):
    with pytest.raises(SectionError, match="not found"):
        read_spatialdata(tmp_path / "missing.zarr")
    broken = tmp_path / "broken.zarr"
    broken.mkdir()
    (broken / "zarr.json").write_text('{"attributes": {"spatialdata_attrs": {}}, "zarr_format": 3}')
    with pytest.raises(SectionError, match=r"cannot read SpatialData store .*broken\.zarr"):
        read_spatialdata(broken)
    p, _, _ = _store(tmp_path, name="float.zarr")
    s = sd.read_zarr(p)
    t = s.tables["counts"]
    t.X = t.X.log1p()
    s2 = sd.SpatialData(images=dict(s.images), shapes=dict(s.shapes), tables={"counts": t})
    s2.write(tmp_path / "lognorm.zarr")
    with pytest.raises(SectionError, match=r"lognorm\.zarr \(table 'counts'\).*not raw counts"):
        read_spatialdata(tmp_path / "lognorm.zarr")


def _section(tmp_path):
    p, _, _ = _store(tmp_path, name="src.zarr")
    return read_spatialdata(p, section="S1")


def test_write_round_trip(tmp_path):
    a = _section(tmp_path)
    n = a.n_obs
    rnd = np.full(n, -1)
    rnd[[0, 3, 7]] = [0, 0, 1]
    rank = np.full(n, -1)
    rank[[0, 3, 7]] = [0, 1, 2]
    source = np.array([""] * n, dtype=object)
    source[[0, 3, 7]] = ["scrl", "manual", "kcenter"]
    measured = np.zeros(n, bool)
    measured[[0, 3]] = True
    sel = SimpleNamespace(round=rnd, source=source, rank=rank, measured=measured, score=None)
    genes = ["G1", "G4"]
    pred = pd.DataFrame(np.arange(n * 2, dtype=float).reshape(n, 2), index=a.obs_names, columns=genes)
    out = write_spatialdata(a, tmp_path / "result.zarr", selection=sel, predictions=pred.iloc[::-1])
    assert sniff(out) == "spatialdata"
    s = sd.read_zarr(out)
    tab = s.tables["table"]
    assert tab.uns["spatialdata_attrs"]["region"] == "spots"
    assert list(tab.obs.loc[a.obs_names[[0, 3, 7]], "picked_by"]) == ["policy", "manual", "kcenter"]
    assert tab.obs["selected"].sum() == 3 and tab.obs["measured"].sum() == 2
    assert list(tab.obs["round"][:4]) == [1, 0, 0, 1]  # counted from 1, 0 = not selected and list(tab.obs["rank"][[0, 3, 7]]) == [0, 1, 2]
    assert np.array_equal(tab.X.toarray(), a.X.toarray())
    circles = s.shapes["spots"]
    xy = np.column_stack([circles.geometry.x, circles.geometry.y])
    assert np.allclose(xy[tab.obs["instance_id"].to_numpy()], a.obsm["spatial"])
    assert np.allclose(circles["radius"], spot_diameter_px(a) / 2)
    pt = s.tables["predictions"]
    assert list(pt.var_names) == genes and pt.uns["spatialdata_attrs"]["region"] == "spots"
    assert np.allclose(np.asarray(pt.X), pred.to_numpy())  # re-ordered to the section's spots
    # read back: same centres, diameter, counts and selection columns; image in the same frame
    b = read_spatialdata(out)
    assert list(b.obs_names) == list(a.obs_names) and np.allclose(b.obsm["spatial"], a.obsm["spatial"])
    assert spot_diameter_px(b) == pytest.approx(spot_diameter_px(a))
    assert np.array_equal(get_fullres_image(b), get_fullres_image(a))
    assert list(b.obs["picked_by"][[0, 3, 7]]) == ["policy", "manual", "kcenter"]
    # refuses to overwrite unless asked; leaves no temporary folders behind
    with pytest.raises(FileExistsError, match="result.zarr"):
        write_spatialdata(a, out)
    a.obsm["X_pred"] = pred
    write_spatialdata(a, out, overwrite=True)
    assert "predictions" in sd.read_zarr(out).tables and "score" not in sd.read_zarr(out).tables["table"].obs
    assert sorted(x.name for x in tmp_path.iterdir()) == ["result.zarr", "src.zarr"]


def test_write_lowres_only_section(tmp_path):
    a = _section(tmp_path)
    entry = a.uns["spatial"]["S1"]
    low = entry["images"]["hires"][::4, ::4].copy()
    entry["images"] = {"lowres": low}
    entry["scalefactors"].pop("tissue_hires_scalef")
    entry["scalefactors"]["tissue_lowres_scalef"] = 0.25
    out = write_spatialdata(a, tmp_path / "low.zarr")
    s = sd.read_zarr(out)
    from spatialdata.transformations import get_transformation

    t = get_transformation(s.images["image"], "global").to_affine_matrix(("x", "y"), ("x", "y"))
    assert np.allclose(np.diag(t)[:2], 4.0)  # lowres pixels -> full-res frame
    assert "predictions" not in s.tables
    b = read_spatialdata(out)  # read in the lowres image's pixels: everything scaled by 1/4
    assert np.allclose(b.obsm["spatial"], a.obsm["spatial"] / 4)
    assert spot_diameter_px(b) == pytest.approx(spot_diameter_px(a) / 4)
    with pytest.raises(ValueError, match="predictions lack 30"):
        write_spatialdata(a, tmp_path / "bad.zarr", predictions=pd.DataFrame({"G1": [1.0]}, index=["x"]))
    assert not (tmp_path / "bad.zarr").exists()


@pytest.mark.parametrize("multiscale", [False, True])
def test_export_of_a_store_read_gives_the_image_fullres_pixels(tmp_path, multiscale):
    """A store read (image scaled 0.5 into 'global', circles translated): exported centres are
    the circles in the image's full-resolution pixels, 2 * (circle + translation); no
    micrometres (the store states no physical unit)."""
    from napari_scr2st.io.export import (
        read_selection_csv,
        selection_geojson,
        selection_table,
        write_selection_csv,
    )

    p, exy, _ = _store(tmp_path, multiscale=multiscale)
    a = read_spatialdata(p)
    n = a.n_obs
    sel = SimpleNamespace(round=np.zeros(n, int), source=np.full(n, "random", dtype=object),
                          measured=np.zeros(n, bool), rank=np.arange(n), score=np.zeros(n))
    df = read_selection_csv(write_selection_csv(selection_table(a, sel), tmp_path / "lab.csv"))
    order = np.array([int(s[4:]) for s in df["spot_id"]])  # spot{i} annotates circle 100 + i
    np.testing.assert_allclose(df[["pixel_x", "pixel_y"]].to_numpy(), exy[order], rtol=0, atol=1e-9)
    pts = [f["geometry"]["coordinates"] for f in selection_geojson(df)["features"]]
    np.testing.assert_allclose(pts, exy[order], atol=1e-9)
    assert df["x_um"].isna().all() and df["y_um"].isna().all()
