"""benchmarks/bench_napari_floor.py runs (pure napari, one repeat) and reports every operation."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_napari_floor.py"
OPS = ("add_points", "recolour", "remove_layer", "add_image", "progress", "dock", "repaint")


def test_the_napari_floor_benchmark_reports_each_operation(tmp_path):
    out = tmp_path / "floor.json"
    env = {**os.environ, "SCR2ST_SYNC_WORKERS": "0"}
    run = subprocess.run([sys.executable, str(BENCH), "--repeats", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["machine"]["repeats"] == 1
    assert set(res["operations"]) == set(OPS)
    for op in OPS:
        (r,) = res["operations"][op]
        # a real measurement: finite, non-negative, paints never more than the stall itself
        assert math.isfinite(r["stall_ms_max"]) and r["stall_ms_max"] >= 0, (op, r)
        assert r["stall_ms_max_without_paints"] <= r["stall_ms_max"] + 1e-6, (op, r)
        assert r["wall_s"] > 0, (op, r)
    # every operation that draws something new ends with a canvas paint
    assert res["operations"]["add_points"][0]["paints"] >= 1
    for op in OPS:
        assert f"  {op}" in run.stdout
