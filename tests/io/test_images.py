"""``data.images``: lazy whole-slide reads, metadata scale, pixel conversions, blank images."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from _slides import tissue_image, write_ome_pyramid
from PIL import Image

from napari_scr2st.data.images import SlideImage, check_not_blank, is_whole_slide, open_slide
from napari_scr2st.data.model import SectionError


@pytest.fixture(scope="module")
def ome(tmp_path_factory):
    """A 2048 x 2048 tiled pyramidal OME-TIFF at 0.5 um/px, 256-px tiles, 3 levels."""
    path = tmp_path_factory.mktemp("ome") / "slide.ome.tif"
    levels = write_ome_pyramid(path, tissue_image(2048, 2048, seed=1), um_per_px=0.5)
    return path, levels


def test_ome_pyramid_levels_and_scale(ome):
    path, levels = ome
    s = open_slide(path)
    assert s.is_lazy and is_whole_slide(path)
    assert s.shape == (2048, 2048, 3)
    assert s.um_per_px == pytest.approx(0.5)
    assert s.n_levels == 3 and s.downsamples == [1.0, 2.0, 4.0]
    assert [lv.shape for lv in s.levels] == [(2048, 2048, 3), (1024, 1024, 3), (512, 512, 3)]
    assert all(lv.dtype == np.uint8 for lv in s.levels)
    assert type(s.levels[0]).__module__.startswith("dask")
    np.testing.assert_array_equal(np.asarray(s.levels[1][100:140, 300:333]), levels[1][100:140, 300:333])
    assert open_slide(path) is s  # cached per file


def test_read_region_equals_full_array_and_pads(ome):
    path, levels = ome
    s = open_slide(path)
    full = tifffile.imread(path)
    np.testing.assert_array_equal(full, levels[0])
    np.testing.assert_array_equal(s.read_region(700, 1100, 300, 250), full[1100:1350, 700:1000])
    edge = s.read_region(-20, 2040, 50, 30)  # past the left and bottom edges
    assert edge.shape == (30, 50, 3)
    np.testing.assert_array_equal(edge[:8, 20:], full[2040:, :30])
    assert (edge[8:] == 255).all() and (edge[:, :20] == 255).all()
    np.testing.assert_array_equal(s.read_region(10, 20, 64, 64, level=2), levels[2][20:84, 10:74])


def test_read_region_decodes_only_the_tiles_it_touches(ome, monkeypatch):
    s = open_slide(ome[0])
    store = s._tiff[0].store
    keys: list[str] = []
    original = store.get

    async def counting_get(key, *args, **kwargs):
        if not key.endswith(".json"):
            keys.append(key)
        return await original(key, *args, **kwargs)

    monkeypatch.setattr(store, "get", counting_get)
    s.read_region(300, 300, 100, 100)  # inside tile (1, 1) of 8 x 8
    assert len(set(keys)) == 1
    keys.clear()
    s.read_region(500, 500, 30, 30)  # across tiles (1..2, 1..2)
    assert len(set(keys)) == 4


def test_thumbnail_from_a_small_level(ome):
    s = open_slide(ome[0])
    thumb, scale = s.thumbnail(300)
    assert thumb.shape == (300, 300, 3) and thumb.dtype == np.uint8
    assert scale == pytest.approx(300 / 2048)
    # the tissue (dark) is where the image has it
    assert thumb[150, 150].mean() < 200 and thumb[10, 10].mean() > 220


def test_plain_tiff_with_xresolution(tmp_path):
    img = tissue_image(300, 400)
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, img, photometric="rgb", resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    s = open_slide(p)
    assert s.um_per_px == pytest.approx(0.25)
    assert not is_whole_slide(p)  # a plain 8-bit strip TIFF is decoded whole elsewhere
    np.testing.assert_array_equal(s.read_region(0, 0, 400, 300), img)
    inch = tmp_path / "inch.tif"
    tifffile.imwrite(inch, img, photometric="rgb", resolution=(25400 / 0.5, 25400 / 0.5), resolutionunit="INCH")
    assert open_slide(inch).um_per_px == pytest.approx(0.5)
    dpi72 = tmp_path / "dpi72.tif"
    tifffile.imwrite(dpi72, img, photometric="rgb", resolution=(72, 72), resolutionunit="INCH")
    assert open_slide(dpi72).um_per_px is None  # a writer's default, not a microscope scale


def test_svs_mpp_from_image_description(tmp_path):
    p = tmp_path / "scan.svs"
    desc = "Aperio Image Library v12.0.15\r\n2048x2048 [0,0 2048x2048] (256x256) JPEG/RGB Q=70|AppMag = 40|MPP = 0.2527"
    tifffile.imwrite(p, tissue_image(512, 512), photometric="rgb", tile=(256, 256), description=desc)
    s = open_slide(p)
    assert s.um_per_px == pytest.approx(0.2527)
    assert is_whole_slide(p)


def test_16bit_grey_is_scaled_by_its_range_not_saturated(tmp_path):
    rng = np.random.default_rng(0)
    ramp = np.linspace(1000, 5000, 256)[None, :] * np.ones((200, 1))
    raw = (ramp + rng.normal(0, 30, ramp.shape)).astype(np.uint16)
    p = tmp_path / "grey16.tif"
    tifffile.imwrite(p, raw)
    s = open_slide(p)
    assert is_whole_slide(p)
    rgb = np.asarray(s.levels[0])
    assert rgb.shape == (200, 256, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert (rgb < 250).mean() > 0.9  # not all white
    cols = rgb[..., 0].mean(axis=0)
    assert cols[-10:].mean() - cols[:10].mean() > 200  # contrast kept, dark to bright
    assert np.corrcoef(cols, np.arange(256))[0, 1] > 0.99
    np.testing.assert_array_equal(s.read_region(30, 40, 50, 60), rgb[40:100, 30:80])


def test_nearly_constant_16bit_image_is_blank(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "flat16.tif"
    tifffile.imwrite(p, (3000 + rng.integers(0, 3, (100, 120))).astype(np.uint16))
    with pytest.raises(SectionError, match="flat16.tif.*blank"):
        open_slide(p)


def test_blank_png_raises_naming_the_file(tmp_path):
    p = tmp_path / "blank.png"
    Image.new("RGB", (200, 150), (245, 245, 245)).save(p)
    with pytest.raises(SectionError, match="blank.png.*blank or nearly uniform"):
        open_slide(p)
    assert open_slide(p, check_blank=False).shape == (150, 200, 3)
    with pytest.raises(SectionError, match="hires of X"):
        check_not_blank(np.full((50, 50, 3), 10, np.uint8), "hires of X")
    check_not_blank(tissue_image(64, 64), "ok")


def test_rgba_png_becomes_rgb_over_white(tmp_path):
    rgb = tissue_image(120, 160)
    alpha = np.full((120, 160, 1), 255, np.uint8)
    alpha[:, :40] = 0
    p = tmp_path / "rgba.png"
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(p)
    s = open_slide(p)
    assert not s.is_lazy and s.shape == (120, 160, 3)
    px = s.read_region(0, 0, 160, 120)
    assert (px[:, :40] == 255).all()
    np.testing.assert_array_equal(px[:, 40:], rgb[:, 40:])


def test_grey_png_and_jpeg_decoded_once(tmp_path):
    grey = tissue_image(100, 100)[..., 0]
    p = tmp_path / "grey.png"
    Image.fromarray(grey, "L").save(p)
    s = open_slide(p)
    np.testing.assert_array_equal(s.read_region(0, 0, 100, 100), np.repeat(grey[..., None], 3, axis=2))
    j = tmp_path / "x.jpg"
    Image.fromarray(tissue_image(100, 100)).save(j, quality=95)
    assert open_slide(j) is open_slide(j)
    assert open_slide(j).um_per_px is None


def test_pillow_pixel_limit_is_not_changed(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.fromarray(tissue_image(300, 300)).save(p)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(p)
    assert open_slide(p).shape == (300, 300, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_bad_files_raise_section_error(tmp_path):
    with pytest.raises(SectionError, match="not found"):
        open_slide(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(SectionError, match="bad.tif"):
        open_slide(bad)
    notjpg = tmp_path / "text.jpg"
    notjpg.write_text("hello")
    with pytest.raises(SectionError, match="text.jpg"):
        open_slide(notjpg)


def test_from_array_pyramid():
    img = tissue_image(2500, 2100)
    s = SlideImage.from_array(img)
    assert not s.is_lazy and s.level_shapes == [(2500, 2100), (1250, 1050)]
    assert [lv.shape for lv in s.levels] == [(2500, 2100, 3), (1250, 1050, 3)]
    np.testing.assert_array_equal(s.read_region(5, 6, 7, 8), img[6:14, 5:12])


def _count_turbo(monkeypatch):
    """Count imagecodecs' JPEG decodes (the fast path) without changing what they return."""
    import imagecodecs

    calls = []
    real = imagecodecs.jpeg8_decode

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(imagecodecs, "jpeg8_decode", counting)
    return calls


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg_decoded_with_libjpeg_turbo_equals_pillow(tmp_path, monkeypatch, mode):
    calls = _count_turbo(monkeypatch)
    img = tissue_image(210, 330, seed=3)
    p = tmp_path / f"he_{mode}.jpg"
    Image.fromarray(img if mode == "RGB" else img[..., 1], mode).save(p, quality=90)
    with Image.open(p) as im:
        pillow = np.asarray(im)
    s = open_slide(p)
    assert len(calls) == 1  # the fast path decoded it
    px = s.read_region(0, 0, 330, 210)
    want = pillow if mode == "RGB" else np.repeat(pillow[..., None], 3, axis=2)
    np.testing.assert_array_equal(px, want)  # bit-identical to Pillow, not just close


