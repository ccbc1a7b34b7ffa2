"""SelectionState save/load (atomic) and the real reveal: import_counts."""

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.sampling import (
    Pool,
    SelectionRequest,
    SelectionState,
    SimulatedOracle,
    import_counts,
    make_sampler,
)
from napari_scr2st.sampling.loop import iter_acquisition, run_acquisition


def _counts_csv(path, adata, idx, *, section_col=False, sep=","):
    X = adata.X[idx].toarray()
    df = pd.DataFrame(X, columns=list(adata.var_names))
    df.insert(0, "spot_id", np.asarray(adata.obs_names)[idx])
    if section_col:
        df.insert(1, "section", adata.obs["section"].astype(str).to_numpy()[idx])
    df.to_csv(path, index=False, sep=sep)
    return path


def test_save_load_round_trip(tmp_path, small):
    a, space = small
    pool = Pool.from_adata(a)
    res = run_acquisition(pool, make_sampler("random", seed=1), SelectionRequest(budget=30, rounds=3, seed=1),
                          oracle=SimulatedOracle(a, pool))
    st = res.state
    st.meta["note"] = "hello"
    p = st.save(tmp_path / "state.npz")
    st2 = SelectionState.load(p)
    for attr in ("spot_ids", "sections", "round", "rank", "measured", "score"):
        assert np.array_equal(getattr(st, attr), getattr(st2, attr), equal_nan=attr == "score")
    assert list(st.source) == list(st2.source)
    assert st2.meta["note"] == "hello" and st2.current_round == st.current_round == 3 and st2.budget == 30
    v1, v2 = st.measured_view(), st2.measured_view()
    assert np.array_equal(v1.index, v2.index) and (v1.counts != v2.counts).nnz == 0 and v1.genes == v2.genes
    pd.testing.assert_frame_equal(st.to_frame(), st2.to_frame())


def test_save_is_atomic(tmp_path, small, monkeypatch):
    a, _ = small
    pool = Pool.from_adata(a)
    st = SelectionState.for_pool(pool)
    st.mark_selected([1, 2, 3])
    p = st.save(tmp_path / "state.npz")
    before = p.read_bytes()
    st.mark_selected([4])

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        st.save(p)
    assert p.read_bytes() == before  # the previous state is intact
    assert [f.name for f in tmp_path.iterdir()] == ["state.npz"]  # no temporary left behind


def test_real_round_trip_select_import_select(tmp_path, small):
    """Real use: select a round (no oracle), import counts of the picks, select the next round."""
    a, space = small
    pool = Pool.from_adata(a)
    req = SelectionRequest(budget=40, rounds=2, seed=0)
    sampler = make_sampler("greedy", space=space, seed=0)
    from napari_scr2st.progress import drive

    res = drive(iter_acquisition(pool, sampler, req), use_tqdm=False)
    st = res.state
    assert st.n_selected == 20 and not st.measured.any() and st.current_round == 1
    st.save(tmp_path / "run.npz")
    picked = np.flatnonzero(st.selected)
    _counts_csv(tmp_path / "r0.tsv", a, picked, sep="\t")
    st = SelectionState.load(tmp_path / "run.npz")
    import_counts(st, tmp_path / "r0.tsv", save_to=tmp_path / "run.npz")
    st = SelectionState.load(tmp_path / "run.npz")
    assert st.measured[picked].all() and st.measured.sum() == 20
    view = st.measured_view()
    assert (view.counts != a.X[view.index]).nnz == 0
    res2 = drive(iter_acquisition(pool, make_sampler("greedy", space=space, seed=0), req, state=st), use_tqdm=False)
    assert res2.state.n_selected == 40 and res2.state.current_round == 2
    with pytest.raises(ValueError, match="all 2 rounds"):
        drive(iter_acquisition(pool, sampler, req, state=res2.state), use_tqdm=False)


def test_import_errors_and_overwrite(tmp_path, small):
    a, _ = small
    pool = Pool.from_adata(a)
    st = SelectionState.for_pool(pool)
    st.mark_selected([0, 1, 2], source="random")
    _counts_csv(tmp_path / "c.csv", a, [0, 1, 2])
    idx = import_counts(st, tmp_path / "c.csv")
    assert idx.tolist() == [0, 1, 2] and st.measured[[0, 1, 2]].all()
    # re-import of the same spots: error naming them, nothing changed
    with pytest.raises(ValueError, match="already have imported counts.*overwrite"):
        import_counts(st, tmp_path / "c.csv")
    # unknown ids: error listing a few
    df = pd.read_csv(tmp_path / "c.csv")
    df.loc[0, "spot_id"] = "999x999"
    df.loc[1, "spot_id"] = "nope"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"2 of 3 spot ids are not in the selection.*999x999.*nope"):
        import_counts(st, tmp_path / "bad.csv")
    # transposed file: a hint
    df = pd.read_csv(tmp_path / "c.csv").set_index("spot_id").T.reset_index()
    df.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="genes x spots"):
        import_counts(st, tmp_path / "t.csv")
    # overwrite replaces the counts
    df = pd.read_csv(tmp_path / "c.csv")
    df.iloc[:, 1:] = 7
    df.to_csv(tmp_path / "c7.csv", index=False)
    import_counts(st, tmp_path / "c7.csv", overwrite=True)
    v = st.measured_view()
    assert v.counts[:3].toarray().min() == 7
    # spots imported without having been selected are recorded as 'imported'
    _counts_csv(tmp_path / "extra.csv", a, [5])
    import_counts(st, tmp_path / "extra.csv")
    assert st.source[5] == "imported" and st.measured[5]
    # genes missing from a later import: error
    df = pd.read_csv(tmp_path / "extra.csv").drop(columns=[str(a.var_names[0])])
    df["spot_id"] = np.asarray(a.obs_names)[6]
    df.to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(ValueError, match="lack 1 of the"):
        import_counts(st, tmp_path / "fewer.csv")
    assert not st.measured[6]
    with pytest.raises(FileNotFoundError):
        import_counts(st, tmp_path / "missing.csv")


def test_import_sections_and_failed_import_keeps_file(tmp_path, two_sections):
    a = two_sections.copy()
    # make ids collide across sections: the same id in L and R
    ids = np.asarray(a.obs_names).copy()
    L = np.flatnonzero(a.obs["section"] == "L")[:3]
    R = np.flatnonzero(a.obs["section"] == "R")[:3]
    ids[R] = ids[L]
    a.obs_names = ids
    pool = Pool.from_adata(a)
    st = SelectionState.for_pool(pool)
    st.save(tmp_path / "s.npz")
    _counts_csv(tmp_path / "amb.csv", a, R)
    with pytest.raises(ValueError, match="several sections"):
        import_counts(st, tmp_path / "amb.csv", save_to=tmp_path / "s.npz")
    assert not SelectionState.load(tmp_path / "s.npz").measured.any()  # written state not lost
    _counts_csv(tmp_path / "sec.csv", a, R, section_col=True)
    idx = import_counts(st, tmp_path / "sec.csv", save_to=tmp_path / "s.npz")
    assert sorted(idx.tolist()) == sorted(R.tolist())
    idx = import_counts(st, tmp_path / "amb.csv", section="L")
    assert sorted(idx.tolist()) == sorted(L.tolist())
    assert SelectionState.load(tmp_path / "s.npz").measured.sum() == 3
