"""``scr2st demo``: the loop with SCRL, the samplers side by side, the PCC-vs-budget figure, the shipped policy.

Small samples and the patch-statistics encoder (seconds); the run with the default encoder and the
shipped policy is ``tests/cli/test_scr2st_cli.py::test_demo_runs_and_writes_the_overview``.
"""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomllib

from napari_scr2st.cli import build_parser, main
from napari_scr2st.cli._demo import SHIPPED_POLICY, TABLE_SAMPLERS, shipped_policy_path
from napari_scr2st.config import SamplingSettings
from napari_scr2st.data import make_sample
from napari_scr2st.data.synthetic import CELL_TYPES, RARE_COMPARTMENT

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^ {4}([a-z]+)(\*?) +(\d+) +(\d+) +([\d.]+)% +([\d.]+)")
FAST = ["--n-spots", "200", "--model", "patch-stats", "--policy", "train", "--policy-episodes", "2", "--quiet"]


def _table(out: str) -> dict[str, dict]:
    """The rows of the printed side-by-side table (after the '[7]' line)."""
    rows = {}
    for line in out.split("[7]", 1)[1].splitlines():
        m = ROW.match(line)
        if m:
            rows[m[1]] = {"star": m[2] == "*", "picked": int(m[3]), "rare": int(m[4]), "pct": float(m[5]),
                          "x": float(m[6])}
    return rows


def _rare_ids(n_spots: int, seed: int) -> set[str]:
    sec = make_sample(n_spots=n_spots, seed=seed).section
    return set(sec.obs_names[(sec.obs["true_compartment"].astype(str) == RARE_COMPARTMENT).to_numpy()])


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    import contextlib
    import io

    out = tmp_path_factory.mktemp("demo") / "out"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", *FAST, "--bench-seeds", "2", "--epochs", "3", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_demo_writes_the_pcc_vs_budget_figure(demo_run):
    from PIL import Image

    rc, out, folder = demo_run
    assert rc == 0, out
    png = folder / "label_efficiency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = np.asarray(Image.open(png).convert("RGB")).astype(float)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img.std() > 10  # curves and axes, not a blank canvas
    assert (img.min(axis=2) < 200).mean() > 0.01  # enough non-white pixels
    summary = json.loads((folder / "summary.json").read_text())
    assert "label_efficiency.png" in summary["files"]
    assert all((folder / f).is_file() for f in summary["files"])
    # the figure's data: the paired protocol over every table sampler, the demo's budget included
    df = pd.read_csv(folder / "label_efficiency_ridge.csv")
    assert set(df["sampler"]) == set(TABLE_SAMPLERS)
    assert {0.05, 0.1, 0.15, 0.3, 1.0} <= set(df["budget"].round(4))
    assert set(df["seed"]) == {0, 1} and df["n_test"].nunique() == 1
    assert df["pcc_heg50"].between(-1, 1).all()


def test_demo_table_has_a_row_per_sampler_consistent_with_the_selection_csv(demo_run):
    rc, out, folder = demo_run
    assert rc == 0, out
    rows = _table(out)
    assert set(rows) == set(TABLE_SAMPLERS), out
    sel = pd.read_csv(folder / "selection.csv")
    default = SamplingSettings().sampler
    starred = [s for s, r in rows.items() if r["star"]]
    assert starred == [default]  # the default sampler (config.SamplingSettings) is the one exported
    rare_ids = _rare_ids(200, 0)
    assert rows[default]["picked"] == len(sel)
    assert rows[default]["rare"] == len(set(sel["spot_id"].astype(str)) & rare_ids)
    share = len(rare_ids) / make_sample(n_spots=200, seed=0).section.n_obs
    csv = pd.read_csv(folder / "samplers.csv").set_index("sampler")
    for name, r in rows.items():
        assert r["picked"] == len(sel)  # same budget for every sampler
        assert r["rare"] == csv.loc[name, "rare_selected"]
        assert r["pct"] == pytest.approx(100 * r["rare"] / r["picked"], abs=0.05)
        assert r["x"] == pytest.approx(r["rare"] / r["picked"] / share, abs=0.006)
    assert csv["pcc_heg50_mean"].between(-1, 1).all() and csv["p_rare_mean"].between(0, 1).all()
    assert "[3] SCRL policy trained here" in out


def test_demo_scrl_path_is_deterministic(tmp_path, capsys):
    runs = []
    for k in range(2):
        rc = main(["demo", *FAST, "--sampler", "scrl", "--no-model", "--out", str(tmp_path / f"r{k}")])
        out = capsys.readouterr().out
        assert rc == 0, out
        assert "the demo's sampler scrl" in out and _table(out)["scrl"]["star"]
        runs.append(pd.read_csv(tmp_path / f"r{k}" / "selection.csv"))
    assert len(runs[0]) == 30
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert not (tmp_path / "r0" / "label_efficiency.png").exists()  # --no-model stops after the selection


def test_shipped_policy_was_built_for_the_demo():
    from napari_scr2st.sampling.scrl import SCRLPolicy

    path = shipped_policy_path()
    side = path.with_name(path.name + ".json")
    meta = json.loads(side.read_text())
    assert meta["demo_policy"] == SHIPPED_POLICY.to_dict()  # what scripts/build_demo_policy.py builds
    assert meta["built_by"]["script"] == "scripts/build_demo_policy.py"
    assert (ROOT / "scripts" / "build_demo_policy.py").is_file()
    args = build_parser().parse_args(["demo"])
    assert SHIPPED_POLICY.encoder == args.model  # built with the demo's default encoder
    assert args.seed not in SHIPPED_POLICY.train_seeds  # never trained on the demo's sample
    pol = SCRLPolicy.load(path)
    assert sorted(pol.config.celltypes) == sorted(CELL_TYPES)
    assert pol.config.vision_dim == 1280  # efficientnet_lite0 features
    hist = [h for h in pol.history if h["phase"] == "reinforce"]
    assert len(hist) == SHIPPED_POLICY.episodes
    assert path.stat().st_size < 1_000_000
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(f"_resources/*{ext}" in data.get("napari_scr2st", []) for ext in (".pt",))


def test_demo_refuses_a_policy_for_another_encoder(tmp_path, capsys):
    rc = main(["demo", "--n-spots", "200", "--model", "patch-stats", "--policy", str(shipped_policy_path()),
               "--no-model", "--quiet", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--policy" in err and "1280-dimensional" in err and len(err.strip().splitlines()) == 1