def test_jpeg_falls_back_to_pillow_when_imagecodecs_fails(tmp_path, monkeypatch):
    import imagecodecs

    def broken(*args, **kwargs):
        raise imagecodecs.JpegError("cannot decode")

    monkeypatch.setattr(imagecodecs, "jpeg8_decode", broken)
    img = tissue_image(90, 120, seed=4)
    p = tmp_path / "fallback.jpg"
    Image.fromarray(img).save(p, quality=90)
    with Image.open(p) as im:
        pillow = np.asarray(im)
    np.testing.assert_array_equal(open_slide(p).read_region(0, 0, 120, 90), pillow)


def test_cmyk_jpeg_goes_through_pillow_and_becomes_rgb(tmp_path, monkeypatch):
    calls = _count_turbo(monkeypatch)
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(tissue_image(80, 100, seed=5)).convert("CMYK").save(p, quality=95)
    with Image.open(p) as im:
        assert im.mode == "CMYK"
        want = np.asarray(im.convert("RGB"))
    s = open_slide(p)
    assert calls == []  # imagecodecs would hand back 4 channels of CMYK: Pillow converts instead
    assert s.shape == (80, 100, 3)
    np.testing.assert_array_equal(s.read_region(0, 0, 100, 80), want)


def test_real_her2st_jpeg_decodes_like_pillow(shared_data, monkeypatch):
    calls = _count_turbo(monkeypatch)
    jpgs = sorted((shared_data / "her2st").rglob("*.jpg"))
    if not jpgs:
        pytest.skip("no her2st H&E JPEG in the shared data")
    p = min(jpgs, key=lambda q: q.stat().st_size)
    from napari_scr2st.data import images

    images._decode_pil_cached.cache_clear()  # decode it here, not from an earlier test's cache
    s = open_slide(p)
    assert len(calls) == 1
    with images.open_pillow_unguarded(p) as im:  # above Pillow's pixel guard: open it as the reader does
        want = np.asarray(im.convert("RGB"))
    h, w = want.shape[:2]
    assert s.shape == (h, w, 3)
    np.testing.assert_array_equal(s.read_region(0, 0, w, h), want)


def test_truncated_jpeg_is_not_decoded_as_grey(tmp_path, monkeypatch):
    calls = _count_turbo(monkeypatch)
    p = tmp_path / "whole.jpg"
    Image.fromarray(tissue_image(200, 240, seed=6)).save(p, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(SectionError, match="cut.jpg"):
        open_slide(cut)
    assert calls == []  # no end-of-image marker: Pillow reads it, and it raises
