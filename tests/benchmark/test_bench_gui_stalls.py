"""The GUI benchmark's stall accounting (benchmarks/bench_gui.py): pure functions over tick times."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gui.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_gui_under_test", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_stall_at_the_very_start_of_the_first_step_counts(bench):
    # the heartbeat starts at t=0 (its start tick), the first step starts at once and blocks the
    # UI thread 700 ms; then the 10 ms ticks resume
    ticks = [(0.0, 0.0), (710.0, 700.0), (720.0, 0.0), (730.0, 0.0)]
    rep = bench.stall_report(ticks, {"open": (0.5, 730.0)})
    assert rep["open"]["stall_ms_max"] == pytest.approx(699.5)
    # without the start tick the first gap has no beginning and the stall is lost: what the
    # Heartbeat used to record
    rep_old = bench.stall_report(ticks[1:], {"open": (0.5, 730.0)})
    assert rep_old["open"]["stall_ms_max"] == pytest.approx(0.0)


def test_paints_are_taken_out_of_a_stall(bench):
    ticks = [(0.0, 0.0), (10.0, 0.0), (320.0, 300.0), (330.0, 0.0)]
    rep = bench.stall_report(ticks, {"s": (5.0, 330.0)}, paints=[(100.0, 220.0)])
    assert rep["s"]["stall_ms_max"] == pytest.approx(300.0)
    assert rep["s"]["stall_ms_max_without_paints"] == pytest.approx(180.0)
    assert rep["s"]["paint_ms_in_longest_stall"] == pytest.approx(120.0)
