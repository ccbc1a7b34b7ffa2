"""GUI responsiveness of the napari plugin, end to end, as a user drives it (run under Xvfb).

    xvfb-run -a python benchmarks/bench_gui.py --json benchmarks/results/bench_gui.json
    xvfb-run -a python benchmarks/bench_gui.py --only slider --spots 5000

Everything runs as for a user (napari thread workers, ``SCR2ST_SYNC_WORKERS=0``) while a QTimer
heartbeat ticks every 10 ms on the UI thread. A *stall* is the gap between two ticks minus the
10 ms interval: the time the viewer could not repaint or react. Reported per step:

- ``open_sample``: File > Open Sample > synthetic (``--spots`` spots) until its layers are drawn;
- ``open_section``: File > Open of her2st C3 (real data) until its layers are drawn;
- ``open_folder``: File > Open of the her2st folder (section chooser) and Open of one section;
- ``prepare``: the Prepare click until the first selection is drawn;
- ``pretrain``: policy pre-training (``--episodes``);
- ``train_click``: the GUI-thread time of the Train click itself;
- ``train`` and ``predict``: the training epochs and the prediction of every spot;
- ``show_predictions``: from the worker's result to the expression map drawn;
- ``export``: the predictions .h5ad written in a worker (and the selection CSV click).

The slider is measured END TO END: from ``slider.setValue`` (a weight moves) to the vispy canvas
having drawn the new selection (its ``draw`` event after the selection layer was updated), on a
section of ``--spots`` spots with a pre-trained SCRL policy and round 1 sequenced (the costly
case: predictions of unsequenced spots feed the expected reward). It includes the dock's 40 ms
debounce. Targets: slider <= 150 ms end to end at 5,000 spots; no stall > 100 ms.

Numbers depend on the machine and its load: the script prints the CPU count and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SLIDER_TARGET_MS = 150.0
STALL_TARGET_MS = 100.0


def _pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


class Heartbeat:
    """A 10 ms QTimer on the UI thread; stalls = tick gaps minus the interval, per named window."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QElapsedTimer, QTimer

        self.interval = interval_ms
        self.clock = QElapsedTimer()
        self.clock.start()
        self.ticks: list[tuple[float, float]] = []  # (time ms, stall ms)
        self._last = self.now()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.windows: dict[str, tuple[float, float]] = {}

    def now(self) -> float:
        return float(self.clock.nsecsElapsed()) / 1e6

    def _tick(self) -> None:
        t = self.now()
        self.ticks.append((t, max(0.0, t - self._last - self.interval)))
        self._last = t
        self.last_pc = time.perf_counter()

    def start(self) -> None:
        self._last = self.now()
        self.last_pc = time.perf_counter()
        # a tick at the start: the gap up to the first real tick is a stall like any other (without
        # it, a step that starts right away, as the first one does, lost its synchronous part)
        self.ticks.append((self._last, 0.0))
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def window(self, name: str, t0: float, t1: float) -> None:
        self.windows[name] = (t0, t1)

    def gaps(self, t0: float, t1: float, until: float = float("inf")) -> list[tuple[float, float, float]]:
        return tick_gaps(self.ticks, self.interval, t0, t1, until)

    def max_stall(self, t0: float, t1: float) -> tuple[float, int]:
        """The longest stall that starts in [t0, t1] (see :func:`tick_gaps`) and the ticks in it."""
        return _longest(self.gaps(t0, t1)), _ticks_in(self.ticks, t0, t1)

    def report(self, paints: list[tuple[float, float]] | None = None, gcs=None) -> dict[str, dict[str, float]]:
        """Per step: the longest stall, the same with the canvas's paints taken out, the paint
        time of the longest stall, the number of paints and the longest single paint (and with
        ``gcs``, the full garbage collections: see :func:`stall_report`)."""
        return stall_report(self.ticks, self.windows, paints, self.interval, gcs)


