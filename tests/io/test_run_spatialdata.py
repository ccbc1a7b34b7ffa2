"""A run (selection state, rounds, predictions, cell types) exported as a SpatialData store."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import spatialdata as sd
from test_reader_errors import _grid, write_counts, write_image, write_spots

from napari_scr2st.data.model import fullres_coordinates, spot_diameter_px
from napari_scr2st.io import read_legacy_st, read_visium, sniff
from napari_scr2st.io.export import SPATIALDATA_SUFFIX, write_run_spatialdata
from napari_scr2st.sampling.state import SelectionState


def _state(a, picks: dict[int, tuple[int, str]], *, measured=()) -> SelectionState:
    st = SelectionState(a.obs_names, a.obs["section"].astype(str))
    for rank, (i, (rnd, src)) in enumerate(picks.items()):
        st.round[i], st.source[i], st.rank[i], st.score[i] = rnd, src, rank, 0.5 + rank
    st.measured[list(measured)] = True
    st.current_round, st.budget, st.n_rounds = 2, 6, 3
    return st


def _circle_centres(s):
    c = s.shapes["spots"]
    return np.column_stack([c.geometry.x, c.geometry.y])


def test_run_of_a_legacy_section(tmp_path):
    rows = _grid(n=4)
    a = read_legacy_st(
        write_counts(tmp_path / "S.tsv", ids=[f"{x}x{y}" for x, y, _, _ in rows]),
        write_spots(tmp_path / "S_selection.tsv", rows),
        write_image(tmp_path / "S.png", w=400, h=400),
    )
    st = _state(a, {0: (0, "scrl"), 5: (0, "manual"), 9: (1, "kcenter")}, measured=[0, 5])
    pred = pd.DataFrame(np.arange(a.n_obs * 2, dtype=float).reshape(-1, 2), index=a.obs_names, columns=["G1", "G2"])
    cells = np.array(["tumour" if i % 2 else "" for i in range(a.n_obs)], dtype=object)
    out = write_run_spatialdata(a, st, tmp_path / f"run{SPATIALDATA_SUFFIX}", predictions=pred, cell_types=cells)
    assert out.suffix == SPATIALDATA_SUFFIX == ".zarr" and sniff(out) == "spatialdata"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sd.read_zarr(out)
    tab = s.tables["table"]
    obs = tab.obs.set_index(tab.obs["instance_id"].to_numpy())
    for c in ("selected", "round", "picked_by", "rank", "measured", "score", "round_1", "round_2",
              "pixel_x", "pixel_y", "x_um", "y_um", "cell_type"):  # fmt: skip
        assert c in obs.columns, c
    assert list(obs.loc[[0, 5, 9], "picked_by"]) == ["policy", "manual", "kcenter"]
    # rounds counted from 1 (as in the lab's table), 0 = not selected; 2 rounds committed
    assert obs["round_1"].sum() == 2 and obs["round_2"].sum() == 1 and "round_0" not in obs and "round_3" not in obs
    assert obs["measured"].sum() == 2 and list(obs["round"][[0, 1, 9]]) == [1, 0, 2]
    assert list(obs["cell_type"].astype(str)[:2]) == ["", "tumour"]
    assert dict(tab.uns["scr2st_run"]) == {"current_round": 2, "budget": 6, "n_rounds": 3, "n_selected": 3, "n_measured": 2}
    # circles at the full-resolution centres (legacy ST: the spot file's pixel_x, pixel_y)
    xy = _circle_centres(s)[obs.index.to_numpy()]
    np.testing.assert_allclose(xy, a.obsm["spatial"])
    np.testing.assert_allclose(obs[["pixel_x", "pixel_y"]].to_numpy(), fullres_coordinates(a)[0])
    assert np.allclose(s.shapes["spots"]["radius"], spot_diameter_px(a) / 2)
    np.testing.assert_allclose(np.asarray(s.tables["predictions"].X), pred.to_numpy())
    assert s.images["image"] is not None
    with pytest.raises(FileExistsError):
        write_run_spatialdata(a, st, out)
    with pytest.raises(ValueError, match="one label per spot"):
        write_run_spatialdata(a, st, tmp_path / "bad.zarr", cell_types=["x"])
    other = SelectionState([f"z{i}" for i in range(a.n_obs)], ["S"] * a.n_obs)
    with pytest.raises(ValueError, match="not the section's rows"):
        write_run_spatialdata(a, other, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()


def test_run_of_a_visium_section_keeps_original_pixels(spaceranger, tmp_path):
    """A Visium section in the hires frame: circles in the section's frame, pixel_x/pixel_y in
    Space Ranger's full-resolution pixels."""
    a = read_visium(spaceranger["outs"])
    assert a.uns["spatial"]["lib1"]["metadata"]["frame_scale"] != 1.0
    st = _state(a, {1: (0, "random"), 2: (0, "random")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sd.read_zarr(write_run_spatialdata(a, st, tmp_path / "v.zarr"))
    obs = s.tables["table"].obs
    order = obs["instance_id"].to_numpy()
    np.testing.assert_allclose(_circle_centres(s)[order], a.obsm["spatial"])
    np.testing.assert_allclose(obs[["pixel_x", "pixel_y"]].to_numpy(), spaceranger["xy_fullres"])
    assert "predictions" not in s.tables and "cell_type" not in obs


def test_spatialdata_plot_draws_the_run_coloured_by_selection(tmp_path):
    """The exported store opens in spatialdata-plot as the ecosystem uses it: the H&E image and
    the spot circles annotated by the run's table, coloured by the ``selected`` column."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import spatialdata_plot  # noqa: F401 - registers the .pl accessor

    rows = _grid(n=4)
    a = read_legacy_st(
        write_counts(tmp_path / "S.tsv", ids=[f"{x}x{y}" for x, y, _, _ in rows]),
        write_spots(tmp_path / "S_selection.tsv", rows),
        write_image(tmp_path / "S.png", w=400, h=400),
    )
    picked = [0, 5, 9]
    st = _state(a, {0: (0, "scrl"), 5: (0, "manual"), 9: (1, "kcenter")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = sd.read_zarr(write_run_spatialdata(a, st, tmp_path / "run.zarr"))
        fig, ax = plt.subplots()
        s.pl.render_images("image").pl.render_shapes("spots", color="selected").pl.show(
            ax=ax, coordinate_systems="global")
    try:
        assert len(ax.images) == 1 and ax.images[0].get_array().shape[:2] == (400, 400)
        (circles,) = ax.collections
        face = np.asarray(circles.get_facecolors())
        assert face.shape == (a.n_obs, 4)
        inst = s.tables["table"].obs["instance_id"].to_numpy()
        chosen = np.isin(inst, picked)
        assert len({tuple(c) for c in face[chosen]}) == 1 and len({tuple(c) for c in face[~chosen]}) == 1
        assert not np.allclose(face[chosen][0], face[~chosen][0])  # selected spots stand out
    finally:
        plt.close(fig)
