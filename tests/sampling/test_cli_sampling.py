"""The sampling verbs of the CLI, on the embedded synthetic sample (small and fast)."""

import argparse

import pandas as pd
import pytest


def _parser():
    from napari_scr2st.cli import _sampling

    p = argparse.ArgumentParser(prog="scr2st")
    sub = p.add_subparsers(dest="command")
    _sampling.register(sub)
    return p


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


COMMON = ["--n-spots", "300", "--encoder", "patch-stats", "--quiet"]


def test_register_is_import_safe_and_adds_verbs():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, napari_scr2st.cli._sampling as m; "
                          "print([k for k in ('torch', 'numpy', 'scanpy') if k in sys.modules])"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "torch" not in out.stdout and "scanpy" not in out.stdout
    p = _parser()
    for argv in (["select"], ["train-policy"], ["benchmark", "sampling"], ["import-counts", "x.csv", "--state", "s"]):
        assert callable(p.parse_args(argv).func)
    # a 'benchmark' group registered by someone else is reused
    p2 = argparse.ArgumentParser()
    sub = p2.add_subparsers()
    b = sub.add_parser("benchmark")
    bs = b.add_subparsers()
    bs.add_parser("model")
    from napari_scr2st.cli import _sampling

    _sampling.register(sub)
    from napari_scr2st.cli import _benchmark

    assert p2.parse_args(["benchmark", "sampling"]).func is _benchmark.run_label_efficiency
    assert p2.parse_args(["benchmark", "label-efficiency"]).func is _benchmark.run_label_efficiency


def test_select_simulated_then_real_rounds(tmp_path, capsys):
    out = tmp_path / "sel.csv"
    assert _run(["select", *COMMON, "--sampler", "greedy", "--budget", "10%", "--rounds", "2", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    # the sequencing lab's CSV format (io.export.SELECTION_COLUMNS)
    from napari_scr2st.io.export import SELECTION_COLUMNS

    assert len(df) == 30 and list(df.columns) == SELECTION_COLUMNS
    assert sorted(df["round"].unique()) == [1, 2] and set(df["picked_by"]) == {"greedy"}  # counted from 1
    assert "total=" in capsys.readouterr().out
    # locks and exclusions from the command line
    ids = df["spot_id"].tolist()
    out2 = tmp_path / "sel2.csv"
    _run(["select", *COMMON, "--sampler", "kcenter", "--budget", "20", "--lock", ",".join(ids[:3]),
          "--exclude", ",".join(ids[3:10]), "--out", str(out2)])
    d2 = pd.read_csv(out2)
    assert len(d2) == 20 and set(ids[:3]) <= set(d2["spot_id"]) and not set(ids[3:10]) & set(d2["spot_id"])
    assert (d2.set_index("spot_id").loc[ids[:3], "picked_by"] == "manual").all()


def test_train_policy_then_select_with_it(tmp_path, capsys):
    pol = tmp_path / "policy.pt"
    assert _run(["train-policy", *COMMON, "--episodes", "3", "--imitation-episodes", "2", "--rounds", "2",
                 "--group-size", "2", "--out", str(pol)]) == 0
    assert pol.is_file() and (tmp_path / "policy.pt.json").is_file()
    out = tmp_path / "s.csv"
    assert _run(["select", *COMMON, "--sampler", "scrl", "--policy", str(pol), "--budget", "15", "--rounds", "3",
                 "--weights", "0,0,1", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 15
    from napari_scr2st.cli._common import CLIError

    with pytest.raises(CLIError, match="--policy"):
        _run(["select", *COMMON, "--sampler", "scrl", "--out", str(out)])


def test_import_counts_verb(tmp_path, capsys):
    from napari_scr2st.data import make_sample

    state = tmp_path / "run.npz"
    sel = tmp_path / "r0.csv"
    h5 = tmp_path / "sec.h5ad"
    s = make_sample(300, seed=0).section
    s.write_h5ad(h5)
    _run(["select", str(h5), "--encoder", "patch-stats", "--quiet", "--sampler", "grid", "--budget", "12",
          "--rounds", "2", "--state", str(state), "--out", str(sel)])
    out = capsys.readouterr().out
    assert "import-counts" in out and "\nround 1 of 2 selected;" in out  # rounds counted from 1, as in the file
    assert set(pd.read_csv(sel)["round"]) == {1}
    picked = pd.read_csv(sel)["spot_id"].astype(str).tolist()
    assert len(picked) == 6
    X = s[picked].X.toarray()
    counts = pd.DataFrame(X, columns=list(s.var_names))
    counts.insert(0, "spot_id", picked)
    counts.to_csv(tmp_path / "c.csv", index=False)
    assert _run(["import-counts", str(tmp_path / "c.csv"), "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "6 of 6 selected spots are measured; round 1 of 2 sequenced; next: round 2 of 2" in out
    _run(["select", str(h5), "--encoder", "patch-stats", "--quiet", "--sampler", "grid", "--budget", "12",
          "--rounds", "2", "--state", str(state), "--out", str(sel)])
    assert "\nround 2 of 2 selected;" in capsys.readouterr().out and set(pd.read_csv(sel)["round"]) == {2}
    from napari_scr2st.sampling import SelectionState

    st = SelectionState.load(state)
    assert st.n_selected == 12 and st.measured.sum() == 6 and st.current_round == 2


def test_demo_selection_step():
    from napari_scr2st.cli._sampling import demo_selection_step
    from napari_scr2st.data import make_sample

    res = demo_selection_step(make_sample(300, seed=0), sampler="greedy", budget="10%", rounds=2)
    assert len(res.table) == 30 and len(res.history) == 2
    assert 0 <= res.terms.sc <= 1 and 0 <= res.terms.type <= 1 and 0 < res.terms.sp <= 1


def test_select_accepts_the_expected_error_weight(tmp_path, capsys):
    """--weight-unc (or a fourth --weights number) sets the r_unc weight; both at once, or a
    negative weight, is a one-line error naming the option."""
    from napari_scr2st.cli._common import CLIError
    from napari_scr2st.cli._sampling import _settings
    from napari_scr2st.config import SamplingSettings

    def settings(*extra):
        return _settings(_parser().parse_args(["select", *extra]))

    assert settings().reward_weights == SamplingSettings().reward_weights
    assert settings("--weights", "1,0,2", "--weight-unc", "0.5").reward_weights == (1.0, 0.0, 2.0, 0.5)
    assert settings("--weights", "1,1,1,4").reward_weights == (1.0, 1.0, 1.0, 4.0)
    for bad, opt in ((["--weights", "1,1,1,1", "--weight-unc", "2"], "--weight-unc"),
                     (["--weight-unc", "-1"], "--weight-unc"), (["--weights", "0,0,0", "--weight-unc", "0"], "--weights")):
        with pytest.raises(CLIError, match=opt):
            settings(*bad)
    out = tmp_path / "unc.csv"
    assert _run(["select", *COMMON, "--sampler", "greedy", "--budget", "10%", "--rounds", "1", "--weights", "0,0,0",
                 "--weight-unc", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "unc=1" in text and "r_unc=" in text
    assert float(text.split("r_unc=")[1].split()[0]) > 0
    assert len(pd.read_csv(out)) == 30
