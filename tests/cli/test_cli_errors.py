"""Bad input on every verb ends as ONE line ``scr2st VERB: error: ...`` naming the file or option,
exit code 2 (Ctrl-C: 130), never a traceback; checks run before any slow work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from napari_scr2st.cli import main

SYN = ["--n-spots", "200", "--encoder", "patch-stats", "--quiet"]
HER2ST = "{data}/her2st"


@pytest.fixture(scope="module")
def files(tmp_path_factory, shared_data):
    """Tiny good and bad files, written once: ``{name: path}`` for the argv templates."""
    import anndata as ad
    import scipy.sparse as sp
    import torch

    from napari_scr2st.data import make_sample
    from napari_scr2st.sampling import SelectionState

    d = tmp_path_factory.mktemp("bad-inputs")
    smp = make_sample(200, seed=0)
    sec, ref = smp.section, smp.reference
    f = {"tmp": d, "data": shared_data}
    f["h5"] = d / "sec.h5ad"
    sec.write_h5ad(f["h5"])
    f["ref"] = d / "ref.h5ad"
    ref.write_h5ad(f["ref"])
    f["trunc"] = d / "truncated.h5ad"
    f["trunc"].write_bytes(f["h5"].read_bytes()[:2000])
    f["garbage_h5ad"] = d / "garbage.h5ad"
    f["garbage_h5ad"].write_text("this is not HDF5\n")
    f["garbage_pt"] = d / "garbage.pt"
    f["garbage_pt"].write_bytes(b"\x00\x01not a torch file" * 10)
    f["foreign_pt"] = d / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, f["foreign_pt"])
    f["garbage_npz"] = d / "garbage.npz"
    f["garbage_npz"].write_bytes(b"PK\x03\x04 truncated zip")
    f["txt"] = d / "notes.txt"
    f["txt"].write_text("hello\n")
    f["dir"] = d / "a_folder"
    f["dir"].mkdir()
    f["existing_file"] = d / "existing_file"
    f["existing_file"].write_text("x")
    # a section with inf in its counts (a file name that says nothing about it), one with a zeroed
    # embedding of the right shape
    bad = sec.copy()
    X = bad.X.toarray()
    X[3, 5] = np.inf
    bad.X = sp.csr_matrix(X)
    f["nonfinite_h5"] = d / "bad_values.h5ad"
    bad.write_h5ad(f["nonfinite_h5"])
    f["bad_gene"], f["bad_spot"] = str(sec.var_names[5]), str(sec.obs_names[3])
    # an H&E image before sequencing (no counts), for the slide options
    from PIL import Image

    rng = np.random.default_rng(0)
    he = np.full((120, 160, 3), 238, np.uint8)
    he[30:90, 40:120] = rng.integers(90, 170, (60, 80, 3))
    f["png"] = d / "he.png"
    Image.fromarray(he).save(f["png"])
    zero = sec.copy()
    zero.obsm["X_vision"] = np.zeros((zero.n_obs, 16), dtype=np.float32)
    f["zero_h5"] = d / "zero_embedding.h5ad"
    zero.write_h5ad(f["zero_h5"])
    # predictions without a section named Z9
    pred = ad.AnnData(X=sec.X[:20].copy(), obs=pd.DataFrame({"section": ["SYN1"] * 20}, index=sec.obs_names[:20]),
                      var=pd.DataFrame(index=sec.var_names))
    pred.obsm["X_pred"] = np.zeros((20, sec.n_vars), dtype=np.float32)
    f["pred"] = d / "pred.h5ad"
    pred.write_h5ad(f["pred"])
    # selection states: one section (with its gene names), two sections sharing ids
    ids = [f"{x}x{y}" for x, y in zip(range(10, 16), range(12, 18), strict=True)]
    st = SelectionState(ids, ["C3"] * 6)
    st.mark_selected([0, 1, 2])
    st.meta["section_genes"] = [f"G{i}" for i in range(20)]
    f["state"] = d / "run.npz"
    st.save(f["state"])
    st2 = SelectionState(ids * 2, ["C3"] * 6 + ["C4"] * 6)
    f["state2"] = d / "run2.npz"
    st2.save(f["state2"])

    def counts(name, genes=None, values=None, ids_=("10x12", "11x13"), section=None):
        genes = genes or [f"G{i}" for i in range(20)]
        X = np.ones((len(ids_), len(genes))) if values is None else values
        df = pd.DataFrame(X, columns=genes)
        df.insert(0, "spot_id", list(ids_))
        if section:
            df.insert(1, "section", section)
        f[name] = d / f"{name}.csv"
        df.to_csv(f[name], index=False)

    counts("counts")
    counts("ensembl", genes=[f"ENSG{i:011d}" for i in range(20)])
    counts("lognorm", values=np.full((2, 20), 0.6931))
    vals = np.ones((2, 20))
    vals[1, 4] = np.inf
    counts("infcounts", values=vals)
    counts("negative", values=-np.ones((2, 20)))
    counts("truncated_genes", genes=[f"G{i}" for i in range(4)])
    counts("unknown_ids", ids_=("99x99", "98x98"))
    f["empty_counts"] = d / "empty.csv"
    f["empty_counts"].write_text("")
    f["header_only"] = d / "header_only.csv"
    f["header_only"].write_text("spot_id,G0,G1\n")
    counts("text_counts")
    df = pd.read_csv(f["text_counts"])
    df["G0"] = df["G0"].astype(object)
    df.loc[0, "G0"] = "abc"
    df.to_csv(f["text_counts"], index=False)
    pd.DataFrame(np.ones((20, 2)), columns=["10x12", "11x13"], index=[f"G{i}" for i in range(20)]).rename_axis(
        "gene").reset_index().to_csv(d / "transposed.csv", index=False)
    f["transposed"] = d / "transposed.csv"
    f["ids_unknown"] = d / "ids_unknown.txt"
    f["ids_unknown"].write_text("10x12\n999x999\n")
    return f


def _fmt(argv, files):
    return [a.format(**files) for a in argv]


CASES = [
    # ---------------------------------------------------------------- select: settings
    ("select", ["select", *SYN, "--rounds", "0"], "--rounds"),
    ("select", ["select", *SYN, "--rounds", "two"], "--rounds"),
    ("select", ["select", *SYN, "--budget", "abc"], "--budget"),
    ("select", ["select", *SYN, "--budget", "0"], "--budget"),
    ("select", ["select", *SYN, "--budget", "150%"], "--budget '150%': a percentage of the spots must be more than 0 % "
                                                      "and at most 100 %"),
    ("select", ["select", *SYN, "--budget", "0%"], "at most 100 %"),
    ("select", ["select", *SYN, "--budget", "x%"], "expected a percentage like '15%'"),
    ("select", ["select", *SYN, "--budget", "-5"], "--budget"),
    ("select", ["select", *SYN, "--weights", "1,2"], "--weights"),
    ("select", ["select", *SYN, "--weights", "1,-1,1"], "--weights"),
    ("select", ["select", *SYN, "--weights", "a,b,c"], "--weights"),
    ("select", ["select", *SYN, "--sampler", "nope"], "--sampler"),
    ("select", ["select", *SYN, "--sampler", "scrl"], "--policy"),
    ("select", ["select", *SYN, "--sampler", "scrl", "--policy", "{tmp}/missing.pt"], "missing.pt"),
    ("select", ["select", *SYN, "--sampler", "scrl", "--policy", "{garbage_pt}"], "garbage.pt"),
    ("select", ["select", *SYN, "--sampler", "scrl", "--policy", "{foreign_pt}"], "foreign.pt"),
    ("select", ["select", *SYN, "--seed", "1.5"], "--seed"),
    # ---------------------------------------------------------------- select: files
    ("select", ["select", "{h5}", *SYN, "--sampler", "greedy"], "--reference"),
    ("select", ["select", "{h5}", *SYN, "--reference", "{tmp}/missing.h5ad"], "missing.h5ad"),
    ("select", ["select", "{h5}", *SYN, "--reference", "{garbage_h5ad}"], "garbage.h5ad"),
    ("select", ["select", "{h5}", *SYN, "--reference", "{trunc}"], "truncated.h5ad"),
    ("select", ["select", "{h5}", *SYN, "--reference", "{dir}"], "a_folder"),
    ("select", ["select", "{h5}", *SYN, "--reference", "{txt}"], "notes.txt"),
    ("select", ["select", "{tmp}/nothing.h5ad", *SYN, "--sampler", "kcenter"], "nothing.h5ad"),
    ("select", ["select", "{trunc}", *SYN, "--sampler", "kcenter"], "truncated.h5ad"),
    ("select", ["select", "{txt}", *SYN, "--sampler", "kcenter"], "notes.txt"),
    ("select", ["select", *SYN, "--out", "{tmp}/sel.xlsx"], "--out"),
    ("select", ["select", *SYN, "--out", "{tmp}/no/such/folder/sel.csv"], "--out"),
    ("select", ["select", *SYN, "--out", "{dir}"], "--out"),
    ("select", ["select", *SYN, "--state", "{garbage_npz}"], "--state"),
    ("select", ["select", *SYN, "--state", "{tmp}/run.txt"], "--state"),
    ("select", ["select", *SYN, "--lock", "@{tmp}/missing_ids.txt"], "--lock"),
    ("select", ["select", *SYN, "--exclude", "{tmp}/missing_ids.csv"], "--exclude"),
    ("select", ["select", *SYN, "--sampler", "kcenter", "--exclude", "{ids_unknown}"], "999x999"),
    ("select", ["select", *SYN, "--sections", "C3"], "--sections"),
    ("select", ["select", *SYN, "--platform", "legacy_st"], "--platform"),
    ("select", ["select", "{h5}", *SYN, "--sampler", "kcenter", "--platform", "visium"], "--platform"),
    ("select", ["select", "{h5}", *SYN, "--sampler", "kcenter", "--spots", "{tmp}/spots.tsv"], "--spots"),
    ("select", ["select", *SYN, "--um-per-px", "-1"], "--um-per-px"),
    ("select", ["select", *SYN, "--n-spots", "0"], "--n-spots"),
    ("select", ["select", HER2ST, *SYN, "--sampler", "kcenter", "--sections", "Z9"], "Z9"),
    ("select", ["select", "{png}", *SYN, "--sampler", "kcenter", "--platform", "custom", "--um-per-px", "1"],
     "--platform custom needs --spot-um and --pitch-um"),
    ("select", ["select", "{nonfinite_h5}", *SYN, "--sampler", "kcenter"], "infinite or NaN values"),
    ("select", ["select", "{h5}", *SYN, "--sampler", "kcenter", "--state", "{state}"],
     "run.npz: the selection state (6 spots, sections C3) does not match the pool (200 spots, sections SYN1)"),
    ("select", ["select", "{h5}", *SYN, "--sampler", "kcenter", "--lock", "10x12,999x999"], "--lock"),
    # ---------------------------------------------------------------- import-counts
    ("import-counts", ["import-counts", "{tmp}/missing.csv", "--state", "{state}"], "missing.csv"),
    ("import-counts", ["import-counts", "{dir}", "--state", "{state}"], "a_folder"),
    ("import-counts", ["import-counts", "{garbage_h5ad}", "--state", "{state}"], "garbage.h5ad"),
    ("import-counts", ["import-counts", "{counts}"], "--state"),
    ("import-counts", ["import-counts", "{counts}", "--state", "{tmp}/missing.npz"], "missing.npz"),
    ("import-counts", ["import-counts", "{counts}", "--state", "{garbage_npz}"], "garbage.npz"),
    ("import-counts", ["import-counts", "{counts}", "--state", "{state2}"], "section"),
    ("import-counts", ["import-counts", "{counts}", "--state", "{state}", "--section", "Z9"], "Z9"),
    ("import-counts", ["import-counts", "{ensembl}", "--state", "{state}"], "gene naming"),
    ("import-counts", ["import-counts", "{lognorm}", "--state", "{state}"], "'G0'"),
    ("import-counts", ["import-counts", "{infcounts}", "--state", "{state}"], "'G4'"),
    ("import-counts", ["import-counts", "{negative}", "--state", "{state}"], "negative"),
    ("import-counts", ["import-counts", "{truncated_genes}", "--state", "{state}"], "truncated"),
    ("import-counts", ["import-counts", "{unknown_ids}", "--state", "{state}"], "99x99"),
    ("import-counts", ["import-counts", "{empty_counts}", "--state", "{state}"], "empty.csv"),
    ("import-counts", ["import-counts", "{header_only}", "--state", "{state}"], "header_only.csv"),
    ("import-counts", ["import-counts", "{text_counts}", "--state", "{state}"], "'G0'"),
    ("import-counts", ["import-counts", "{transposed}", "--state", "{state}"], "genes x spots"),
    # ---------------------------------------------------------------- train-policy
    ("train-policy", ["train-policy", *SYN, "--episodes", "0"], "--episodes"),
    ("train-policy", ["train-policy", *SYN, "--lr", "0"], "--lr"),
    ("train-policy", ["train-policy", *SYN, "--budget-range", "0.5"], "--budget-range"),
    ("train-policy", ["train-policy", *SYN, "--budget-range", "0.5,0.2"], "--budget-range"),
    ("train-policy", ["train-policy", *SYN, "--out", "{tmp}/policy.txt"], "--out"),
    ("train-policy", ["train-policy", "{h5}", *SYN], "--reference"),
    ("train-policy", ["train-policy", *SYN, "--group-size", "0"], "--group-size"),
    ("train-policy", ["train-policy", *SYN, "--imitation-episodes", "-1"], "--imitation-episodes"),
    ("train-policy", ["train-policy", "{h5}", *SYN, "--reference", "{garbage_h5ad}"], "garbage.h5ad"),
    # ---------------------------------------------------------------- benchmark sampling
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{tmp}/b", "--samplers", "foo"], "--samplers"),
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{tmp}/b", "--budgets", "abc"], "--budgets"),
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{tmp}/b", "--seeds", "0"], "--seeds"),
    ("benchmark sampling", ["benchmark", "sampling", "{tmp}/none.h5ad", "--out", "{tmp}/b"], "none.h5ad"),
    ("benchmark sampling", ["benchmark", "sampling", "{h5}", "--out", "{tmp}/b", "--samplers", "greedy"], "--reference"),
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{tmp}/b", "--rounds", "0"], "--rounds"),
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{tmp}/b", "--protocol", "sideways"], "--protocol"),
    ("benchmark sampling", ["benchmark", "label-efficiency", "--out", "{tmp}/b", "--budgets", "0,1.5"], "--budgets"),
    ("benchmark sampling", ["benchmark", "sampling", "--out", "{existing_file}"], "--out"),
    # ---------------------------------------------------------------- train
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--n-genes", "0"], "--n-genes"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--epochs", "0"], "--epochs"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--batch-size", "1"], "--batch-size"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--lr", "-1"], "--lr"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--alpha", "2"], "--alpha"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--val-fraction", "0.95"], "--val-fraction"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "1.5"], "--train-fraction"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--device", "tpu9"], "--device"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--resume", "{tmp}/missing.pt"], "missing.pt"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--resume", "{garbage_pt}"], "garbage.pt"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--resume", "{foreign_pt}"], "foreign.pt"),
    ("train", ["train", "--out", "{tmp}/m", "--train-mask", "{tmp}/missing.csv"], "missing.csv"),
    ("train", ["train", "--out", "{existing_file}", "--train-fraction", "0.5"], "--out"),
    ("train", ["train", "--train-fraction", "0.5"], "--out"),
    ("train", ["train", "--out", "{tmp}/m"], "--train-mask"),
    ("train", ["train", "--out", "{tmp}/m", "--train-fraction", "0.5", "--mode", "magic"], "--mode"),
    ("train", ["train", "{nonfinite_h5}", "--out", "{tmp}/m", "--train-fraction", "0.5"],
     "bad_values.h5ad: X holds 1 infinite or NaN values (first inf in gene"),
    ("train", ["train", "{h5}", "--out", "{tmp}/m", "--train-fraction", "0.5", "--n-genes", "5000"], "--n-genes"),
    ("train", ["train", "{h5}", "--out", "{tmp}/m", "--train-sections", "Z9"], "Z9"),
    ("train", ["train", "{zero_h5}", "--out", "{tmp}/m", "--train-fraction", "0.5"], "X_vision"),
    ("train", ["train", "{tmp}/nothing.h5ad", "--out", "{tmp}/m", "--train-fraction", "0.5"], "nothing.h5ad"),
    # ---------------------------------------------------------------- predict
    ("predict", ["predict", "--model", "{garbage_pt}", "--out", "{tmp}/p.csv"], "--out"),
    ("predict", ["predict", "--model", "{tmp}/missing.pt", "--out", "{tmp}/p.h5ad"], "missing.pt"),
    ("predict", ["predict", "--model", "{garbage_pt}", "--out", "{tmp}/p.h5ad"], "garbage.pt"),
    ("predict", ["predict", "--model", "{foreign_pt}", "--out", "{tmp}/p.h5ad"], "foreign.pt"),
    ("predict", ["predict", "--model", "{dir}", "--out", "{tmp}/p.h5ad"], "model.pt"),
    ("predict", ["predict", "--model", "{garbage_pt}", "--out", "{tmp}/p.h5ad", "--mc-samples", "-1"], "--mc-samples"),
    ("predict", ["predict", "--model", "{garbage_pt}", "--out", "{tmp}/p.h5ad", "--device", "nope"], "--device"),
    ("predict", ["predict", "{tmp}/nothing.h5ad", "--model", "{garbage_pt}", "--out", "{tmp}/p.h5ad"], "nothing.h5ad"),
    ("predict", ["predict", "--out", "{tmp}/p.h5ad"], "--model"),
    # ---------------------------------------------------------------- evaluate
    ("evaluate", ["evaluate", "{tmp}/missing.h5ad"], "missing.h5ad"),
    ("evaluate", ["evaluate", "{garbage_h5ad}"], "garbage.h5ad"),
    ("evaluate", ["evaluate", "{trunc}"], "truncated.h5ad"),
    ("evaluate", ["evaluate", "{h5}"], "X_pred"),
    ("evaluate", ["evaluate", "{pred}", "--truth", "{tmp}/missing.h5ad"], "--truth"),
    ("evaluate", ["evaluate", "{pred}", "--out", "{tmp}/metrics.txt"], "--out"),
    ("evaluate", ["evaluate", "{pred}", "--test-sections", "Z9"], "Z9"),
    ("evaluate", ["evaluate", "{pred}", "--mask", "{tmp}/missing.csv"], "missing.csv"),
    ("evaluate", ["evaluate", "{pred}", "--all", "--mask", "{tmp}/m.csv"], "--mask"),
    # ---------------------------------------------------------------- info
    ("info", ["info", "{tmp}/nothing.tsv"], "nothing.tsv"),
    ("info", ["info", "{garbage_h5ad}"], "garbage.h5ad"),
    ("info", ["info", "{trunc}"], "truncated.h5ad"),
    ("info", ["info", "{txt}"], "notes.txt"),
    ("info", ["info", "{dir}"], "a_folder"),
    ("info", ["info", HER2ST, "--section", "Z9"], "Z9"),
    ("info", ["info", "{data}/her2st/data/ST-cnts/C3.tsv.gz", "--platform", "visium"], "--platform"),
    ("info", ["info", "{h5}", "--um-per-px", "0"], "--um-per-px"),
    ("info", ["info", "{ref}", "--section", "Z9"], "--section Z9: "),
    ("info", ["info", "{h5}", "--section", "Z9"], "no section 'Z9'"),
    ("info", ["info", "{nonfinite_h5}"], "infinite or NaN values"),
]


def _check_one_line(err: str, verb: str, needle: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith(f"scr2st {verb}: error: "), line
    assert needle in line, line
    assert line == lines[-1], err  # nothing after it
    return line


@pytest.mark.parametrize(("verb", "argv", "needle"), CASES, ids=[f"{i:03d}-{c[0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2(files, capsys, verb, argv, needle):
    rc = main(_fmt(argv, files))
    err = capsys.readouterr().err
    assert rc == 2, err
    _check_one_line(err, verb, needle)


def test_enough_distinct_cases():
    assert len({tuple(c[1]) for c in CASES}) >= 60
    assert {c[0] for c in CASES} >= {"select", "import-counts", "train-policy", "train", "predict", "evaluate",
                                     "info", "benchmark sampling"}


def test_no_verb_prints_help(capsys):
    assert main([]) == 1 and "COMMAND" in capsys.readouterr().out


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_input_is_permission_denied(files, capsys, tmp_path):
    p = tmp_path / "locked.h5ad"
    p.write_bytes(files["h5"].read_bytes())
    p.chmod(0)
    assert main(["info", str(p)]) == 2
    _check_one_line(capsys.readouterr().err, "info", "permission denied")


def test_permission_error_while_writing_names_the_file(files, capsys, monkeypatch, tmp_path):
    """A PermissionError deep in the work (a file system that refuses the write) is one line."""
    from napari_scr2st.sampling import state

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(state.SelectionState, "save", refuse)
    rc = main(["import-counts", str(files["counts"]), "--state", str(files["state"])])
    assert rc == 2
    _check_one_line(capsys.readouterr().err, "import-counts", "run.npz: permission denied")


def test_unwritable_output_folder(files, capsys, monkeypatch, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(out) else real(p, mode, **kw))
    rc = main(["select", *SYN, "--out", str(out / "sel.csv")])
    assert rc == 2
    _check_one_line(capsys.readouterr().err, "select", "not writable")


def test_cuda_or_mps_missing_is_refused_before_work(files, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for dev, word in (("cuda", "CUDA"), ("cuda:1", "CUDA"), ("gpu", "CUDA")):
        assert main(["train", "--out", str(files["tmp"] / "m"), "--train-fraction", "0.5", "--device", dev]) == 2
        _check_one_line(capsys.readouterr().err, "train", word)
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        assert main(["predict", "--model", str(files["garbage_pt"]), "--out", str(files["tmp"] / "p.h5ad"),
                     "--device", "mps"]) == 2
        _check_one_line(capsys.readouterr().err, "predict", "MPS")


def test_ctrl_c_in_process_keeps_the_state(files, capsys, monkeypatch, tmp_path):
    from napari_scr2st import session

    state = tmp_path / "run.npz"
    state.write_bytes(files["state"].read_bytes())
    before = state.read_bytes()

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(session, "import_counts_into", interrupted)
    rc = main(["import-counts", str(files["counts"]), "--state", str(state)])
    err = capsys.readouterr().err
    assert rc == 130 and "Traceback" not in err
    assert err.strip() == f"scr2st import-counts: interrupted (Ctrl-C); {state} is unchanged"
    assert state.read_bytes() == before


def test_a_swallowed_ctrl_c_still_stops_the_run(monkeypatch, capsys, tmp_path):
    """A KeyboardInterrupt that lands in code which drops it (a ``__del__``, a weakref callback)
    would leave a long run going; the CLI records the Ctrl-C and stops at the next progress step."""
    from napari_scr2st.progress import Progress, interrupt_noted
    from napari_scr2st.sampling import scrl

    steps = []

    def training(*a, **k):
        for i in range(1000):
            steps.append(i)
            if i == 2:
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(0.5)  # the handler runs here and raises; the except drops it
                except KeyboardInterrupt:
                    pass
            yield Progress(i, 1000)
        return []

    monkeypatch.setattr(scrl, "iter_train_policy", training)
    out = tmp_path / "p.pt"
    rc = main(["train-policy", *SYN, "--episodes", "1000", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 130, err
    assert steps == [0, 1, 2]  # stopped at the step after the Ctrl-C, not after 1000
    assert err.strip().endswith(f"interrupted (Ctrl-C); {out} was not written") and not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and not interrupt_noted()


def test_ctrl_c_inside_exec_code_still_exits_130(tmp_path):
    """Ctrl-C landing in exec'd code (a dataclass or namedtuple being built) under ``python -m``:
    CPython would kill the process with SIGINT at exit (-2); the CLI still exits 130."""
    (tmp_path / "ki_run.py").write_text(
        "import sys\n"
        "from napari_scr2st.cli import _sampling, main\n"
        "def interrupted(args):\n"
        "    exec('raise KeyboardInterrupt')\n"
        "_sampling.run_train_policy = interrupted\n"
        f"sys.exit(main(['train-policy', '--out', {str(tmp_path / 'p.pt')!r}]))\n")
    proc = subprocess.run([sys.executable, "-m", "ki_run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().endswith(f"interrupted (Ctrl-C); {tmp_path / 'p.pt'} was not written")


def test_ctrl_c_signal_exits_130(tmp_path):
    """A real SIGINT while a long run works: exit 130, one line, the output not written."""
    out = tmp_path / "policy.pt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "napari_scr2st.cli", "train-policy", *SYN, "--episodes", "100000",
                             "--out", str(out)], stderr=subprocess.PIPE, text=True, env=env)
    t0 = time.time()
    line = ""
    while time.time() - t0 < 240:
        line = proc.stderr.readline()
        if "training on" in line or not line:
            break
    assert "training on" in line, line
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"no exit 60 s after SIGINT; stderr:\n{err}")
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"interrupted (Ctrl-C); {out} was not written" in err
    assert not out.exists()


@pytest.mark.parametrize("argv", [
    ["train", "{nonfinite_h5}", "--out", "{tmp}/m", "--train-fraction", "0.5"],
    ["info", "{nonfinite_h5}"],
    ["select", "{nonfinite_h5}", *SYN, "--sampler", "kcenter"],
])
def test_nonfinite_counts_named_without_a_numpy_warning(files, capsys, argv):
    """inf in X is refused as infinite (with the gene and spot), not as "non-integer", and numpy's
    "invalid value encountered in remainder" never reaches the user."""
    rc = main(_fmt(argv, files))
    out = capsys.readouterr()
    assert rc == 2, out.err
    line = _check_one_line(out.err, argv[0], "infinite or NaN values")
    assert f"gene '{files['bad_gene']}' at spot '{files['bad_spot']}'" in line, line
    assert "bad_values.h5ad" in line and "non-integer" not in line
    assert "warning" not in out.err and "invalid value" not in out.err, out.err


class _SlowWork:
    """Stand-ins for the slow steps of a verb: each records that it ran, then stops the verb."""

    def __init__(self, monkeypatch, *, read: bool):
        from napari_scr2st import io, reference, session

        self.calls: list[str] = []
        real_read = io.read

        def fake_read(*a, **k):
            self.calls.append("read")
            if not read:
                raise AssertionError("the section was read before the arguments were checked")
            return real_read(*a, **k)

        def fake(name):
            def stop(*a, **k):
                self.calls.append(name)
                raise AssertionError(f"{name} ran before the arguments were checked")
            return stop

        monkeypatch.setattr(io, "read", fake_read)
        monkeypatch.setattr(reference, "read_reference", fake("read_reference"))
        monkeypatch.setattr(session.AcquisitionSession, "iter_prepare", fake("embedding"))
        monkeypatch.setattr(session, "_iter_vision", fake("embedding"))


BEFORE_READ = [
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--budget", "150%"], "--budget"),
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--weights", "1,-1,1"], "--weights"),
    (["select", "{h5}", *SYN, "--reference", "{tmp}/missing.h5ad"], "missing.h5ad"),
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--out", "{tmp}/sel.xlsx"], "--out"),
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--state", "{garbage_npz}"], "--state"),
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--lock", "@{tmp}/missing_ids.txt"], "--lock"),
    (["select", "{h5}", *SYN, "--sampler", "scrl", "--reference", "{ref}", "--policy", "{garbage_pt}"], "garbage.pt"),
    (["train-policy", "{h5}", *SYN, "--reference", "{tmp}/missing.h5ad"], "missing.h5ad"),
    (["train-policy", "{h5}", *SYN, "--reference", "{ref}", "--out", "{tmp}/policy.txt"], "--out"),
    (["train", "{h5}", "--out", "{tmp}/m", "--train-fraction", "0.5", "--epochs", "0"], "--epochs"),
    (["predict", "{h5}", "--model", "{garbage_pt}", "--out", "{tmp}/p.csv"], "--out"),
]


@pytest.mark.parametrize(("argv", "needle"), BEFORE_READ, ids=[f"{i:02d}-{a[0]}" for i, (a, _) in enumerate(BEFORE_READ)])
def test_bad_arguments_are_refused_before_the_section_is_read(files, capsys, monkeypatch, argv, needle):
    slow = _SlowWork(monkeypatch, read=False)
    rc = main(_fmt(argv, files))
    err = capsys.readouterr().err
    assert rc == 2, err
    _check_one_line(err, argv[0], needle)
    assert slow.calls == [], slow.calls


AFTER_READ = [
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--exclude", "{ids_unknown}"], "999x999"),
    (["select", "{h5}", *SYN, "--sampler", "greedy", "--reference", "{ref}", "--lock", "999x999"], "--lock"),
    (["select", "{h5}", *SYN, "--sampler", "kcenter", "--state", "{state}"], "does not match the pool"),
]


@pytest.mark.parametrize(("argv", "needle"), AFTER_READ, ids=[f"{i:02d}" for i in range(len(AFTER_READ))])
def test_spot_ids_and_state_are_checked_before_the_reference_and_embedding(files, capsys, monkeypatch, argv, needle):
    """--lock/--exclude ids and a --state of other spots are refused once the section is read,
    before the single-cell reference is read and before any embedding."""
    slow = _SlowWork(monkeypatch, read=True)
    rc = main(_fmt(argv, files))
    err = capsys.readouterr().err
    assert rc == 2, err
    line = _check_one_line(err, "select", needle)
    assert slow.calls == ["read"], slow.calls
    assert "np.str_" not in line


def test_state_pool_mismatch_prints_plain_section_names():
    from napari_scr2st.sampling import SelectionState
    from napari_scr2st.sampling.pool import Pool

    st = SelectionState(["a", "b"], np.array(["C3", "C3"]))
    pool = Pool(np.array(["a", "b", "c"]), np.array(["C4", "C4", "C5"]), np.zeros((3, 2)))
    assert pool.section_names == ["C4", "C5"] and all(type(s) is str for s in pool.section_names)
    with pytest.raises(ValueError) as e:
        st.check_pool(pool)
    assert str(e.value) == ("the selection state (2 spots, sections C3) does not match the pool (3 spots, "
                            "sections C4, C5)")


def test_info_of_a_reference_refuses_section_and_prints_nothing(files, capsys):
    assert main(["info", str(files["ref"]), "--section", "Z9"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    _check_one_line(out.err, "info", f"--section Z9: {files['ref']} is a single-cell reference")
    assert main(["info", str(files["ref"])]) == 0  # without --section: the reference summary
    assert "single-cell reference" in capsys.readouterr().out
