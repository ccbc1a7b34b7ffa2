"""First paints with and without the plugin's two speedups (`_napari/_vispy_speedups`), side by
side in one run (run under Xvfb).

1. Shader parsing: the source of every GL program that the first paint of an image, points
   with a colour bar, shapes and a legend builds is recorded, then both comment strippings
   (vispy's regex, the linear one) are timed on the same sources; their outputs are compared.
2. Glyphs: a fresh viewer with 5,000 points gets a legend of ``--lines`` coloured lines (as the
   plugin's canvas legend after a prepare); its first paint is timed on a cold canvas and on
   one whose glyphs were warmed beforehand, alternating, ``--repeats`` times each.
3. Overlays: the same legend as one napari text overlay per line, as the plugin's blocks (one
   overlay per run of lines of one colour) and as one overlay for all lines, all warmed.

    xvfb-run -a python benchmarks/bench_first_paint.py --repeats 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time

import numpy as np

#: the canvas legend of a prepared, two-round selection with a cell-type map (text, colour), in
#: the order `_viewer_layers.legend_entries` gives (before 2026-12-03 the round lines came right
#: after the header and the ring line was grey: every line was an overlay of its own)
LEGEND_ENTRIES = [("Cell types (SYN1)", "#ffffff"), ("\u25cf Tumour", "#e41a1c"), ("\u25cf Stroma", "#4daf4a"),
                  ("Selection (SYN1)", "#ffffff"), ("\u2605 manual picks: 12 of a budget of 300 (large white stars)", "#ffffff"),
                  ("\u25cb ring: sampler/policy pick; faded: not yet sequenced", "#ffffff"),
                  ("\u25cb round 1", "#ffd700"), ("\u25cb round 2", "#00bfff")]
LEGEND = [t for t, _ in LEGEND_ENTRIES]


def record_programs() -> list[str]:
    import napari
    from napari.components.overlays import TextOverlay

    from napari_scr2st._napari._vispy_speedups import recorded_shader_sources

    with recorded_shader_sources() as seen:
        v = napari.Viewer(show=True)
        rng = np.random.default_rng(0)
        v.add_image(rng.random((256, 256)))
        pts = v.add_points(rng.random((5000, 2)) * 256, features={"x": rng.random(5000)}, face_color="x")
        pts.face_colorbar.visible = True
        v.add_shapes([np.array([[5, 5], [5, 60], [60, 60], [60, 5]])], shape_type="polygon")
        v.canvas.overlays["t"] = TextOverlay(text=LEGEND[0], visible=True, box=True)
        v.screenshot(canvas_only=True, flash=False)
        v.close()
    return seen


def bench_shaders(repeats: int) -> dict:
    from napari_scr2st._napari._vispy_speedups import (
        COMMENT_PATTERN,
        COMMENT_REPL,
        strip_line_comments,
    )

    codes = record_programs()
    same = all(strip_line_comments(c) == re.sub(COMMENT_PATTERN, COMMENT_REPL, c, flags=re.M) for c in codes)
    slow, fast = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for c in codes:
            re.sub(COMMENT_PATTERN, COMMENT_REPL, c, flags=re.M)
        slow.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        for c in codes:
            strip_line_comments(c)
        fast.append((time.perf_counter() - t) * 1000)
    n = len(codes)
    s, f = statistics.median(slow), statistics.median(fast)
    print(f"shader comment stripping, {n} programs of a first paint ({sum(map(len, codes)) / n / 1000:.1f} kB each): "
          f"vispy's regex {s:.0f} ms ({s / n:.1f} ms per program), linear {f:.1f} ms; {s / max(f, 1e-9):.0f}x; "
          f"identical output: {same}")
    return {"programs": n, "regex_ms": s, "linear_ms": f, "identical": same}


def first_legend_paint(warm: bool, layout: str = "line") -> tuple[float, int, float]:
    import napari
    from napari.components.overlays import TextOverlay
    from qtpy.QtWidgets import QApplication

    from napari_scr2st._napari import _vispy_speedups as S

    app = QApplication.instance()
    v = napari.Viewer(show=True)
    v.window._qt_window.resize(1600, 1000)
    v.add_points(np.random.default_rng(0).random((5000, 2)) * 1000, size=10)
    canvas = v.window._qt_viewer.canvas._scene_canvas.native

    def paint() -> float:
        t = time.perf_counter()
        canvas.repaint()
        app.processEvents()
        return (time.perf_counter() - t) * 1000

    for _ in range(3):
        paint()
    font = S.canvas_font(v)
    if warm:
        done: list = []
        S.warm_glyphs(v, then=lambda: done.append(1))
        while not done:
            app.processEvents()
    before = len(font._glyphs)
    t = time.perf_counter()
    if layout == "all":
        blocks = [("\n".join(LEGEND), "#ffffff")]
    elif layout == "blocks":
        from napari_scr2st._napari._viewer_layers import legend_blocks

        blocks = legend_blocks(LEGEND_ENTRIES)
    else:
        blocks = LEGEND_ENTRIES
    for i, (text, color) in enumerate(blocks):
        v.canvas.overlays[f"legend_{i}"] = TextOverlay(text=text, color=color, position="top_left", font_size=10,
                                                        box=True, visible=True)
    created = (time.perf_counter() - t) * 1000
    ms = paint()
    rendered = len(font._glyphs) - before
    v.close()
    return ms, rendered, created


def bench_glyphs(repeats: int) -> dict:
    out: dict[str, list] = {"cold": [], "warm": []}
    rendered = {}
    for _ in range(repeats):
        for kind in ("cold", "warm"):
            ms, n, _ = first_legend_paint(kind == "warm")
            out[kind].append(ms)
            rendered[kind] = n
    c, w = statistics.median(out["cold"]), statistics.median(out["warm"])
    print(f"first paint of a {len(LEGEND)}-line legend over 5,000 points: cold canvas {c:.0f} ms "
          f"({rendered['cold']} glyphs rendered in it; all {', '.join(f'{x:.0f}' for x in out['cold'])}), "
          f"warmed {w:.0f} ms ({rendered['warm']} glyphs; all {', '.join(f'{x:.0f}' for x in out['warm'])}); "
          f"{c / max(w, 1e-9):.2f}x")
    return {"cold_ms": out["cold"], "warm_ms": out["warm"], "glyphs_cold": rendered["cold"], "glyphs_warm": rendered["warm"]}


def bench_overlays(repeats: int) -> dict:
    """The legend's lines as one napari text overlay each (the plugin's way until 2026-12-03),
    as the plugin's blocks now (consecutive lines of one colour in one overlay: 5 overlays), and
    all in ONE overlay (one colour: a bound, not a legend), on warmed canvases: creation and
    first paint."""
    kinds = {"one per line": "line", "blocks": "blocks", "one for all": "all"}
    out: dict[str, list] = {k: [] for k in kinds}
    for _ in range(repeats):
        for kind, layout in kinds.items():
            ms, _, created = first_legend_paint(True, layout)
            out[kind].append((created, ms))
    parts = []
    for kind, runs in out.items():
        c = statistics.median(r[0] for r in runs)
        p = statistics.median(r[1] for r in runs)
        parts.append(f"{kind}: created in {c:.0f} ms, first paint {p:.0f} ms")
    print(f"the {len(LEGEND)} legend lines, warmed canvases: " + "; ".join(parts))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import os

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, python {sys.version.split()[0]}")
    from napari_scr2st._napari import _vispy_speedups as S

    S.uninstall_shader_parse_speedup()
    bench_shaders(args.repeats)
    S.install_shader_parse_speedup()  # the glyph part with the shader speedup on both sides
    bench_glyphs(args.repeats)
    bench_overlays(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
