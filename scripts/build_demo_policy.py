"""Build the SCRL policy that ``scr2st demo`` ships (deterministic; minutes on 2 CPU cores).

    python scripts/build_demo_policy.py                 # writes src/napari_scr2st/_resources/demo_policy.pt(.json)
    python scripts/build_demo_policy.py --out /tmp/p.pt # e.g. to check that a rebuild gives the same weights

The policy is trained as ``napari_scr2st.cli._demo.SHIPPED_POLICY`` says: synthetic samples of
seeds OTHER than the demo's (the demo's sample is seed 0), embedded with the demo's default
encoder, greedy-imitation then REINFORCE episodes with fixed seeds. The ``.json`` sidecar records
that spec under ``demo_policy``; the demo uses the file only when its encoder and seed fit it, and
``tests/cli/test_demo.py`` checks the sidecar against the spec. Embeddings of the training samples
are cached (``$SCR2ST_CACHE_DIR``), so a rebuild mostly costs the training.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "napari_scr2st" / "_resources" / "demo_policy.pt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="policy file (.pt); a .json sidecar is written next to it")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    from napari_scr2st.cli._demo import SHIPPED_POLICY, build_policy_file

    t = time.perf_counter()
    path = build_policy_file(SHIPPED_POLICY, args.out, use_tqdm=not args.quiet)
    print(f"{path} ({path.stat().st_size / 1024:.0f} KiB) built in {time.perf_counter() - t:.0f} s with "
          f"{SHIPPED_POLICY.to_dict()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