def tick_gaps(ticks, interval: float, t0: float, t1: float,
              until: float = float("inf")) -> list[tuple[float, float, float]]:
    """``(start, end, stall)`` of the tick gaps that start in the window [t0, t1]: one that
    begins in it counts past the window's end, up to ``until`` (the next step's start: what
    follows is that step's); of the gap the step began in, only the part after t0."""
    out, prev = [], None
    for t, g in ticks:
        if prev is not None and (t0 <= prev <= t1 or prev < t0 < t):
            a, b = max(prev, t0), min(t, until)
            if b > a:
                out.append((a, b, max(0.0, b - a - interval) if (a, b) != (prev, t) else g))
        if prev is not None and prev > t1:
            break
        prev = t
    return out


def _longest(gaps) -> float:
    return max((g for _, _, g in gaps), default=float("nan"))


def _ticks_in(ticks, t0: float, t1: float) -> int:
    return sum(1 for t, _ in ticks if t0 < t <= t1)


def _overlap(spans, x: float, y: float) -> float:
    return sum(max(0.0, min(e, y) - max(s_, x)) for s_, e in spans if e > x and s_ < y)


def stall_report(ticks, windows, paints=None, interval: float = 10.0, gcs=None) -> dict[str, dict[str, float]]:
    """:meth:`Heartbeat.report` from raw data (``--report JSON`` recomputes a saved run).
    ``gcs``: the (start, end) of the full garbage collections; with them, also the longest
    stall with the paints and the collections taken out, and the longest collection."""
    ticks = [tuple(x) for x in ticks]
    order = sorted(windows.items(), key=lambda kv: kv[1][0])
    starts = [w[0] for _, w in order]
    out = {}
    for k, (name, (a, b)) in enumerate(order):
        until = starts[k + 1] if k + 1 < len(order) else float("inf")
        gs = tick_gaps(ticks, interval, a, b, until)
        out[name] = {"wall_s": (b - a) / 1000, "stall_ms_max": _longest(gs), "ticks": _ticks_in(ticks, a, b)}
        if paints is not None:
            inside = [e - s_ for s_, e in paints if a <= s_ <= b]
            longest = max(gs, key=lambda x: x[2]) if gs else None
            out[name].update(
                stall_ms_max_without_paints=max((max(0.0, g - _overlap(paints, x, y)) for x, y, g in gs), default=float("nan")),
                paint_ms_in_longest_stall=_overlap(paints, longest[0], longest[1]) if longest else float("nan"),
                paints=len(inside), paint_ms_max=max(inside) if inside else float("nan"))
            if gcs is not None:
                full = [e - s_ for s_, e in gcs if a <= s_ <= b]
                out[name].update(
                    stall_ms_max_without_paints_gc=max((max(0.0, g - _overlap(paints, x, y) - _overlap(gcs, x, y))
                                                        for x, y, g in gs), default=float("nan")),
                    gc_full=len(full), gc_ms_max=max(full) if full else float("nan"))
    return out


