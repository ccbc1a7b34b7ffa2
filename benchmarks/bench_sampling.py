"""The sampling benchmark: samplers x budgets (10 %, 15 %, 30 %) x 5 seeds.

Part 1, the embedded SYNTHETIC sample (2,000 spots, patch-statistics vision stand-in); the SCRL
policy is trained on three OTHER synthetic samples (seeds 1-3).
Part 2, the six her2st sections with images (B4, C2-C6) and the Wu 2021 CID4465 reference;
vision embeddings with EfficientNet-Lite0 (``napari_scr2st.features``, cached on disk) when
importable, else patch statistics. The SCRL policy is trained on C2-C5 and tested on the unseen
sections C6 (same patient, another serial section) and B4 (another patient); ``--her2st-split loo``
trains one policy per held-out C section instead (5 policies: slower).

Writes ``sampling_benchmark.csv`` (one row per run), ``.md`` (mean ± sd of every reward term,
the total and the downstream ridge PCC) and ``.png`` to ``--out`` (default
``benchmarks/results/sampling``). All options of ``scr2st benchmark sampling`` are accepted::

    python benchmarks/bench_sampling.py                       # full run (~10-15 min on 2 cores)
    python benchmarks/bench_sampling.py --seeds 2 --no-synthetic
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from napari_scr2st.cli import _sampling

    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = ["--out", str(ROOT / "benchmarks" / "results" / "sampling")]
    her2st = SHARED / "her2st"
    ref = SHARED / "sc_reference" / "wu2021_breast_CID4465.h5ad"
    if her2st.is_dir() and ref.is_file():
        defaults += ["--her2st", str(her2st), "--reference", str(ref)]
    else:
        print(f"note: {her2st} not found; running the synthetic part only", file=sys.stderr)
    parser = argparse.ArgumentParser(prog="bench_sampling")
    sub = parser.add_subparsers(dest="command")
    _sampling.register(sub)
    args = parser.parse_args(["benchmark", "sampling", *defaults, *argv])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
