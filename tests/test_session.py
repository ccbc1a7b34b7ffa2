"""The acquisition session (core, Qt-free): what the docks and the CLI drive, tested without a viewer."""

import numpy as np
import pytest


def _session(sample, space, **settings):
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    s = AcquisitionSession(sample.section.copy(), reference=sample.reference, space=space,
                           settings=SamplingSettings(**settings))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    s.finish_prepare()
    return s


@pytest.fixture
def session(sample, space):
    return _session(sample, space, sampler="scrl", budget="30%", rounds=2)


def test_weight_changes_reuse_the_policy_features(session):
    s = session
    sampler = s.make_sampler()
    feats = sampler.last_features
    assert feats is not None
    s.update_settings(w_sc=0.1, w_type=0.1, w_sp=4.0)
    p = s.reselect()
    assert s.make_sampler() is sampler and sampler.last_features is feats  # only the weight-conditioned head ran
    assert len(p.proposal) == p.n_new == round(0.3 * s.n) // 2
    assert len(np.unique(p.proposal)) == len(p.proposal)


def test_manual_picks_and_exclusions_bind_the_policy(session):
    s = session
    excl = np.zeros(s.n, bool)
    excl[: s.n // 4] = True
    s.set_rois(None, excl)
    s.reselect()
    assert not s.preview.state.selected[excl].any()
    i = int(np.flatnonzero(~excl & ~s.preview.state.selected)[0])
    assert "manual pick" in s.toggle_manual(i)
    assert s.preview.state.source[i] == "manual" and i not in s.preview.proposal
    assert "excluded" in s.toggle_manual(0)
    # a manual pick inside a new exclusion is dropped, with a note
    excl[i] = True
    notes = s.set_rois(None, excl)
    assert notes and i not in s.manual


def test_rounds_reveal_and_import(session, tmp_path):
    from napari_scr2st.io.export import write_counts_csv

    s = session
    first = s.sequence_simulated()
    assert s.current_round == 1 and s.committed.measured[first].all()
    assert s.measured_values(s.measured_genes()[0])[first].size == len(first)
    assert np.isnan(s.measured_values(s.measured_genes()[0])[~s.committed.measured]).all()
    ct = s.cell_types()
    assert (ct[first] != "").all()
    st = s.commit_for_export()
    pending = np.flatnonzero(st.pending)
    assert len(pending) and "sent for sequencing" in s.preview.message
    assert "cannot be changed" in s.toggle_manual(int(pending[0]))
    s.import_results(write_counts_csv(s.adata, pending, tmp_path / "lab.csv"))
    assert s.rounds_done and s.committed.measured.sum() == len(first) + len(pending)
    assert len(s.history) == 2 and s.history[1]["n"] > s.history[0]["n"]


def test_a_staged_round_changes_nothing_until_applied(session):
    """The sequencing a GUI computes in a worker (stage) leaves the session as it was; applying
    it gives what a direct sequence_simulated gives; a pick in between makes it stale."""
    s = session
    before = (s.acq.version, s.committed.measured.copy(), len(s.history), s.oracle.n_revealed)
    staged = s.stage_sequence_simulated()
    assert (s.acq.version, len(s.history), s.oracle.n_revealed) == (before[0], before[2], before[3])
    np.testing.assert_array_equal(s.committed.measured, before[1])
    assert not s.committed.measured.any() and staged.state.measured[staged.revealed].all()
    np.testing.assert_array_equal(np.sort(staged.revealed), np.sort(s.propose().picks))
    # a manual pick after staging: the staged round is refused, the state is untouched
    free = int(np.flatnonzero(~s.propose().state.selected)[0])
    s.toggle_manual(free)
    with pytest.raises(RuntimeError, match="selection changed while the round was being sequenced"):
        s.apply_sequenced(staged)
    assert not s.committed.measured.any() and s.current_round == 0
    s.toggle_manual(free)
    staged = s.stage_sequence_simulated()
    idx = s.apply_sequenced(staged)
    assert s.current_round == 1 and s.committed.measured[idx].all() and s.committed.measured.sum() == len(idx)
    assert len(s.history) == 1 and s.oracle.n_revealed == len(idx) and s.manual == []
    assert s.history[0]["n"] == len(idx)


def test_no_reference_falls_back_to_vision_samplers(sample):
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    # grid needs no reference; a reference sampler falls back to k-center
    s = AcquisitionSession(sample.section.copy(), reference=None, settings=SamplingSettings(sampler="grid"))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    assert s.space is None and s.sampling.sampler == "grid"
    s = AcquisitionSession(sample.section.copy(), reference=None, settings=SamplingSettings(sampler="greedy"))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    assert s.space is None and s.policy is None and s.sampling.sampler == "kcenter"
    p = s.reselect()
    assert len(p.proposal) == p.n_new > 0
    assert (s.cell_types() == "").all()


def test_save_and_load_continue_the_run(sample, space, tmp_path):
    """A saved run keeps its picks, counts, manual picks, exclusions and budget; a new session
    that loads it proposes exactly what the first one would have."""
    s = _session(sample, space, sampler="kcenter", budget="20%", rounds=3, seed=4)
    s.sequence_simulated()
    s.exclude([str(x) for x in s.adata.obs_names[:10]])
    free = np.flatnonzero(~s.committed.selected & ~s.excluded)
    s.toggle_manual(int(free[0]))
    expected = s.reselect().proposal.copy()
    s.save(tmp_path / "run.npz")

    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    t = AcquisitionSession(sample.section.copy(), reference=sample.reference, space=space,
                           settings=SamplingSettings(sampler="kcenter"))
    t.load(tmp_path / "run.npz")
    drive(t.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    assert (t.sampling.budget, t.sampling.rounds, t.sampling.seed) == ("20%", 3, 4)
    assert t.manual == [int(free[0])] and t.excluded[:10].all() and not t.excluded[10:].any()
    assert np.array_equal(t.committed.measured, s.committed.measured)
    assert np.array_equal(t.reselect().proposal, expected)


def test_export_round_writes_table_and_state_together(sample, space, tmp_path, monkeypatch):
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.io.export import read_selection_csv
    from napari_scr2st.progress import drive
    from napari_scr2st.sampling import SelectionState
    from napari_scr2st.session import AcquisitionSession

    a = sample.section.copy()
    s = AcquisitionSession(a, reference=sample.reference, space=space, simulate=False,
                           settings=SamplingSettings(sampler="grid", budget="10%", rounds=2))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    seen = []
    s.exported.connect(lambda: seen.append(s.last_export))
    assert s.last_export is None
    table, out = s.export_round(tmp_path / "r0.csv", state_path=tmp_path / "run.npz")
    st = SelectionState.load(tmp_path / "run.npz")
    csv = read_selection_csv(out)
    assert len(csv) == len(table) == st.pending.sum() == 15
    assert set(csv["spot_id"].astype(str)) == set(st.spot_ids[st.pending])
    # the first round is round 1 in the file, in the session's record and in the state's record
    assert set(csv["round"]) == {1} and (st.round[st.pending] == 0).all()  # 0-based inside
    rec = s.last_export
    assert seen == [rec] and rec.path == out and rec.round == 1 and rec.n_spots == 15 and rec.which == "pending"
    assert rec.message == f"exported round 1 to {out}" and rec.state_path == tmp_path / "run.npz"
    assert st.meta["last_export"] == rec.to_dict()
    again = AcquisitionSession(a.copy(), space=space, simulate=False)
    again.load(tmp_path / "run.npz")
    assert again.last_export == rec
    # a state that cannot be written leaves neither file changed
    before = (out.read_bytes(), (tmp_path / "run.npz").read_bytes())

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(SelectionState, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        s.export_round(tmp_path / "other.csv", state_path=tmp_path / "run.npz")
    assert (out.read_bytes(), (tmp_path / "run.npz").read_bytes()) == before
    assert s.last_export == rec and len(seen) == 1 and s.committed.meta["last_export"] == rec.to_dict()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r0.csv", "run.npz"]


def test_export_round_to_a_spatialdata_store(sample, space, tmp_path):
    import spatialdata

    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    s = AcquisitionSession(sample.section.copy(), space=space, simulate=False,
                           settings=SamplingSettings(sampler="grid", budget="10%", rounds=2))
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    table, out = s.export_round(tmp_path / "run.zarr", state_path=tmp_path / "run.npz")
    sd = spatialdata.read_zarr(out)
    t = next(iter(sd.tables.values()))
    assert t.n_obs == s.n and int((t.obs["round"] >= 1).sum()) == len(table) == 15 and set(table["round"]) == {1}
    assert (tmp_path / "run.npz").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_reference_and_gene_changes_are_signalled(sample, space):
    """Every reference change (set, fitted, cleared, another column) fires reference_changed once;
    the gene the maps and the inspector share fires gene_changed; nothing fires without a change."""
    from napari_scr2st.config import SamplingSettings
    from napari_scr2st.progress import drive
    from napari_scr2st.session import AcquisitionSession

    s = AcquisitionSession(sample.section.copy(), settings=SamplingSettings(sampler="grid"))
    refs, genes = [], []
    s.reference_changed.connect(lambda: refs.append((s.reference is not None, s.space is not None)))
    s.gene_changed.connect(genes.append)
    s.set_reference(sample.reference)
    assert refs == [(True, False)]
    # fitted in iter_prepare (a worker may run it): announced by finish_prepare, in the caller's thread
    drive(s.iter_prepare(encoder="patch-stats"), use_tqdm=False)
    assert s.space is not None and refs == [(True, False)]
    s.finish_prepare()
    assert refs == [(True, False), (True, True)]
    col = s.space.meta.get("celltype_key")
    assert s.set_celltype_key(col) is False and len(refs) == 3  # the column is now explicit: one event
    assert s.set_celltype_key(col) is False and len(refs) == 3  # unchanged: none
    s.set_reference(sample.reference)  # a new reference drops the fitted space and its policy
    assert refs[-1] == (True, False) and len(refs) == 4 and s.policy is None
    s.space = space
    s.reference = None
    assert refs[-2:] == [(True, True), (False, True)]
    s.gene = "G1"
    s.gene = "G1"
    s.gene = "G2"
    assert genes == ["G1", "G2"] and s.gene == "G2"


def test_rounds_count_from_one_in_messages(session):
    """The arrays are 0-based; the messages a person reads count rounds from 1."""
    s = session
    s.commit()
    assert s.current_round == 1 and (s.committed.round[s.committed.pending] == 0).all()
    assert s.preview.message == "round 1 was sent for sequencing: import its counts to continue"
    s.reset_selection()
    events = list(s.iter_run_simulated())
    assert [e.message for e in events] == ["round 1", "round 2"]
    assert "2 rounds committed" in repr(s.committed)