class StallTracer:
    """``--trace-stalls``: a sampling thread that, while the heartbeat is late by more than
    ``after_ms``, records the Python stack of every thread every ``every_ms`` (the UI thread's
    stack says what blocks it; if a worker holds the GIL in a long C call, the sample taken when
    it lets go shows that worker's line). Printed per step: the longest stalls and their most
    frequent UI-thread and worker frames."""

    def __init__(self, hb: Heartbeat, after_ms: float = 60.0, every_ms: float = 10.0, depth: int = 8) -> None:
        import threading

        self.hb, self.after, self.every, self.depth = hb, after_ms / 1000, every_ms / 1000, depth
        self.main = threading.main_thread().ident
        self.samples: list[tuple[float, float, str, list[str]]] = []  # (stall start pc, t, main, others)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stall-tracer", daemon=True)
        self.t0_pc = time.perf_counter()
        self.t0_hb = hb.now()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _fmt(self, frame) -> str:
        import traceback

        st = traceback.extract_stack(frame)
        keep = [f for f in st if "site-packages/numpy" not in f.filename or f is st[-1]]
        return " < ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} {f.name}"
                          for f in reversed(keep[-self.depth:]))

    def _run(self) -> None:
        import threading

        names = {}
        while not self._stop.wait(self.every):
            last = self.hb.last_pc
            now = time.perf_counter()
            if now - last < self.after:
                continue
            frames = sys._current_frames()
            for t in threading.enumerate():
                names[t.ident] = t.name
            main = self._fmt(frames[self.main]) if self.main in frames else "?"
            others = [f"[{names.get(i, i)}] {self._fmt(f)}" for i, f in frames.items()
                      if i not in (self.main, threading.get_ident())]
            self.samples.append((last, now, main, others))

    def report(self, windows: dict[str, tuple[float, float]], top: int = 3) -> str:
        from collections import Counter, defaultdict

        by_stall = defaultdict(list)
        for last, now, main, others in self.samples:
            by_stall[last].append((now, main, others))
        lines = []
        for name, (a, b) in windows.items():
            a_pc = self.t0_pc + (a - self.t0_hb) / 1000
            b_pc = self.t0_pc + (b - self.t0_hb) / 1000
            stalls = [(max(n for n, _, _ in v) - k, k, v) for k, v in by_stall.items() if a_pc - 0.5 <= k <= b_pc]
            stalls.sort(key=lambda x: -x[0])
            if not stalls:
                continue
            lines.append(f"== {name}: {len(stalls)} traced stalls")
            for dur, _k, v in stalls[:top]:
                lines.append(f"  stall >= {dur * 1000 + self.after * 1000:.0f} ms, {len(v)} samples")
                for fr, c in Counter(m for _, m, _ in v).most_common(3):
                    lines.append(f"    UI x{c}: {fr}")
                for fr, c in Counter(o for _, _, os_ in v for o in os_ if "stall-tracer" not in o
                                     and "threading.py" not in o.split(" < ")[0]).most_common(2):
                    lines.append(f"    worker x{c}: {fr}")
        return "\n".join(lines)


def wait_until(cond, timeout_s: float = 600.0, clock=None) -> bool | float:
    """Run the Qt event loop (as napari's own would) until ``cond()``; False on timeout.

    ``clock`` (a function giving ms, as ``Heartbeat.now``): return instead the clock's time at
    the start of the event-loop slice in which ``cond()`` became true (the result may have been
    made, and painted, anywhere in that slice)."""
    from qtpy.QtCore import QEventLoop
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    t0 = time.perf_counter()
    slice_start = clock() if clock is not None else 0.0
    while not cond():
        if time.perf_counter() - t0 > timeout_s:
            return False
        if clock is not None:
            slice_start = clock()
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        time.sleep(0.0005)
    return slice_start if clock is not None else True


class DrawWatch:
    """Times of the vispy canvas's draw events (the canvas has painted new pixels) and how long
    each paint took on the UI thread (from the draw event's first callback to after its last:
    the scene drawn, the GL commands flushed and the buffers swapped)."""

    def __init__(self, viewer, hb: Heartbeat) -> None:
        self.hb = hb
        self.draws: list[float] = []
        self.paints: list[tuple[float, float]] = []  # (start, end) ms of every paint
        ev = viewer.window._qt_viewer.canvas._scene_canvas.events.draw
        ev.connect(self._on_draw, position="first")
        ev.connect(self._on_drawn, position="last")

    def _on_draw(self, *_):
        self.draws.append(self.hb.now())

    def _on_drawn(self, *_):
        if self.draws:
            self.paints.append((self.draws[-1], self.hb.now()))

    def first_after(self, t: float) -> float | None:
        return next((d for d in self.draws if d > t), None)


class GcWatch:
    """Every garbage collection (``gc.callbacks``): ``(start, end, generation, on the UI thread)``
    in heartbeat ms. A collection holds the GIL, so one in a worker stalls the UI thread too;
    napari runs a full ``gc.collect()`` at each layer removal."""

    def __init__(self, hb: Heartbeat) -> None:
        import gc
        import threading

        self.hb, self.main = hb, threading.main_thread().ident
        self.runs: list[tuple[float, float, int, bool]] = []
        self._t0: float | None = None
        self._gc, self._threading = gc, threading
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = self.hb.now()
        elif self._t0 is not None:
            self.runs.append((self._t0, self.hb.now(), int(info.get("generation", -1)),
                              self._threading.get_ident() == self.main))
            self._t0 = None

    def stop(self) -> None:
        if self._cb in self._gc.callbacks:
            self._gc.callbacks.remove(self._cb)

    def full(self) -> list[tuple[float, float]]:
        """The (start, end) of the full (generation 2) collections."""
        return [(a, b) for a, b, g, _ in self.runs if g == 2]


