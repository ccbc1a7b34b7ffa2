"""Exports for the sequencing lab and QuPath: exact CSV round trip, GeoJSON, h5ad, counts."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.data import make_sample
from napari_scr2st.io.export import (
    SELECTION_COLUMNS,
    read_selection_csv,
    selection_geojson,
    selection_table,
    write_counts_csv,
    write_predictions_h5ad,
    write_selection,
    write_selection_csv,
    write_selection_geojson,
)


@pytest.fixture(scope="module")
def section():
    return make_sample(n_spots=300, seed=1).section


def _selection(n):
    s = SimpleNamespace(
        round=np.full(n, -1), source=np.full(n, "", dtype=object), measured=np.zeros(n, bool),
        rank=np.full(n, -1), score=np.full(n, np.nan),
    )
    picks = [(10, 0, "random", True), (20, 0, "manual", True), (30, 1, "scrl", False), (40, 1, "scrl", False),
             (50, 1, "manual", False), (60, 1, "kcenter", False)]
    for r, (i, rnd, src, meas) in enumerate(picks):
        s.round[i], s.source[i], s.measured[i], s.rank[i] = rnd, src, meas, r
        if src != "manual":
            s.score[i] = 1.0 / 3.0 + r * 1e-9  # awkward floats must survive the round trip
    return s


def test_selection_table_columns_and_rows(section):
    sel = _selection(section.n_obs)
    ct = np.array(["Cancer Epithelial"] * section.n_obs, dtype=object)
    ct[40] = ""
    df = selection_table(section, sel, predicted_cell_type=ct)
    assert list(df.columns) == SELECTION_COLUMNS
    # pending only by default, in rank order
    assert df["spot_id"].tolist() == [str(section.obs_names[i]) for i in (30, 40, 50, 60)]
    assert df["picked_by"].tolist() == ["policy", "policy", "manual", "kcenter"]
    assert np.isnan(df.loc[2, "score"]) and df.loc[0, "score"] == pytest.approx(1 / 3)
    assert df.loc[1, "predicted_cell_type"] == ""
    np.testing.assert_allclose(df[["pixel_x", "pixel_y"]].to_numpy(), section.obsm["spatial"][[30, 40, 50, 60]])
    assert df["array_row"].tolist() == section.obs["array_row"].to_numpy()[[30, 40, 50, 60]].tolist()
    assert len(selection_table(section, sel, which="all")) == 6
    assert selection_table(section, sel, which="sequenced")["picked_by"].tolist() == ["random", "manual"]
    # rounds counted from 1 in the table (internal round 1 is the second round)
    assert df["round"].tolist() == [2, 2, 2, 2]
    assert selection_table(section, sel, which="all")["round"].tolist() == [1, 1, 2, 2, 2, 2]
    assert len(selection_table(section, sel, which="all", rounds=[1])) == 2
    with pytest.raises(ValueError):
        selection_table(section, sel, which="some")


def test_csv_round_trip_is_exact(section, tmp_path):
    sel = _selection(section.n_obs)
    df = selection_table(section, sel, which="all", predicted_cell_type=np.array(["T-cells"] * section.n_obs))
    # ids that look like numbers must stay strings
    df.loc[0, "spot_id"] = "007"
    path = write_selection_csv(df, tmp_path / "sel.csv")
    back = read_selection_csv(path)
    pd.testing.assert_frame_equal(df, back, check_exact=True)
    assert back.loc[0, "spot_id"] == "007"
    # no temporary files left behind
    assert [p.name for p in tmp_path.iterdir()] == ["sel.csv"]


def test_csv_written_atomically(section, tmp_path, monkeypatch):
    path = tmp_path / "sel.csv"
    path.write_text("old\n")
    df = selection_table(section, _selection(section.n_obs))

    def boom(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        write_selection_csv(df, path)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sel.csv"]


def test_geojson_is_qupath_point_annotations(section, tmp_path):
    df = selection_table(section, _selection(section.n_obs), which="all")
    df.loc[3, "picked_by"] = ""  # no sampler name: classified by round
    gj = selection_geojson(df)
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 6
    f = gj["features"][2]
    assert f["geometry"]["type"] == "Point"
    assert f["geometry"]["coordinates"] == [float(df.loc[2, "pixel_x"]), float(df.loc[2, "pixel_y"])]
    p = f["properties"]
    # QuPath keeps only these keys: everything about the spot is under metadata, as strings
    assert set(p) == {"objectType", "name", "classification", "isLocked", "measurements", "metadata"}
    assert p["objectType"] == "annotation" and p["name"] == df.loc[2, "spot_id"]
    assert p["classification"]["name"] == "policy"
    assert len(p["classification"]["color"]) == 3 and all(isinstance(c, int) for c in p["classification"]["color"])
    assert gj["features"][3]["properties"]["classification"]["name"] == "round 2"  # counted from 1
    assert p["measurements"]["round"] == 2 and "score" in p["measurements"]
    assert "score" not in gj["features"][1]["properties"]["measurements"]  # manual: no score
    meta = p["metadata"]
    assert list(meta) == SELECTION_COLUMNS and all(isinstance(v, str) for v in meta.values())
    assert meta["spot_id"] == df.loc[2, "spot_id"] and meta["picked_by"] == "policy"
    assert float(meta["pixel_x"]) == df.loc[2, "pixel_x"] and meta["round"] == "2"
    assert gj["features"][1]["properties"]["metadata"]["score"] == ""
    path = write_selection_geojson(df, tmp_path / "sel.geojson")
    assert json.loads(path.read_text()) == gj


def test_csv_neutralises_formulas_and_round_trips(section, tmp_path):
    df = selection_table(section, _selection(section.n_obs), which="all")
    evil = ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "'quoted"]
    df["spot_id"] = evil
    df.loc[0, "predicted_cell_type"] = "=1+1"
    for suffix, sep in ((".csv", ","), (".tsv", "\t")):
        path = write_selection_csv(df, tmp_path / f"sel{suffix}")
        raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        assert raw["spot_id"].tolist() == ["'" + v for v in evil]
        assert raw.loc[0, "predicted_cell_type"] == "'=1+1"
        assert not raw["pixel_x"].str.startswith("'").any()  # numbers untouched
        pd.testing.assert_frame_equal(read_selection_csv(path), df, check_exact=True)


def test_write_selection_picks_the_format_by_extension(section, tmp_path):
    import anndata as ad

    df = selection_table(section, _selection(section.n_obs), which="all")
    pd.testing.assert_frame_equal(read_selection_csv(write_selection(df, tmp_path / "a.csv")), df)
    assert "\t" in write_selection(df, tmp_path / "a.tsv").read_text().splitlines()[0]
    for name in ("a.geojson", "a.json"):
        assert json.loads(write_selection(df, tmp_path / name).read_text()) == selection_geojson(df)
    back = ad.read_h5ad(write_selection(df, tmp_path / "a.h5ad"))
    assert back.obs["spot_id"].tolist() == df["spot_id"].tolist()
    np.testing.assert_array_equal(back.obsm["spatial"], df[["pixel_x", "pixel_y"]].to_numpy())
    with pytest.raises(ValueError, match=r"unknown extension '.xlsx'.*\.csv, \.tsv, \.geojson"):
        write_selection(df, tmp_path / "a.xlsx")
    with pytest.raises(ValueError, match="must end with .geojson or .json"):
        write_selection_geojson(df, tmp_path / "b.csv")
    with pytest.raises(ValueError, match="must end with .csv or .tsv"):
        write_selection_csv(df, tmp_path / "b.geojson")
    assert not (tmp_path / "a.xlsx").exists() and not (tmp_path / "b.csv").exists()


def test_files_honour_the_umask(section, tmp_path):
    import os

    df = selection_table(section, _selection(section.n_obs), which="all")
    old = os.umask(0o022)
    try:
        paths = [write_selection(df, tmp_path / f"s{ext}") for ext in (".csv", ".geojson", ".h5ad")]
        paths.append(write_counts_csv(section, [30], tmp_path / "c.csv"))
        assert {oct(p.stat().st_mode & 0o777) for p in paths} == {"0o644"}
        os.umask(0o077)
        assert write_selection(df, tmp_path / "private.csv").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_predictions_h5ad(section, tmp_path):
    import anndata as ad

    s = section.copy()
    s.obsm["X_pred"] = pd.DataFrame(np.ones((s.n_obs, 2), np.float32), index=s.obs_names, columns=["A", "B"])
    sel = _selection(s.n_obs)
    path = write_predictions_h5ad(s, tmp_path / "pred.h5ad", selection=sel, predicted_cell_type=["x"] * s.n_obs)
    back = ad.read_h5ad(path)
    assert list(back.obsm["X_pred"].columns) == ["A", "B"]
    assert back.obs["scr2st_round"].tolist() == [r + 1 if r >= 0 else 0 for r in sel.round]  # from 1; 0 = not selected
    assert back.obs["scr2st_picked_by"].iloc[30] == "policy"
    assert back.obs["scr2st_sequenced"].sum() == 2
    assert "scr2st_round" not in s.obs  # input untouched
    with pytest.raises(ValueError):
        write_predictions_h5ad(s, tmp_path / "pred.csv")


def test_counts_csv_imports_into_a_selection_state(section, tmp_path):
    sampling_state = pytest.importorskip("napari_scr2st.sampling.state")
    path = write_counts_csv(section, [30, 40], tmp_path / "results.csv")
    st = sampling_state.SelectionState(section.obs_names, section.obs["section"].astype(str))
    idx = sampling_state.import_counts(st, path)
    assert sorted(idx.tolist()) == [30, 40]
    view = st.measured_view()
    np.testing.assert_array_equal(view.counts.toarray(), section.X[[30, 40]].toarray())
