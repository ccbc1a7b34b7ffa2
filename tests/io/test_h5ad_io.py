"""h5ad reading (squidpy convention, filling missing fields) and atomic writing."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from napari_scr2st.data.model import (
    SectionError,
    concat_sections,
    get_lowres_image,
    make_section,
    spot_diameter_px,
    validate_section,
)
from napari_scr2st.io import read_h5ad_section, write_h5ad_section


def _hex_lattice(n_rows: int = 4, n_cols: int = 10, pitch: float = 40.0):
    rows, cols, xy = [], [], []
    for r in range(n_rows):
        for c in range(r % 2, n_cols, 2):
            rows.append(r)
            cols.append(c)
            xy.append((100 + c * pitch / 2, 80 + r * pitch * np.sqrt(3) / 2))
    return np.array(rows), np.array(cols), np.array(xy)


def _small_section(name: str, patient: str = "P1", seed: int = 0):
    rows, cols, xy = _hex_lattice()
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, size=(len(xy), 6))
    return make_section(
        sp.csr_matrix(counts),
        [f"g{i}" for i in range(6)],
        [f"s{i}" for i in range(len(xy))],
        xy,
        section=name,
        patient=patient,
        array_row=rows,
        array_col=cols,
        image=np.broadcast_to(np.linspace(90, 230, 500).astype(np.uint8)[None, :, None], (400, 500, 3)),
        spot_diameter_fullres=22.0,
    )


def test_roundtrip_real_c3(c3, tmp_path):
    p = write_h5ad_section(c3, tmp_path / "c3.h5ad")
    assert p.is_file() and not [f for f in tmp_path.iterdir() if f.name.startswith(".")]
    b = read_h5ad_section(p)
    validate_section(b)
    assert list(b.obs_names) == list(c3.obs_names) and list(b.var_names) == list(c3.var_names)
    assert (b.X != c3.X).nnz == 0
    np.testing.assert_array_equal(b.obsm["spatial"], c3.obsm["spatial"])
    for col in ("section", "patient", "array_row", "array_col"):
        assert list(b.obs[col]) == list(c3.obs[col])
    pd.testing.assert_series_equal(
        b.obs["her2st_cluster"].astype(str), c3.obs["her2st_cluster"].astype(str)
    )
    pd.testing.assert_frame_equal(b.obsm["stereoscope_major"], c3.obsm["stereoscope_major"])
    e0, e1 = c3.uns["spatial"]["C3"], b.uns["spatial"]["C3"]
    np.testing.assert_array_equal(e1["images"]["lowres"], e0["images"]["lowres"])
    assert e1["scalefactors"] == pytest.approx(e0["scalefactors"])
    assert e1["metadata"]["source_image_path"] == e0["metadata"]["source_image_path"]
    assert list(e1["metadata"]["fullres_shape"]) == list(e0["metadata"]["fullres_shape"])


def test_squidpy_convention_fills_missing_fields(tmp_path):
    """A scanpy/squidpy-style file: no section/array/patient columns, float images."""
    rows, cols, xy = _hex_lattice()
    a = ad.AnnData(
        sp.csr_matrix(np.random.default_rng(1).poisson(2.0, (len(xy), 5)).astype(np.float32))
    )
    a.obs_names = [f"bc{i}" for i in range(a.n_obs)]
    a.obs["donor_id"] = "D9"
    a.obsm["spatial"] = xy
    img = np.random.default_rng(2).random((300, 400, 3)).astype(np.float32)
    a.uns["spatial"] = {
        "libA": {
            "images": {"hires": img},
            "scalefactors": {"tissue_hires_scalef": 0.5, "spot_diameter_fullres": 18.0},
        }
    }
    a.write_h5ad(tmp_path / "squidpy.h5ad")
    b = read_h5ad_section(tmp_path / "squidpy.h5ad")
    validate_section(b)
    assert (b.obs["section"] == "libA").all() and (b.obs["patient"] == "D9").all()
    np.testing.assert_array_equal(b.obs["array_row"], rows)
    np.testing.assert_array_equal(b.obs["array_col"], cols)
    entry = b.uns["spatial"]["libA"]
    assert entry["images"]["hires"].dtype == np.uint8
    assert entry["metadata"] == {"source_image_path": "", "fullres_shape": []}
    low, s = get_lowres_image(b)
    assert s == 0.5 and low.shape == (300, 400, 3)
    assert spot_diameter_px(b) == 18.0


def test_bare_h5ad_without_uns_spatial(tmp_path):
    rows, cols, xy = _hex_lattice(pitch=100.0)
    a = ad.AnnData(np.ones((len(xy), 3), dtype=np.float32))
    a.obsm["spatial"] = xy
    a.layers["counts"] = a.X.copy()
    a.X = np.log1p(a.X) * 1.3  # not counts: the counts layer is used
    a.write_h5ad(tmp_path / "bare.h5ad")
    with pytest.warns(UserWarning, match="estimated as half the spot pitch"):
        b = read_h5ad_section(tmp_path / "bare.h5ad")
    assert list(b.uns["spatial"]) == ["bare"] and (b.obs["patient"] == "").all()
    assert spot_diameter_px(b) == pytest.approx(50.0)  # half of the nearest-neighbour distance
    np.testing.assert_array_equal(b.X.toarray(), 1.0)
    c = read_h5ad_section(
        tmp_path / "bare.h5ad", section="mine", patient="P", spot_diameter_fullres=30
    )
    assert (
        list(c.uns["spatial"]) == ["mine"]
        and (c.obs["patient"] == "P").all()
        and spot_diameter_px(c) == 30
    )


def test_multi_section_file_is_a_collection(tmp_path):
    coll = {"S1": _small_section("S1", "P1", 0), "S2": _small_section("S2", "P2", 1)}
    write_h5ad_section(coll, tmp_path / "two.h5ad")
    got = read_h5ad_section(tmp_path / "two.h5ad")
    assert isinstance(got, dict) and list(got) == ["S1", "S2"]
    for name, a in got.items():
        validate_section(a)
        assert list(a.uns["spatial"]) == [name]
        assert list(a.obs_names) == list(coll[name].obs_names)  # "S1:" prefixes removed
        assert (a.X != coll[name].X).nnz == 0
        assert (a.obs["patient"] == coll[name].obs["patient"][0]).all()
    one = read_h5ad_section(tmp_path / "two.h5ad", section="S2")
    assert list(one.uns["spatial"]) == ["S2"]
    with pytest.raises(SectionError, match="no section 'S3'"):
        read_h5ad_section(tmp_path / "two.h5ad", section="S3")
    # the same via concat_sections directly (obs['section'] tells the sections apart)
    assert concat_sections(coll).n_obs == sum(a.n_obs for a in coll.values())


def test_h5ad_errors(tmp_path):
    garbage = tmp_path / "garbage.h5ad"
    garbage.write_bytes(b"not an hdf5 file" * 10)
    with pytest.raises(SectionError, match=f"cannot read h5ad file {garbage}"):
        read_h5ad_section(garbage)
    with pytest.raises(SectionError, match="h5ad file not found"):
        read_h5ad_section(tmp_path / "missing.h5ad")
    a = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    a.write_h5ad(tmp_path / "nospatial.h5ad")
    with pytest.raises(SectionError, match=r"nospatial.h5ad: obsm\['spatial'\].*missing"):
        read_h5ad_section(tmp_path / "nospatial.h5ad")
    a.obsm["spatial"] = np.arange(6.0).reshape(3, 2)
    a.X = a.X * 0.5
    a.write_h5ad(tmp_path / "lognorm.h5ad")
    with pytest.raises(SectionError, match="lognorm.h5ad: X does not hold raw counts"):
        read_h5ad_section(tmp_path / "lognorm.h5ad")
    a.X = -np.ones((3, 2), dtype=np.float32)
    a.write_h5ad(tmp_path / "neg.h5ad")
    with pytest.raises(SectionError, match="neg.h5ad.*negative counts"):
        read_h5ad_section(tmp_path / "neg.h5ad")
    b = ad.AnnData(np.ones((0, 2), dtype=np.float32))
    b.obsm["spatial"] = np.zeros((0, 2))
    b.write_h5ad(tmp_path / "empty.h5ad")
    with pytest.raises(SectionError, match="empty.h5ad.*no spots"):
        read_h5ad_section(tmp_path / "empty.h5ad")


def test_write_is_atomic(tmp_path, monkeypatch):
    s = _small_section("S1")
    target = write_h5ad_section(s, tmp_path / "s.h5ad")
    before = target.read_bytes()

    def broken(self, filename, **kw):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ad.AnnData, "write_h5ad", broken)
    with pytest.raises(SectionError, match="cannot write .*s.h5ad: disk full"):
        write_h5ad_section(s, target)
    assert target.read_bytes() == before
    assert sorted(f.name for f in tmp_path.iterdir()) == ["s.h5ad"]
    with pytest.raises(SectionError, match="must end with .h5ad"):
        write_h5ad_section(s, tmp_path / "s.zarr")


def test_h5ad_spots_outside_recorded_image(tmp_path):
    s = _small_section("S1")
    s.uns["spatial"]["S1"]["metadata"]["fullres_shape"] = [150, 200, 3]
    write_h5ad_section(s, tmp_path / "small.h5ad")
    with pytest.raises(SectionError, match=r"spot centres in .*small.h5ad lie outside .*200 x 150 px"):
        read_h5ad_section(tmp_path / "small.h5ad")
