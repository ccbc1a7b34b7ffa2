"""The two first-paint speedups (`_napari/_vispy_speedups`): the same output, less UI time.

The shader speedup must strip exactly what vispy's regex strips, on the programs a real viewer
builds; it must leave a vispy alone whose method changed. The glyph warming must put the
plugin's characters into the canvas's own atlas, one per turn, and draw the same pixels.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from napari_scr2st._napari import _vispy_speedups as S


def _vispy_strip(code: str) -> str:
    return re.sub(S.COMMENT_PATTERN, S.COMMENT_REPL, code, flags=re.M)


@pytest.fixture
def no_speedup():
    """vispy as shipped for the test, and as it was afterwards."""
    was = S._state["installed"] is not None
    S.uninstall_shader_parse_speedup()
    yield
    if was:
        S.install_shader_parse_speedup()
    else:
        S.uninstall_shader_parse_speedup()


def test_strip_line_comments_equals_vispys_regex_on_edge_cases_and_random_text():
    cases = ["", "\n", "//", "///", "a//b", "a // b // c", "x // uniform float u; // y\n",
             "//x\n\ny//z\r\nw\r", "no comment", "a/ /b", "x\n//\n", "\n\n// tail"]
    rnd = random.Random(0)
    cases += ["".join(rnd.choice("ab/ \n\r;") for _ in range(rnd.randint(0, 40))) for _ in range(5000)]
    for code in cases:
        assert S.strip_line_comments(code) == _vispy_strip(code), repr(code)
    # the greedy group keeps an earlier comment marker: the LAST one on a line is cut
    assert S.strip_line_comments("a // b // c") == "a // b "


def test_the_programs_a_viewer_builds_are_stripped_as_vispy_strips_them(make_napari_viewer, no_speedup):
    """Record the source of every GL program the first paint of image, points, shapes, a text
    overlay and a colour bar builds, and compare both strippings on each."""
    import vispy.gloo.program as program
    from napari.components.overlays import TextOverlay

    viewer = make_napari_viewer(show=True)
    with S.recorded_shader_sources() as seen:
        viewer.add_image(np.random.default_rng(0).random((64, 64)))
        pts = viewer.add_points(np.random.default_rng(1).random((50, 2)) * 64, face_color="magenta",
                                features={"v": np.arange(50.0)})
        pts.face_color = "v"
        pts.face_colorbar.visible = True
        viewer.add_shapes([np.array([[5, 5], [5, 30], [30, 30], [30, 5]])], shape_type="polygon")
        viewer.canvas.overlays["t"] = TextOverlay(text="Selection (S1)", visible=True, box=True)
        viewer.screenshot(canvas_only=True)
    assert program.re is re  # vispy's own re again after the block
    assert len(seen) >= 8  # image, markers, lines, mesh, text, box, colour bar...
    assert sum("//" in code for code in seen) >= 4
    for code in seen:
        assert S.strip_line_comments(code) == _vispy_strip(code)


def test_install_patches_only_vispys_comment_call_and_uninstalls(no_speedup, monkeypatch):
    import vispy.gloo.program as program

    assert program.re is re
    assert S.install_shader_parse_speedup() is True
    assert isinstance(program.re, S._CommentStrippingRe)
    assert S.install_shader_parse_speedup() is True  # once
    # every other call goes to re unchanged
    assert program.re.sub(r"a+", "b", "caaat") == "cbt"
    assert program.re.sub(S.COMMENT_PATTERN, S.COMMENT_REPL, "x//y\nz", count=1) == "x\nz"
    assert program.re.finditer is re.finditer and program.re.M == re.M
    # a real program parses the same variables
    vert = "uniform vec2 u_a; // uniform float not_me;\nattribute vec2 a_pos;\nvoid main() { gl_Position = vec4(a_pos, 0., 1.); }"
    frag = "uniform vec4 u_color; // colour\nvoid main() { gl_FragColor = u_color; }"
    fast = sorted(program.Program(vert, frag).variables)
    assert S.uninstall_shader_parse_speedup() is True
    assert program.re is re
    assert sorted(program.Program(vert, frag).variables) == fast
    assert ("uniform", "vec2", "u_a") in fast and not any(v[2] == "not_me" for v in fast)
    assert S.uninstall_shader_parse_speedup() is False


def test_install_leaves_a_changed_vispy_and_the_switch_off_alone(no_speedup, monkeypatch):
    import vispy.gloo.program as program

    def parse_without_the_regex(self, update_variables=True):
        return None

    monkeypatch.setattr(program.Program, "_parse_variables_from_code", parse_without_the_regex)
    assert S.install_shader_parse_speedup() is False
    assert program.re is re
    monkeypatch.undo()
    monkeypatch.setenv(S.ENV, "0")
    assert S.install_shader_parse_speedup() is False
    assert program.re is re
    S.attach(None)
    assert program.re is re


def _legend_pixels(viewer, text):
    from napari.components.overlays import TextOverlay

    viewer.window._qt_window.resize(500, 400)
    viewer.canvas.overlays["legend"] = TextOverlay(text=text, color="#ffd700", position="top_left",
                                                   font_size=10, box=True, visible=True)
    return viewer.screenshot(canvas_only=True, flash=False)


def test_warm_glyphs_fills_the_canvas_atlas_in_turns_and_draws_the_same_pixels(make_napari_viewer, qtbot):
    text = "\u2605 manual picks: 7 of a budget of 30"
    cold = make_napari_viewer(show=True)
    font = S.canvas_font(cold)
    assert font is not None and "\u2605" not in font._glyphs
    cold_px = _legend_pixels(cold, text)

    warm = make_napari_viewer(show=True)
    wfont = S.canvas_font(warm)
    assert wfont is not font  # one atlas per canvas
    done = []
    queued = S.warm_glyphs(warm, then=lambda: done.append(len(wfont._glyphs)))
    assert queued >= len(set(S.PLUGIN_TEXT_CHARS)) - 2  # napari may have drawn a few already
    assert len(wfont._glyphs) < queued  # nothing at once: one per event-loop turn
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    assert set(S.PLUGIN_TEXT_CHARS) <= set(wfont._glyphs)
    assert set(text) <= set(wfont._glyphs)
    assert S.warm_glyphs(warm) == 0  # all there: nothing queued again
    n = len(wfont._glyphs)
    warm_px = _legend_pixels(warm, text)
    assert len(wfont._glyphs) == n, sorted(set(wfont._glyphs) - set(S.PLUGIN_TEXT_CHARS))  # the legend's paint rendered no glyph of its own
    assert warm_px.shape == cold_px.shape
    # the same legend (the glyphs sit elsewhere in the atlas; sampling may differ by a level)
    assert np.abs(warm_px.astype(int) - cold_px.astype(int)).max() <= 2
    assert (np.abs(cold_px[..., :3].astype(int) - [255, 215, 0]).sum(-1) < 60).sum() > 50  # gold text drawn


def test_attach_warms_once_per_viewer_and_not_when_told_not_to(make_napari_viewer, qtbot, monkeypatch):
    monkeypatch.setattr(S, "WARM_ON_ATTACH", True)
    viewer = make_napari_viewer(show=True)
    font = S.canvas_font(viewer)
    S.attach(viewer, glyphs=False)
    qtbot.wait(50)
    assert "\u25cb" not in font._glyphs
    assert S._state["installed"] is not None or not S.enabled()
    S.attach(viewer)
    qtbot.waitUntil(lambda: set(S.PLUGIN_TEXT_CHARS) <= set(font._glyphs), timeout=30000)
    assert viewer in S._WARMED
    S.attach(viewer)  # a second dock: nothing queued again
    assert set(S.PLUGIN_TEXT_CHARS) <= set(font._glyphs)


def test_the_plugins_switches_share_one_env_rule(monkeypatch):
    """SCR2ST_SYNC_WORKERS, SCR2ST_GC_FREEZE and SCR2ST_VISPY_SPEEDUPS read "off" alike
    (`config.env_flag`)."""
    from napari_scr2st._napari import _heap, _vispy_speedups, _workers

    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "off")
    monkeypatch.setenv("SCR2ST_GC_FREEZE", "off")
    monkeypatch.setenv("SCR2ST_VISPY_SPEEDUPS", "off")
    assert not _workers.sync_workers() and not _heap.enabled() and not _vispy_speedups.enabled()
    monkeypatch.setenv("SCR2ST_SYNC_WORKERS", "1")
    monkeypatch.delenv("SCR2ST_GC_FREEZE")
    monkeypatch.delenv("SCR2ST_VISPY_SPEEDUPS")
    assert _workers.sync_workers() and _heap.enabled() and _vispy_speedups.enabled()
