"""Two costs of a first paint that no GPU removes, taken off the paints that show new layers.

Every new visual (a layer, a legend line, a colour bar) costs its first paint more than the
ones after it, and on the UI thread. Two parts of that cost are pure Python and do not depend
on the graphics card (measured on 2 cores; see docs/benchmarks.md):

1. **Shader parsing.** Each time vispy builds a GL program it strips ``//`` comments from the
   GLSL source with ``re.sub(r'(.*)(//.*)', r'\\1', code, flags=re.M)``. The greedy group is
   tried at every start position of every line and backtracks over the rest of the line, so the
   cost grows with the square of the line length: 12-13 ms per program (~19 ms under cProfile:
   0.41 s of the paints after a prepare, 22 programs). :func:`install_shader_parse_speedup` gives vispy's ``gloo.program``
   module a ``re`` whose ``sub`` makes exactly that substitution in linear time
   (:func:`strip_line_comments`: each line cut at its LAST ``//``, as the greedy group does) and
   passes every other call to :mod:`re` unchanged. It is installed only while vispy's method
   still contains that pattern, so a vispy that changes the method is left alone.
2. **Glyphs.** napari's canvas renders each character the first time any text shows it (a
   256-point signed-distance field, 6-12 ms per glyph) into one atlas per canvas, in the paint
   that shows it: the first legend took ~0.13-0.37 s of glyphs. :func:`warm_glyphs` renders the
   characters of the plugin's own canvas texts (:data:`PLUGIN_TEXT_CHARS`) beforehand into the
   same atlas, one glyph per event-loop turn, while the user looks at the data.

:func:`attach` does both for a viewer (the plugin calls it when it first touches one: a read, a
sample, a dock). ``SCR2ST_VISPY_SPEEDUPS=0`` turns both off. The output is the same either
way: the same comments are stripped, the same glyphs end up in the atlas.
"""

from __future__ import annotations

import contextlib
import re
import weakref

from ..config import env_flag
from ._dock_kit import unwrap

ENV = "SCR2ST_VISPY_SPEEDUPS"
#: vispy's comment-stripping call in ``gloo.program.Program._parse_variables_from_code``
COMMENT_PATTERN = r"(.*)(//.*)"
COMMENT_REPL = r"\1"

#: what the plugin writes on the canvas: the legend (rounds, manual picks against the budget,
#: rings, cell types), the colour bar's title (gene, predicted/measured, scale) and its ticks.
#: Letters and digits cover section, gene and cell-type names; vispy lays out every text with
#: the glyphs of "\u00c5\u00c9\u00d1\u0150jgpqy" (their ascenders and descenders align the lines).
PLUGIN_TEXT_CHARS = "".join(sorted(set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " ()[]:;,.-+/%&_'\u25cb\u25cf\u2605\u00b7\u2013"
    "\u00c5\u00c9\u00d1\u0150"
)))

#: :func:`attach` warms the glyphs (the test suite turns it off: it has no idle time to fill)
WARM_ON_ATTACH = True
_WARMED: weakref.WeakSet = weakref.WeakSet()  # viewers whose glyphs are warmed or being warmed
_state: dict = {"installed": None}  # the vispy.gloo.program module we patched, or None


def enabled() -> bool:
    return env_flag(ENV, True)


def strip_line_comments(code: str) -> str:
    """``re.sub(r'(.*)(//.*)', r'\\1', code, flags=re.M)`` in linear time: every line (split at
    ``\\n`` only, as ``.`` does) is cut at its last ``//``."""
    if "//" not in code:
        return code
    return "\n".join(line[:line.rfind("//")] if "//" in line else line for line in code.split("\n"))


class _CommentStrippingRe:
    """Stands in for :mod:`re` in vispy's ``gloo.program``: its one comment-stripping ``sub``
    goes through :func:`strip_line_comments`, everything else to :mod:`re`."""

    def __getattr__(self, name):
        return getattr(re, name)

    @staticmethod
    def sub(pattern, repl, string, count=0, flags=0):
        if pattern == COMMENT_PATTERN and repl == COMMENT_REPL and not count and isinstance(string, str):
            return strip_line_comments(string)
        return re.sub(pattern, repl, string, count=count, flags=flags)


