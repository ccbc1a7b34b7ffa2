"""The plugin's Qt-free session: the logic behind the docks, tested without a viewer."""

import numpy as np
import pytest


@pytest.fixture
def session(small_sample, helpers):
    from napari_scr2st._napari._state import Session
    from napari_scr2st.progress import drive

    s = Session(small_sample.section.copy(), reference=small_sample.reference)
    s.space = helpers.space_for(small_sample)
    drive(s.iter_prepare("patch-stats"), use_tqdm=False)
    s.update_settings(budget="30%", rounds=2)
    s.reselect()
    return s


def test_weight_changes_reuse_the_policy_features(session):
    s = session
    feats = s._cache.feats
    s.update_settings(w_sc=0.1, w_type=0.1, w_sp=4.0)
    p = s.reselect()
    assert s._cache.feats is feats  # only the weight-conditioned head ran
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


def test_no_reference_falls_back_to_vision_samplers(small_sample):
    from napari_scr2st._napari._state import Session
    from napari_scr2st.progress import drive

    s = Session(small_sample.section.copy(), reference=None)
    drive(s.iter_prepare("patch-stats"), use_tqdm=False)
    assert s.space is None and s.policy is None and s.sampling.sampler == "kcenter"
    p = s.reselect()
    assert len(p.proposal) == p.n_new > 0
    assert (s.cell_types() == "").all()
