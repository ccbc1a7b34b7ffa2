"""The selection colours and the category (cell-type) colours never collide."""

import itertools

import numpy as np
from skimage.color import rgb2lab

from napari_scr2st.palette import (
    CELLTYPE_COLORS,
    MANUAL_COLOR,
    MIN_DELTA_E,
    PALETTE,
    ROUND_COLORS,
    celltype_colors,
    hex_to_rgba,
    hex_to_rgba_array,
    round_color,
)


def _lab(colors) -> np.ndarray:
    return rgb2lab(hex_to_rgba_array(colors)[None, :, :3].astype(float))[0]


def _delta_e(a, b) -> np.ndarray:
    """CIE76 Delta E between every colour of ``a`` and every colour of ``b``."""
    return np.linalg.norm(_lab(a)[:, None] - _lab(b)[None], axis=2)


def test_no_category_colour_is_a_selection_colour():
    selection = [*ROUND_COLORS, MANUAL_COLOR]
    d = _delta_e(CELLTYPE_COLORS, selection)
    worst = np.unravel_index(d.argmin(), d.shape)
    assert d.min() >= MIN_DELTA_E, (CELLTYPE_COLORS[worst[0]], selection[worst[1]], d.min())
    # the collision of the issue: round 0 and a yellow category ("Endothelial")
    assert _delta_e([round_color(0)], CELLTYPE_COLORS).min() >= MIN_DELTA_E
    assert PALETTE is CELLTYPE_COLORS


def test_every_type_of_a_reference_gets_a_non_selection_colour():
    types = [f"type {i}" for i in range(40)]  # more types than colours: the palette cycles
    colors = celltype_colors(types)
    assert len(colors) == 40 and set(colors.values()) <= set(CELLTYPE_COLORS)
    assert _delta_e(list(colors.values()), [*ROUND_COLORS, MANUAL_COLOR]).min() >= MIN_DELTA_E


def test_colours_within_each_palette_are_distinct():
    for pal, least in ((CELLTYPE_COLORS, 12.0), (ROUND_COLORS, 12.0)):
        d = _delta_e(pal, pal)
        off = d[~np.eye(len(pal), dtype=bool)]
        assert off.min() >= least, pal
    assert len(set(ROUND_COLORS)) == len(ROUND_COLORS)
    assert [round_color(r) for r in range(10)] == ROUND_COLORS + ROUND_COLORS[:2]


def test_hex_to_rgba():
    np.testing.assert_allclose(hex_to_rgba("#ff8000", 0.5), [1.0, 128 / 255, 0.0, 0.5])
    assert hex_to_rgba_array(["#000000", "#ffffff"]).shape == (2, 4)
    assert all(len(c) == 7 and c.startswith("#") for c in itertools.chain(CELLTYPE_COLORS, ROUND_COLORS))
