"""The paired label-efficiency protocol on a tiny synthetic setup: one common test set per
section, paired seeds, the 100 % point shared by every sampler, the SCRL policy retrained per
seed, the paired-difference statistics, the plot and the written files."""

import numpy as np
import pandas as pd
import pytest

SAMPLERS = ["random", "grid", "kcenter", "scrl"]


@pytest.fixture(scope="module")
def setup():
    from napari_scr2st.data import make_sample
    from napari_scr2st.features import ensure_vision_embedding
    from napari_scr2st.session import fit_reference_space

    s = make_sample(220, seed=0, section="A", patient="p1")
    a = s.section
    ensure_vision_embedding(a, "patch-stats")
    b = make_sample(200, seed=1, section="B", patient="p2").section
    ensure_vision_embedding(b, "patch-stats")
    return a, b, fit_reference_space(s.reference, a)


@pytest.fixture(scope="module")
def within(setup):
    from napari_scr2st.benchmark.protocol import iter_label_efficiency
    from napari_scr2st.progress import drive

    a, _, space = setup
    runs = []
    frames = drive(iter_label_efficiency({"A": a}, space, protocol="within", samplers=SAMPLERS, budgets=[0.2, 1.0],
                                         seeds=[0, 1], rounds=2, episodes=2, imitation_episodes=0, group_size=2,
                                         n_genes=60, epochs=2, folds=2, dataset="synthetic", on_run=runs.append),
                   use_tqdm=False)
    return frames, runs


def test_columns_and_one_common_test_set(within, setup):
    from napari_scr2st.benchmark.protocol import COLUMNS
    from napari_scr2st.benchmark.within_slide import test_split

    frames, runs = within
    assert set(frames) == {"scr2net", "ridge"}
    for df in frames.values():
        assert list(df.columns) == COLUMNS
        assert len(df) == len(SAMPLERS) * 2 * 2 and set(df["sampler"]) == set(SAMPLERS)
        assert set(df["budget"]) == {0.2, 1.0} and set(df["protocol"]) == {"within"}
        assert df["pcc_heg50"].between(-1, 1).all() and (df["mse"] > 0).all()
    expected = test_split(setup[0])
    n_test = int(expected.sum())
    assert (frames["scr2net"]["n_test"] == n_test).all()
    assert len(runs) == len(SAMPLERS) * 2 * 2
    for r in runs:
        assert np.array_equal(r.test, expected)  # the same spots for every sampler, budget and seed
        assert not (r.train & r.test).any()  # never selectable, never trained on
    for r in (r for r in runs if r.budget == 0.2):
        assert r.train.sum() == int(round(0.2 * (~expected).sum()))


def test_paired_seeds_and_the_full_budget_is_shared(within):
    frames, runs = within
    df = frames["scr2net"]
    for seed in (0, 1):  # every sampler has every seed once per budget
        d = df[df["seed"] == seed]
        assert sorted(d.groupby("budget")["sampler"].apply(sorted).iloc[0]) == sorted(SAMPLERS)
    full = df[df["budget"] == 1.0]
    for _, g in full.groupby("seed"):
        metrics = g[["pcc_all", "pcc_heg50", "pcc_hvg50", "mse"]].to_numpy()
        assert np.allclose(metrics, metrics[0])  # identical for every sampler
    masks = [r.train for r in runs if r.budget == 1.0]
    assert all(np.array_equal(m, masks[0]) for m in masks)
    # the selections at 20 % differ between samplers (the comparison is not vacuous)
    part = {(r.sampler, r.seed): r.train for r in runs if r.budget == 0.2}
    assert not np.array_equal(part[("grid", 0)], part[("random", 0)])
    assert not np.array_equal(part[("random", 0)], part[("random", 1)])  # seeds re-seed the samplers


def test_scrl_policy_is_retrained_per_seed(within):
    import torch

    frames, runs = within
    pols = {r.seed: r.policy for r in runs if r.sampler == "scrl"}
    assert set(pols) == {0, 1} and all(p is not None for p in pols.values())
    p0 = torch.cat([t.detach().flatten() for t in pols[0].net.parameters()])
    p1 = torch.cat([t.detach().flatten() for t in pols[1].net.parameters()])
    assert not torch.allclose(p0, p1)
    assert len(pols[0].history) == 2  # trained (2 episodes), not a fresh network
    assert any("non-test spots" in n for n in frames["scr2net"].attrs["notes"])
    assert all(r.policy is None for r in runs if r.sampler != "scrl")


