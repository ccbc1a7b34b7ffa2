"""DistributedDataParallel: torchrun with 2 CPU processes (gloo) runs the same training."""

import json
import os
import subprocess
import sys

import pytest

from napari_scr2st.cli import main

ARGS = [
    "--train-fraction",
    "0.6",
    "--epochs",
    "3",
    "--device",
    "cpu",
    "--n-genes",
    "40",
    "--batch-size",
    "32",
    "--quiet",
]


def test_torchrun_two_processes_match_single_process_format(section, tmp_path):
    pytest.importorskip("torch.distributed.run")
    h5ad = tmp_path / "tiny.h5ad"
    section.write_h5ad(h5ad)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "napari_scr2st.cli.ddp", str(h5ad), "--out", str(tmp_path / "ddp"), *ARGS,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert main(["train", str(h5ad), "--out", str(tmp_path / "single"), *ARGS]) == 0
    single = json.loads((tmp_path / "single" / "metrics.json").read_text())

    assert set(ddp) == set(single)
    assert set(ddp["history"][-1]) == set(single["history"][-1])
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert ddp["epochs_completed"] == 3 and ddp["n_fit"] == single["n_fit"]
    # each rank sees half the spots per epoch: about half the steps
    assert ddp["history"][0]["steps"] < single["history"][0]["steps"]
    assert ddp["final"]["val_pcc"] > 0.1 and ddp["final"]["loss"] > 0
    assert (tmp_path / "ddp" / "model.pt").is_file() and (tmp_path / "ddp" / "last.pt").is_file()
    assert "2 process(es)" in proc.stdout
