"""Spot-centred crops: shape, centring, border padding, batching, size in micrometres."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scr2st.data.model import SectionError, concat_sections, make_section
from napari_scr2st.features.crops import (
    DEFAULT_CROP_FACTOR,
    extract_crops,
    infer_spot_diameter_um,
    iter_crops,
    resolve_crop_px,
    section_groups,
    um_per_px,
)

GREY = (120, 120, 120)


def _section(image, xy, *, diameter=10.0, name="S1", platform=None, mpp=None, array=None):
    n = len(xy)
    rows, cols = array if array is not None else (np.arange(n), np.zeros(n, int))
    ad = make_section(
        np.ones((n, 3)),
        ["g1", "g2", "g3"],
        [f"s{i}" for i in range(n)],
        np.asarray(xy, dtype=float),
        section=name,
        array_row=rows,
        array_col=cols,
        image=image,
        spot_diameter_fullres=diameter,
        keep_fullres_in_memory=image is not None,
    )
    entry = ad.uns["spatial"][name]
    if platform is not None:
        entry["metadata"]["platform"] = platform
    if mpp is not None:
        entry["scalefactors"]["microns_per_pixel"] = mpp
    return ad


def _marked_image(h=90, w=110, centres=(), colours=()):
    img = np.full((h, w, 3), GREY, dtype=np.uint8)
    for (x, y), c in zip(centres, colours, strict=True):
        img[int(np.floor(y + 0.5)), int(np.floor(x + 0.5))] = c
    return img


@pytest.mark.parametrize("crop", [11, 10, 1])
def test_crop_centre_pixel_is_the_spot(crop):
    centres = [
        (40.4, 30.6),
        (70.0, 50.0),
        (55.5, 20.49),
    ]  # half-up rounding: (40, 31), (70, 50), (56, 20)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    img = _marked_image(centres=centres, colours=colours)
    crops = extract_crops(img, np.array(centres), crop)
    assert crops.shape == (3, crop, crop, 3) and crops.dtype == np.uint8
    for k, c in enumerate(colours):
        assert tuple(crops[k, crop // 2, crop // 2]) == c
        # exactly one marked pixel per crop (neighbouring marks are far away)
        assert (crops[k] != np.array(GREY, np.uint8)).any(axis=-1).sum() == 1


def test_crop_matches_plain_slicing():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    xy = np.array([[20.0, 30.0], [50.2, 40.7], [41.5, 12.5]])
    c = 9
    crops = extract_crops(img, xy, c)
    for k, (x, y) in enumerate(xy):
        cx, cy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        np.testing.assert_array_equal(
            crops[k], img[cy - c // 2 : cy - c // 2 + c, cx - c // 2 : cx - c // 2 + c]
        )


def test_crop_centred_after_resize():
    """A disk drawn around the spot centre stays centred in the resized crop."""
    h, w = 100, 100
    cx, cy, r = 47, 53, 6
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 230, np.uint8)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = (20, 20, 160)
    ad = _section(img, [(cx, cy)], diameter=10.0)
    ((idx, crops),) = list(iter_crops(ad, crop_px=31, batch_size=4, out_size=64))
    assert idx.tolist() == [0] and crops.shape == (1, 64, 64, 3)
    crop = crops[0].astype(int)
    assert tuple(crop[32, 32]) == (20, 20, 160)
    dark = crop[..., 0] < 100
    my, mx = np.argwhere(dark).mean(axis=0)
    assert abs(my - 31.5) < 1.0 and abs(mx - 31.5) < 1.0


def test_border_constant_padding():
    img = _marked_image(h=40, w=50)
    crops = extract_crops(img, np.array([[2.0, 3.0], [48.6, 39.0]]), 11)
    c0 = crops[0]
    # spot (x=2, y=3): rows -2..8 and cols -3..7; out-of-image pixels are white
    assert (c0[:2] == 255).all() and (c0[:, :3] == 255).all()
    np.testing.assert_array_equal(c0[2:, 3:], img[0:9, 0:8])
    c1 = crops[1]  # x=49, y=39: cols 44..54 (50.. outside), rows 34..44 (40.. outside)
    assert (c1[:, 6:] == 255).all() and (c1[6:] == 255).all()
    np.testing.assert_array_equal(c1[:6, :6], img[34:40, 44:50])
    grey = extract_crops(img, np.array([[2.0, 3.0]]), 11, pad_value=(10, 20, 30))[0]
    assert tuple(grey[0, 0]) == (10, 20, 30)


def test_border_reflect_padding_matches_numpy():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, size=(30, 35, 3), dtype=np.uint8)
    c = 15
    xy = np.array([[1.0, 2.0], [34.0, 29.0], [17.0, 15.0]])
    crops = extract_crops(img, xy, c, pad_mode="reflect")
    pad = c
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    for k, (x, y) in enumerate(xy.astype(int)):
        y0, x0 = y - c // 2 + pad, x - c // 2 + pad
        np.testing.assert_array_equal(crops[k], padded[y0 : y0 + c, x0 : x0 + c])


def test_crop_larger_than_image():
    img = _marked_image(h=6, w=7, centres=[(3, 3)], colours=[(1, 2, 3)])
    crops = extract_crops(img, np.array([[3.0, 3.0]]), 21)
    assert crops.shape == (1, 21, 21, 3)
    assert tuple(crops[0, 10, 10]) == (1, 2, 3)
    assert (crops[0, :7] == 255).all()


def test_iter_crops_batches_and_indices():
    rng = np.random.default_rng(2)
    xy = rng.uniform(5, 85, size=(7, 2))
    img = rng.integers(0, 255, size=(90, 95, 3), dtype=np.uint8)
    ad = _section(img, xy, diameter=8.0)
    batches = list(iter_crops(ad, crop_px=12, batch_size=3, out_size=None))
    assert [len(b) for b, _ in batches] == [3, 3, 1]
    assert np.concatenate([b for b, _ in batches]).tolist() == list(range(7))
    all_crops = np.concatenate([c for _, c in batches])
    np.testing.assert_array_equal(all_crops, extract_crops(img, xy, 12))
    sub = list(iter_crops(ad, crop_px=12, batch_size=8, out_size=32, indices=np.array([5, 1])))
    assert sub[0][0].tolist() == [5, 1] and sub[0][1].shape == (2, 32, 32, 3)
    # default size: DEFAULT_CROP_FACTOR spot diameters, resized to 224
    (_, c), *_ = list(iter_crops(ad, batch_size=2))
    assert c.shape == (2, 224, 224, 3) and resolve_crop_px(ad) == round(DEFAULT_CROP_FACTOR * 8.0)


def test_iter_crops_errors():
    ad = _section(None, [(1.0, 1.0), (5.0, 5.0)])
    with pytest.raises(SectionError, match="no full-resolution image"):
        next(iter_crops(ad, crop_px=4))
    with pytest.raises(ValueError, match="not both"):
        resolve_crop_px(ad, 10, 50.0)
    with pytest.raises(ValueError):
        next(iter_crops(ad, crop_px=4, batch_size=0))


def test_crop_size_from_micrometres():
    img = _marked_image()
    xy = [(20.0, 20.0), (40.0, 20.0)]
    # explicit microns_per_pixel wins
    ad = _section(img, xy, diameter=20.0, mpp=0.5)
    assert um_per_px(ad) == 0.5
    assert resolve_crop_px(ad, crop_um=110.0) == 220
    # Visium: 55 um per spot diameter -> 2.75 um/px
    ad = _section(img, xy, diameter=20.0, platform="visium")
    assert um_per_px(ad) == pytest.approx(2.75)
    assert resolve_crop_px(ad, crop_um=110.0) == 40
    # legacy ST / her2st: 100 um spots -> 5 um/px
    ad = _section(img, xy, diameter=20.0, platform="her2st")
    assert resolve_crop_px(ad, crop_um=110.0) == 22
    # an explicit spot_diameter_um overrides the platform
    assert resolve_crop_px(ad, crop_um=110.0, spot_diameter_um=55.0) == 40
    ad.uns["spatial"]["S1"]["metadata"]["spot_diameter_um"] = 50.0
    assert infer_spot_diameter_um(ad) == 50.0


def test_spot_diameter_from_lattice():
    img = _marked_image(h=400, w=400)
    # square lattice (legacy ST) -> 100 um
    r, c = np.meshgrid(np.arange(6), np.arange(6), indexing="ij")
    sq = np.column_stack([20 + c.ravel() * 30.0, 20 + r.ravel() * 30.0])
    ad = _section(img, sq, diameter=15.0, array=(r.ravel(), c.ravel()))
    assert infer_spot_diameter_um(ad) == 100.0
    # hexagonal lattice (Visium) -> 55 um
    hexa = np.column_stack(
        [20 + c.ravel() * 30.0 + (r.ravel() % 2) * 15.0, 20 + r.ravel() * 30.0 * np.sqrt(3) / 2]
    )
    ad = _section(img, hexa, diameter=15.0, array=(r.ravel(), c.ravel()))
    assert infer_spot_diameter_um(ad) == 55.0


def test_section_groups_of_a_collection():
    img = _marked_image()
    a = _section(img, [(10.0, 10.0), (20.0, 20.0)], name="A")
    b = _section(img, [(30.0, 30.0), (40.0, 40.0), (50.0, 50.0)], name="B")
    joint = concat_sections({"A": a, "B": b})
    groups = dict(section_groups(joint))
    assert set(groups) == {"A", "B"}
    assert len(groups["A"]) == 2 and len(groups["B"]) == 3
    with pytest.raises(SectionError, match="pass library"):
        next(iter_crops(joint, crop_px=4))
    ((idx, crops),) = list(iter_crops(joint, crop_px=5, library="B", out_size=None))
    assert idx.tolist() == groups["B"].tolist() and crops.shape == (3, 5, 5, 3)