def test_cross_protocol_scores_whole_sections_of_other_patients(setup):
    from napari_scr2st.benchmark.protocol import iter_label_efficiency
    from napari_scr2st.progress import drive

    a, b, space = setup
    runs = []
    frames = drive(iter_label_efficiency({"A": a, "B": b}, space, protocol="cross", samplers=["random", "kcenter"],
                                         budgets=[0.1, 1.0], seeds=[0], n_genes=60, downstream="ridge",
                                         dataset="synthetic", on_run=runs.append), use_tqdm=False)
    df = frames["ridge"]
    assert set(frames) == {"ridge"} and set(df["test_section"]) == {"A", "B"}
    assert dict(zip(df["test_section"], df["n_test"], strict=True)) == {"A": a.n_obs, "B": b.n_obs}
    for r in runs:
        test_sec = {k.split(":")[0] for k in r.keys[r.test]}
        train_sec = {k.split(":")[0] for k in r.keys[r.train]}
        assert test_sec == {r.test_section} and r.test_section not in train_sec
    with pytest.raises(ValueError, match="shares a patient"):  # a serial section of the same patient
        drive(iter_label_efficiency({"A": a, "A2": a}, space, protocol="cross", samplers=["random"], budgets=[0.1],
                                    seeds=[0], downstream="ridge", cross_split={"A": ["A2"]}), use_tqdm=False)


def test_paired_differences_ci_on_a_hand_made_frame():
    from scipy import stats

    from napari_scr2st.benchmark.protocol import COLUMNS, paired_differences

    rows = []
    diffs = {"S1": [0.1, 0.2, 0.3], "S2": [0.0, 0.2, 0.1]}
    for sec, dd in diffs.items():
        for seed, d in enumerate(dd):
            base = 0.5 + 0.01 * seed
            for sampler, v in (("random", base), ("kcenter", base + d)):
                rows.append({"protocol": "within", "dataset": "x", "test_section": sec, "sampler": sampler,
                             "budget": 0.1, "seed": seed, "pcc_all": v, "pcc_heg50": v, "pcc_hvg50": v, "mse": 1.0,
                             "n_test": 10})
    out = paired_differences(pd.DataFrame(rows, columns=COLUMNS))
    assert set(out["sampler"]) == {"kcenter"}
    s1 = out[out["test_section"] == "S1"].iloc[0]
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert s1["mean_diff"] == pytest.approx(0.2) and s1["sd"] == pytest.approx(0.1) and s1["n"] == 3
    assert s1["ci_low"] == pytest.approx(0.2 - half) and s1["ci_high"] == pytest.approx(0.2 + half)
    assert half == pytest.approx(0.248414, abs=1e-5)
    pooled = out[out["test_section"] == "all"].iloc[0]
    allv = np.array(diffs["S1"] + diffs["S2"])
    h6 = stats.t.ppf(0.975, 5) * allv.std(ddof=1) / np.sqrt(6)
    assert pooled["n"] == 6 and pooled["mean_diff"] == pytest.approx(allv.mean())
    assert pooled["ci_high"] - pooled["mean_diff"] == pytest.approx(h6)
    with pytest.raises(ValueError, match="baseline"):
        paired_differences(pd.DataFrame(rows, columns=COLUMNS), baseline="grid")


def test_plot_and_results_are_written(within, tmp_path):
    from napari_scr2st.benchmark.protocol import COLUMNS, plot_label_efficiency, write_results

    frames, _ = within
    png = plot_label_efficiency(frames["scr2net"], tmp_path / "curves.png", band="ci")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = write_results(frames, tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == ["label_efficiency.csv", "label_efficiency.md", "label_efficiency_ridge.csv"]
    back = pd.read_csv(tmp_path / "out" / "label_efficiency.csv")
    assert list(back.columns) == COLUMNS and len(back) == len(frames["scr2net"])
    md = (tmp_path / "out" / "label_efficiency.md").read_text()
    assert "Paired difference to random" in md and "kcenter" in md