def _method_uses_pattern(program_module) -> bool:
    fn = getattr(getattr(program_module, "Program", None), "_parse_variables_from_code", None)
    code = getattr(fn, "__code__", None)
    return code is not None and COMMENT_PATTERN in code.co_consts


def install_shader_parse_speedup() -> bool:
    """Give ``vispy.gloo.program`` the linear-time comment stripping (once per process).
    Returns whether it is installed now: False when switched off, or when vispy's method no
    longer makes that call (nothing is patched then)."""
    if _state["installed"] is not None:
        return True
    if not enabled():
        return False
    try:
        import vispy.gloo.program as program
    except ImportError:
        return False
    if program.re is not re or not _method_uses_pattern(program):
        return False
    program.re = _CommentStrippingRe()
    _state["installed"] = program
    return True


def uninstall_shader_parse_speedup() -> bool:
    """Give vispy its :mod:`re` back. Returns whether it was installed."""
    program = _state["installed"]
    if program is None:
        return False
    if isinstance(program.re, _CommentStrippingRe):
        program.re = re
    _state["installed"] = None
    return True


@contextlib.contextmanager
def recorded_shader_sources():
    """Inside the block, every GLSL source that vispy strips comments from (one per GL program
    built) is appended to the yielded list; vispy's ``re`` (the stand-in or :mod:`re`) does the
    work as before. For the tests and ``benchmarks/bench_first_paint.py``."""
    import vispy.gloo.program as program

    seen: list[str] = []
    inner = program.re

    class _Recording:
        def __getattr__(self, name):
            return getattr(inner, name)

        @staticmethod
        def sub(pattern, repl, string, count=0, flags=0):
            if pattern == COMMENT_PATTERN:
                seen.append(string)
            return inner.sub(pattern, repl, string, count=count, flags=flags)

    program.re = _Recording()
    try:
        yield seen
    finally:
        program.re = inner


def canvas_font(viewer):
    """The texture font that napari's text visuals in ``viewer``'s canvas draw with (the one
    atlas of that canvas), or None where this napari has none to reach."""
    try:
        info = viewer.window._qt_viewer.canvas.font_info()
        return info.font_manager.get_font(info.face, False, False)
    except Exception:  # noqa: BLE001 - another napari: warming is an optimisation only
        return None


def warm_glyphs(viewer, chars: str = PLUGIN_TEXT_CHARS, then=None) -> int:
    """Render ``chars`` into the atlas of ``viewer``'s canvas, one glyph per Qt event-loop turn
    (6-12 ms each), so that the paint that first shows a legend or a colour-bar title does not
    render them. Characters already there are skipped. Returns how many are queued; ``then()``
    runs after the last one (also when none was queued). A closed window ends it quietly."""
    viewer = unwrap(viewer)
    font = canvas_font(viewer)
    missing = [] if font is None else [c for c in dict.fromkeys(chars) if c not in getattr(font, "_glyphs", {})]
    if not missing:
        if then is not None:
            then()
        return 0
    from qtpy.QtCore import QTimer

    ref, viewer_ref = weakref.ref(font), weakref.ref(viewer)  # the chain keeps neither alive

    def _next(i: int) -> None:
        f, v = ref(), viewer_ref()
        if f is None or v is None or getattr(getattr(v, "window", None), "_qt_window", None) is None:
            return
        try:
            if missing[i] not in f._glyphs:
                f[missing[i]]
        except RuntimeError:  # the atlas is full, or the canvas went away: stop, nothing is lost
            return
        if i + 1 < len(missing):
            QTimer.singleShot(0, lambda: _next(i + 1))
        elif then is not None:
            then()

    QTimer.singleShot(0, lambda: _next(0))
    return len(missing)


def attach(viewer, *, glyphs: bool = True) -> None:
    """Both speedups for ``viewer``: the shader parsing (process-wide, once) and, with
    ``glyphs``, the glyphs of its canvas (once per viewer; callers pass False with synchronous
    workers, i.e. in tests, where no user waits between two steps). Nothing when switched off."""
    if not enabled():
        return
    install_shader_parse_speedup()
    real = unwrap(viewer)  # napari hands plugins a public-only proxy
    if not (glyphs and WARM_ON_ATTACH) or real is None or real in _WARMED:
        return
    _WARMED.add(real)
    warm_glyphs(real)