class MplWatch:
    """``--mpl-log``: every matplotlib full draw of a dock chart (``FigureCanvasAgg.draw``, with its
    UI-thread time), every ``draw_idle`` request (with who asked) and every resize of a chart
    canvas, in heartbeat ms; printed per step."""

    def __init__(self, hb: Heartbeat) -> None:
        import traceback

        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.backends.backend_qt import FigureCanvasQT

        self.hb, self.events = hb, []  # (t ms, what, owner, caller)
        orig_idle, orig_draw, orig_resize = FigureCanvasQT.draw_idle, FigureCanvasAgg.draw, FigureCanvasQT.resizeEvent
        events = self.events

        def owner(c) -> str:
            w, names = c.parent() if hasattr(c, "parent") else None, []
            while w is not None and len(names) < 2:
                names.append(type(w).__name__)
                w = w.parent()
            return "/".join(names) or "?"

        def draw_idle(canvas, *a, **k):
            st = traceback.extract_stack()[-5:-1]
            events.append((hb.now(), "draw_idle", owner(canvas),
                           " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(st))))
            return orig_idle(canvas, *a, **k)

        def draw(canvas, *a, **k):
            t0 = hb.now()
            out = orig_draw(canvas, *a, **k)
            events.append((t0, f"full draw {hb.now() - t0:.0f} ms", owner(canvas), ""))
            return out

        def resize(canvas, ev):
            o, n = ev.oldSize(), ev.size()
            events.append((hb.now(), f"resize {o.width()}x{o.height()} -> {n.width()}x{n.height()}", owner(canvas), ""))
            return orig_resize(canvas, ev)

        FigureCanvasQT.draw_idle, FigureCanvasAgg.draw, FigureCanvasQT.resizeEvent = draw_idle, draw, resize

    def report(self, windows: dict[str, tuple[float, float]]) -> str:
        lines = []
        for name, (a, b) in sorted(windows.items(), key=lambda kv: kv[1][0]):
            inside = [e for e in self.events if a <= e[0] <= b]
            if inside:
                lines.append(f"== {name}: {len(inside)} matplotlib events")
                lines += [f"  {t - a:+7.0f} ms {what} [{who}] {caller}".rstrip() for t, what, who, caller in inside]
        return "\n".join(lines)


class Profiler:
    """cProfile of the UI (main) thread per named step (``--profile DIR``): what the event loop
    spends its time on during a step, written as ``DIR/<step>.pstats`` and a top-N text."""

    def __init__(self, out: str | None, top: int = 25) -> None:
        self.out = Path(out) if out else None
        self.top = top
        self.profiles: dict = {}

    def start(self, name: str) -> None:
        if self.out is None:
            return
        import cProfile

        self.profiles.setdefault(name, cProfile.Profile()).enable()

    def stop(self, name: str) -> None:
        if self.out is not None and name in self.profiles:
            self.profiles[name].disable()

    def write(self) -> None:
        if self.out is None:
            return
        import io
        import pstats

        self.out.mkdir(parents=True, exist_ok=True)
        for name, prof in self.profiles.items():
            prof.dump_stats(str(self.out / f"{name}.pstats"))
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
            st.print_stats(self.top)
            buf.write("\n--- by own time ---\n")
            st.sort_stats("tottime").print_stats(self.top)
            (self.out / f"{name}.txt").write_text(buf.getvalue())
        print(f"UI-thread profiles written to {self.out}")


PROF = Profiler(None)


def step(hb, draw, name, start, done, *, timeout_s=900.0, drawn=True):
    """Run ``start()``, wait for ``done()`` and (``drawn``) the canvas draw that shows it; record the
    window. The draw counted is the first one that starts after the beginning of the event-loop
    slice in which ``done()`` became true: a result made by a queued callback (layers added one
    per turn) is often painted in the same slice, before ``done()`` is polled again."""
    PROF.start(name)
    t0 = hb.now()
    start()
    got = wait_until(done, timeout_s, clock=hb.now)
    ok = got is not False
    t_done = got if ok else hb.now()
    if drawn:
        wait_until(lambda: draw.first_after(t_done) is not None, 5.0)
    t1 = draw.first_after(t_done) if drawn else None
    hb.window(name, t0, t1 or hb.now())
    PROF.stop(name)
    if not ok:
        print(f"  {name}: did not finish in {timeout_s:.0f} s")
    return ok


def open_dock(viewer, hb, draw, name: str, title: str, widget_cls):
    """Create a dock and add it to the viewer as one timed step ``name``; returns the widget."""
    made = []

    def add():
        made.append(widget_cls(viewer))
        viewer.window.add_dock_widget(made[0], name=title)

    step(hb, draw, name, add, lambda: True)
    return made[0]


def bench_open(viewer, hb, draw, n_spots: int, her2st: Path | None) -> None:
    os.environ["SCR2ST_SAMPLE_SPOTS"] = str(n_spots)
    step(hb, draw, "open_sample", lambda: viewer.open_sample("napari-scr2st", "synthetic"),
         lambda: "SYN1 true compartments" in viewer.layers)  # the last of its layers
    if her2st is None or not her2st.is_dir():
        print("  (no her2st data beside the repository: open_section / open_folder skipped)")
        return
    c3 = her2st / "data" / "ST-cnts" / "C3.tsv.gz"
    step(hb, draw, "open_section", lambda: viewer.open(str(c3), plugin="napari-scr2st"),
         lambda: "C3 spots" in viewer.layers)
    for name in ("C3 spots", "C3 H&E"):
        viewer.layers.remove(name)

    from napari_scr2st._napari._section_chooser import SectionChooser

    def open_folder():
        viewer.open(str(her2st), plugin="napari-scr2st")
        (w,) = [d for d in viewer.window.dock_widgets.values() if isinstance(d, SectionChooser)]
        w.set_checked(["C4"])
        w.open_checked()

    step(hb, draw, "open_folder", open_folder, lambda: "C4 spots" in viewer.layers)
    for name in ("C4 spots", "C4 H&E"):
        if name in viewer.layers:
            viewer.layers.remove(name)
    for name in [n for n in viewer.window.dock_widgets if n.startswith("SCR2-ST sections")]:
        viewer.window.remove_dock_widget(viewer.window.dock_widgets[name])


def bench_prepare(viewer, hb, draw, episodes: int, sampler: str):
    from napari_scr2st._napari._sampling_widget import SamplingWidget

    w = open_dock(viewer, hb, draw, "open_sampling_dock", "Spot sampling", SamplingWidget)
    w.encoder_combo.setCurrentText("patch-stats")
    w.budget_unit.setCurrentText("%")
    w.budget_spin.setValue(30)
    w.rounds_spin.setValue(2)
    w.sampler_combo.setCurrentIndex(w.sampler_combo.findData(sampler))
    s = w.session
    step(hb, draw, "prepare", w.prepare, lambda: s.is_prepared and s.preview is not None and w.worker is None)
    if episodes:
        step(hb, draw, "pretrain", lambda: w.pretrain(episodes), lambda: w.worker is None, drawn=False)
    PROF.start("sequence_click")
    t0 = hb.now()
    w.sequence_round()  # round 1 sequenced: the second round has predictions (the costly case)
    wait_until(lambda: s.preview is not None and s.preview.state.measured.sum() > 0
               and draw.first_after(hb.now() - 1) is not None, 30.0)
    hb.window("sequence_click", t0, hb.now())
    PROF.stop("sequence_click")
    print(f"setup: {s.n} spots, {int(s.committed.measured.sum())} sequenced, policy {s.policy_source}")
    return w, s


def _settle(w, s, timeout_s: float = 60.0) -> None:
    """Wait until no re-selection or policy-check worker runs (so that a move is not measured
    against the previous move's work, and nothing runs when the viewer closes)."""
    try:
        from napari_scr2st._napari._reselect import Reselector
    except ImportError:  # the code before re-selection moved to a worker
        r = None
    else:
        r = Reselector.of(s)
    wait_until(lambda: (r is None or not (r.busy or r.pending))
               and getattr(w, "_check_worker", None) is None and not w._check_timer.isActive(), timeout_s)


def bench_slider(w, s, hb, draw, repeats: int, seed: int = 0):
    """slider.setValue -> debounce -> re-selection -> selection layer -> the canvas's draw event."""
    import numpy as np

    rng = np.random.default_rng(seed)
    stamps: list[float] = []

    def stamp():  # called FIRST when a new selection is shown (before the layers are updated)
        stamps.append(hb.now())

    s.selection_changed.connect(stamp, priority=100)
    slider = w.sliders["w_sp"]
    e2e, layer_ms, handler = [], [], []
    PROF.start("slider")
    t_start = hb.now()
    try:
        for i in range(repeats + 2):
            v = float(rng.uniform(0.1, 5.0))
            while abs(v - slider.value()) < 0.1:
                v = float(rng.uniform(0.1, 5.0))
            n0 = len(stamps)
            t0 = hb.now()
            slider.setValue(v)
            wait_until(lambda n0=n0: len(stamps) > n0, 10.0)
            t_layer = stamps[-1] if len(stamps) > n0 else None
            if t_layer is None:
                continue
            wait_until(lambda t=t_layer: draw.first_after(t) is not None, 5.0)
            t_draw = draw.first_after(t_layer)  # the first paint after the selection was shown
            if os.environ.get("BENCH_VERBOSE"):
                print(f"  move {i}: layer {t_layer - t0:.0f} ms, drawn {(t_draw or float('nan')) - t0:.0f} ms",
                      flush=True)
            if i >= 2 and t_draw is not None:  # two warm-up moves
                e2e.append(t_draw - t0)
                layer_ms.append(t_layer - t0)
                handler.append(s.preview.seconds * 1000)
            wait_until(lambda: False, 0.3)  # the hover table (250 ms after the last change) settles
            _settle(w, s)
    finally:
        hb.window("slider", t_start, hb.now())  # the longest UI stall over all the moves
        PROF.stop("slider")
        s.selection_changed.disconnect(stamp)
    res = {
        "spots": s.n, "proposal": int(len(s.preview.proposal)), "moves": len(e2e),
        "end_to_end_ms_median": statistics.median(e2e), "end_to_end_ms_p95": _pct(e2e, 95),
        "end_to_end_ms_max": max(e2e),
        "to_layer_ms_median": statistics.median(layer_ms), "core_reselect_ms_median": statistics.median(handler),
        "target_ms": SLIDER_TARGET_MS,
    }
    print(f"slider, {s.n} spots, {res['proposal']} picks, {len(e2e)} moves: END TO END (setValue -> canvas drawn, "
          f"incl. 40 ms debounce) median {res['end_to_end_ms_median']:.0f} ms, p95 {res['end_to_end_ms_p95']:.0f} ms, "
          f"max {res['end_to_end_ms_max']:.0f} ms; to the new selection shown {res['to_layer_ms_median']:.0f} ms; "
          f"core re-selection {res['core_reselect_ms_median']:.0f} ms (target <= {SLIDER_TARGET_MS:.0f} ms)")
    return res


def bench_training(viewer, s, hb, draw, epochs: int, device: str):
    from napari_scr2st._napari._training_widget import TrainingWidget

    t = open_dock(viewer, hb, draw, "open_training_dock", "Train SCR2Net", TrainingWidget)
    wait_until(lambda: not getattr(t._warm, "is_running", False), 120)  # the dock's background imports
    t.epochs_spin.setValue(epochs)
    t.device_combo.setCurrentText(device)
    wait_until(lambda: False, 0.5)  # as a user between setting the epochs and clicking Train
    marks: dict[str, float] = {}

    def on_progress(ev, orig=t._on_progress):
        msg = ev.message
        key = "epoch" if "epoch" in msg else ("predict" if "prediction" in msg or "MC-dropout" in msg else "setup")
        marks.setdefault(f"first_{key}", hb.now())
        marks[f"last_{key}"] = hb.now()
        orig(ev)

    t._on_progress = on_progress
    done_orig = t._on_done

    def on_done(*a, **k):
        marks["returned"] = hb.now()
        return done_orig(*a, **k)

    t._on_done = on_done
    PROF.start("train")
    t0 = hb.now()
    t.start()
    t1 = hb.now()
    hb.window("train_click", t0, t1)
    ok = wait_until(lambda: t.worker is None, 1800)
    PROF.stop("train")
    t_end = hb.now()
    wait_until(lambda: draw.first_after(t_end) is not None, 5.0)
    t_drawn = draw.first_after(t_end) or hb.now()
    hb.window("train", t1, marks.get("first_predict", marks.get("returned", t_end)))
    if "first_predict" in marks:
        hb.window("predict", marks["first_predict"], marks.get("returned", t_end))
    if "returned" in marks:
        hb.window("show_predictions", marks["returned"], t_drawn)
    print(f"training: {epochs} epochs on {device}, {int(s.committed.measured.sum())} sequenced spots, "
          f"model ready: {s.predictor is not None and ok}; {t.status.text()}")
    return t


def bench_export(viewer, hb, draw, tmp: Path):
    from napari_scr2st._napari._export_widget import ExportWidget

    e = open_dock(viewer, hb, draw, "open_export_dock", "Export and import", ExportWidget)
    out = tmp / "bench_predictions.h5ad"
    step(hb, draw, "export", lambda: e.export_h5ad(out), lambda: getattr(e, "worker", None) is None and out.exists(), drawn=False)
    PROF.start("export_csv_click")
    t0 = hb.now()
    csv = tmp / "bench_next.csv"
    e.export_csv(csv)
    wait_until(lambda: False, 0.2)
    wait_until(lambda: getattr(e, "worker", None) is None and csv.exists(), 120)  # written in a worker now
    hb.window("export_csv_click", t0, hb.now())
    PROF.stop("export_csv_click")
    print(f"export: {e.status.text()}")


def print_stalls(stalls: dict, before: dict | None = None) -> None:
    """The per-step table (``before``: a second run's, printed side by side)."""
    print("longest UI stall per step (10 ms heartbeat on the UI thread); 'without paints': the same "
          "with the canvas's own paints (software OpenGL here) taken out; 'paint max': the longest single paint:")
    for name, r in stalls.items():
        flag = "" if not (r["stall_ms_max"] > STALL_TARGET_MS) else f"  > {STALL_TARGET_MS:.0f} ms"
        was = ""
        if before is not None and name in before:
            b = before[name]
            was = f"   [before: {b['stall_ms_max']:6.0f} ms, without paints {b['stall_ms_max_without_paints']:6.0f} ms]"
        gc_ = ""
        if "gc_full" in r:
            gc_ = (f"; without paints and gc {r['stall_ms_max_without_paints_gc']:6.0f} ms; full gc max "
                   f"{r['gc_ms_max']:5.0f} ms ({r['gc_full']})")
        print(f"  {name:18s} {r['stall_ms_max']:7.0f} ms over {r['wall_s']:7.2f} s ({r['ticks']} ticks){flag}; "
              f"without paints {r['stall_ms_max_without_paints']:6.0f} ms; paint max {r['paint_ms_max']:5.0f} ms "
              f"({r['paints']} paints){gc_}{was}")


def report_saved(paths: list[str]) -> int:
    """``--report AFTER.json [BEFORE.json]``: the table recomputed from saved raw data."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    stalls = [stall_report(r["raw"]["ticks"], r["raw"]["windows"], r["raw"]["paints"], gcs=r["raw"].get("gc_full"))
              for r in runs]
    for p, r in zip(paths, runs, strict=True):
        print(f"{p}: load average {r['machine']['load_avg_1min']:.2f}; slider end to end median "
              f"{r['slider']['end_to_end_ms_median']:.0f} ms; idle repaint median "
              f"{statistics.median(r['idle_repaint_ms']):.0f} ms")
    print_stalls(stalls[0], stalls[1] if len(stalls) > 1 else None)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spots", type=int, default=5000)
    ap.add_argument("--episodes", type=int, default=3, help="policy pre-training episodes")
    ap.add_argument("--repeats", type=int, default=20, help="slider moves measured")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sampler", default="scrl", help="sampler of the slider moves (scrl: the live path; the "
                    "dock's default greedy maximiser re-runs its full search per move)")
    ap.add_argument("--only", choices=["slider"], default=None, help="only the slider (no open/train/export)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--trace-stalls", action="store_true",
                    help="sample every thread's stack while the UI thread stalls, and print what blocks it")
    ap.add_argument("--mpl-log", action="store_true",
                    help="log the dock charts' matplotlib draws, draw requests and resizes per step")
    ap.add_argument("--profile", default=None, metavar="DIR",
                    help="cProfile the UI thread per step into DIR (<step>.pstats and .txt; slows it down)")
    ap.add_argument("--report", nargs="+", metavar="JSON", default=None,
                    help="print the stall table of saved runs (AFTER [BEFORE]) and exit")
    args = ap.parse_args(argv)
    if args.report:
        return report_saved(args.report)
    global PROF
    PROF = Profiler(args.profile)
    os.environ["SCR2ST_SYNC_WORKERS"] = "0"  # as for a user: thread workers
    import tempfile

    import napari

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}, "
          f"napari {napari.__version__}")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    hb = Heartbeat()
    draw = DrawWatch(viewer, hb)
    gcw = GcWatch(hb)
    wait_until(lambda: False, 1.0)
    hb.start()
    tracer = StallTracer(hb) if args.trace_stalls else None
    if tracer is not None:
        tracer.start()
    mpl = MplWatch(hb) if args.mpl_log else None
    her2st = SHARED / "her2st" if args.only is None else None
    bench_open(viewer, hb, draw, args.spots, her2st)
    viewer.reset_view()
    w, s = bench_prepare(viewer, hb, draw, args.episodes, args.sampler)
    out = {"machine": {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
           "settings": {"spots": args.spots, "episodes": args.episodes, "epochs": args.epochs, "device": args.device,
                        "sampler": args.sampler, "repeats": args.repeats}}
    out["slider"] = bench_slider(w, s, hb, draw, args.repeats)
    if args.only is None:
        bench_training(viewer, s, hb, draw, args.epochs, args.device)
        with tempfile.TemporaryDirectory() as tmp:
            bench_export(viewer, hb, draw, Path(tmp))
    _settle(w, s)
    hb.stop()
    PROF.write()
    if tracer is not None:
        tracer.stop()
        print(tracer.report(hb.windows))
    if mpl is not None:
        print(mpl.report(hb.windows))
    gcw.stop()
    full_gcs = gcw.full()
    out["stalls"] = hb.report(draw.paints, full_gcs)
    out["gc"] = {"full": len(full_gcs), "full_ms": [round(b - a, 1) for a, b in full_gcs],
                 "full_on_ui_thread": sum(1 for *_, g, ui in gcw.runs if g == 2 and ui)}
    print(f"full garbage collections: {out['gc']['full']} ({out['gc']['full_on_ui_thread']} on the UI thread), "
          f"median {statistics.median(out['gc']['full_ms'] or [float('nan')]):.0f} ms, "
          f"max {max(out['gc']['full_ms'], default=float('nan')):.0f} ms")
    out["stall_target_ms"] = STALL_TARGET_MS
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    n0 = len(draw.paints)
    for _ in range(5):  # the floor: repaints of the final viewer with nothing changed, all idle
        k = len(draw.paints)
        scene.update()
        wait_until(lambda k=k: len(draw.paints) > k, 10.0)
        wait_until(lambda: False, 0.2)
    still = [e - s_ for s_, e in draw.paints[n0:]]
    out["idle_repaint_ms"] = still
    print(f"idle repaint of the final canvas (1600 x 1000, {len(viewer.layers)} layers): median "
          f"{statistics.median(still):.0f} ms (all: {', '.join(f'{x:.0f}' for x in still)})")
    print_stalls(out["stalls"])
    def r1(xs):
        return [[round(a, 1), round(b, 1)] for a, b in xs]

    # to recompute the report (--report); 0.1 ms is finer than the 10 ms heartbeat
    out["raw"] = {"ticks": r1(hb.ticks), "paints": r1(draw.paints), "gc_full": r1(full_gcs),
                  "windows": {k: list(v) for k, v in hb.windows.items()}}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out))
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
