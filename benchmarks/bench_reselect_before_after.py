"""Re-selection latency after a weight change: this tree against another checkout, side by side.

Two measurements per tree, in alternating subprocesses (A B A B ...) so both see the same load:

- ``policy``: ``benchmarks/bench_select_latency.py`` of that tree (``policy.select`` on cached
  round features: the weight-conditioned head only);
- ``session``: what a slider move costs the docks: change the weights on a prepared session, then
  ``reselect()`` (proposal + expected reward terms), through whichever session class the tree has
  (``napari_scr2st.session.AcquisitionSession`` or the first version's
  ``napari_scr2st._napari._state.Session``). SCRL sampler, untrained policy, 5 % of the spots
  measured, random 64-d vision features, budget 15 % in 3 rounds.

    git worktree add /tmp/scr2st-before <commit>
    python benchmarks/bench_reselect_before_after.py --before /tmp/scr2st-before --sizes 5000 --repeats 21

Prints medians (ms) for each tree and the ratio after / before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

_SESSION = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    n, repeats = int(sys.argv[1]), int(sys.argv[2])
    from napari_scr2st.data import make_sample
    smp = make_sample(n, seed=0, with_image=False)
    a = smp.section
    rng = np.random.default_rng(0)
    a.obsm["X_vision"] = rng.normal(size=(a.n_obs, 64)).astype(np.float32)
    try:
        from napari_scr2st.session import AcquisitionSession, fit_reference_space
        from napari_scr2st.config import SamplingSettings
        space = fit_reference_space(smp.reference, list(map(str, a.var_names)))
        s = AcquisitionSession(a, reference=smp.reference, space=space,
                               settings=SamplingSettings(sampler="scrl", budget="15%", rounds=3))
        for _ in s.iter_prepare():
            pass
        s.finish_prepare()
        kind = "AcquisitionSession"
    except ImportError:
        from napari_scr2st._napari._core_adapter import fit_reference_space
        from napari_scr2st._napari._state import Session
        s = Session(a, reference=smp.reference)
        s.space = fit_reference_space(smp.reference, list(map(str, a.var_names)))
        for _ in s.iter_prepare("patch-stats"):
            pass
        s.update_settings(sampler="scrl", budget="15%", rounds=3)
        s.reselect()
        kind = "Session (first version)"
    times = []
    for i in range(repeats + 1):
        w = rng.dirichlet(np.ones(3)) * 3
        t = time.perf_counter()
        s.update_settings(w_sc=float(w[0]), w_type=float(w[1]), w_sp=float(w[2]))
        p = s.reselect()
        if i:
            times.append(time.perf_counter() - t)
    print(json.dumps({"kind": kind, "median_ms": 1000 * float(np.median(times)),
                      "p90_ms": 1000 * float(np.percentile(times, 90)), "n_new": int(p.n_new)}))
    """
)


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree / "src")
    return env


def run_policy(tree: Path, n: int, repeats: int) -> float:
    out = tree / ".bench_policy.json"
    subprocess.run([sys.executable, str(tree / "benchmarks" / "bench_select_latency.py"), "--sizes", str(n),
                    "--repeats", str(repeats), "--json", str(out)], env=_env(tree), check=True,
                   capture_output=True, text=True)
    row = json.loads(out.read_text())[0]
    out.unlink()
    return float(row["median_ms"])


def run_session(tree: Path, n: int, repeats: int) -> dict:
    res = subprocess.run([sys.executable, "-c", _SESSION, str(n), str(repeats)], env=_env(tree), check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="checkout of the version to compare against")
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--alternations", type=int, default=2, help="A/B pairs per measurement (default 2)")
    args = ap.parse_args(argv)
    trees = {"before": Path(args.before).resolve(), "after": ROOT}
    print("| spots | what | before median ms | after median ms | after / before |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        pol = {k: [] for k in trees}
        ses = {k: [] for k in trees}
        kinds = {}
        for _ in range(args.alternations):
            for k, tree in trees.items():
                pol[k].append(run_policy(tree, n, args.repeats))
                r = run_session(tree, n, args.repeats)
                ses[k].append(r["median_ms"])
                kinds[k] = r["kind"]
        for what, d in (("policy.select (head only)", pol), ("session: weights -> reselect()", ses)):
            b, a = float(np.median(d["before"])), float(np.median(d["after"]))
            print(f"| {n:,} | {what} | {b:.1f} | {a:.1f} | {a / b:.2f} |")
        print(f"\nsession classes: before = {kinds['before']}, after = {kinds['after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
