"""The paired benchmark verbs on the embedded synthetic sample (tiny settings)."""

import pandas as pd

from napari_scr2st.cli import main

COLUMNS = ["protocol", "dataset", "test_section", "sampler", "budget", "seed", "pcc_all", "pcc_heg50", "pcc_hvg50",
           "mse", "n_test"]


def test_label_efficiency_writes_the_paired_table_and_figure(tmp_path, capsys):
    out = tmp_path / "le"
    assert main(["benchmark", "label-efficiency", "--n-spots", "250", "--encoder", "patch-stats", "--samplers",
                 "random,grid,lcmd", "--budgets", "10%,1.0", "--seeds", "2", "--epochs", "2", "--n-genes", "30",
                 "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out / "label_efficiency.csv")
    assert list(df.columns) == COLUMNS and set(df["budget"]) == {0.1, 1.0} and set(df["seed"]) == {0, 1}
    assert df.groupby(["budget", "seed"])["n_test"].nunique().eq(1).all()  # one common test set
    full = df[df["budget"] == 1.0].groupby("seed")["pcc_all"].nunique()
    assert (full == 1).all()  # at 100 % every sampler sequences the same spots
    assert (out / "label_efficiency.png").stat().st_size > 5000 and (out / "label_efficiency_ridge.csv").is_file()
    assert "mean_diff" in capsys.readouterr().out


def test_within_slide_verb(tmp_path):
    out = tmp_path / "ws.csv"
    assert main(["benchmark", "within-slide", "--n-spots", "250", "--encoder", "patch-stats", "--budgets", "0.2",
                 "--seeds", "1", "--epochs", "2", "--n-genes", "30", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out)
    assert set(df["model"]) == {"scr2net", "scr2net_histology", "ridge", "knn", "spatial_kernel"}


def test_bad_budget_is_one_line(capsys):
    assert main(["benchmark", "label-efficiency", "--budgets", "0,1.5", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budgets" in err[0]


def test_benchmark_sampling_runs_the_protocol_on_any_input_sections(tmp_path):
    from napari_scr2st.data import make_sample

    paths = []
    for s in (1, 2):
        smp = make_sample(200, seed=s, section=f"SYN{s}")
        smp.section.write_h5ad(tmp_path / f"s{s}.h5ad")
        paths.append(str(tmp_path / f"s{s}.h5ad"))
    smp.reference.write_h5ad(tmp_path / "ref.h5ad")
    out = tmp_path / "bench"
    assert main(["benchmark", "sampling", *paths, "--reference", str(tmp_path / "ref.h5ad"), "--encoder",
                 "patch-stats", "--samplers", "random,grid,greedy", "--budgets", "10%", "--seeds", "2", "--epochs", "2",
                 "--n-genes", "30", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out / "label_efficiency.csv")
    assert list(df.columns) == COLUMNS
    assert set(df["test_section"]) == {"SYN1", "SYN2"} and set(df["sampler"]) == {"random", "grid", "greedy"}
    assert len(df) == 2 * 3 * 2 and df["pcc_all"].notna().all()
    # every sampler of a (section, seed) is scored on the same test spots
    assert df.groupby(["test_section", "seed"])["n_test"].nunique().eq(1).all()
    # greedy needs a single-cell reference
    assert main(["benchmark", "sampling", *paths, "--samplers", "greedy", "--out", str(out), "--quiet"]) == 2

