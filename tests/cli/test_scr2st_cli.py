"""The `scr2st` command, run in-process through its entry function and once as a console script."""

import shutil
import subprocess

import numpy as np
import pytest

from napari_scr2st.cli import main


def test_help_lists_the_verbs(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for verb in ("info", "demo"):
        assert verb in out


def test_console_script_is_installed():
    exe = shutil.which("scr2st")
    assert exe, "console entry point 'scr2st' not on PATH"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "scr2st" in out.stdout


def test_info_on_a_her2st_counts_file(shared_data, capsys):
    rc = main(["info", str(shared_data / "her2st" / "data" / "ST-cnts" / "C3.tsv.gz")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "180 spots" in out and "C3" in out


def test_info_on_the_single_cell_reference(shared_data, capsys):
    rc = main(["info", str(shared_data / "sc_reference" / "wu2021_breast_CID4465.h5ad")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1564 cells" in out and "celltype_major: 9 types" in out


def test_info_on_a_missing_path_is_a_one_line_error(tmp_path, capsys):
    rc = main(["info", str(tmp_path / "nothing.tsv")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "nothing.tsv" in err and "Traceback" not in err


def test_demo_runs_and_writes_the_overview(tmp_path, capsys):
    rc = main(["demo", "--n-spots", "300", "--bench-seeds", "2", "--quiet", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert rc == 0, out
    png = tmp_path / "demo" / "overview.png"
    assert png.stat().st_size > 10_000
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert img.std() > 20  # a picture, not a blank canvas
    assert "vision embeddings efficientnet_lite0" in out
    # the whole pipeline ran: selection CSV, cell types of the sequenced spots, metrics
    import json

    import pandas as pd

    sel = pd.read_csv(tmp_path / "demo" / "selection.csv")
    assert 40 <= len(sel) <= 50  # 15% of ~300 spots
    assert sel["spot_id"].is_unique and set(sel["round"]) == {1, 2, 3}  # counted from 1
    assert (sel["predicted_cell_type"].str.len() > 0).all()
    metrics = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert metrics["n_train"] == len(sel) and metrics["n_test"] + metrics["n_train"] >= 280
    assert metrics["pcc_all"] > 0.2  # real signal on the synthetic sample, not noise
    assert (tmp_path / "demo" / "selection.png").stat().st_size > 10_000
    assert "evaluation on the" in out
    assert "[3] SCRL policy shipped" in out  # the default encoder uses the shipped policy
    assert (tmp_path / "demo" / "label_efficiency.png").stat().st_size > 10_000
