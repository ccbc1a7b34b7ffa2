"""Whole-slide image layers: the slide's own lazy pyramid, never decoded whole (no Qt)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_scr2st import layers as L


def _slides():
    """tests/io/_slides.py (the image-writing helpers of the reader tests)."""
    spec = importlib.util.spec_from_file_location("_slides", Path(__file__).parent / "io" / "_slides.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def no_whole_decode(monkeypatch):
    """Fail if a layer builder decodes an image into a NumPy pyramid."""

    def boom(*_a, **_k):
        raise AssertionError("the whole image was decoded into a pyramid")

    monkeypatch.setattr(L, "image_pyramid", boom)


def test_whole_slide_section_gets_its_lazy_pyramid(tmp_path, no_whole_decode):
    from napari_scr2st.io import read_slide

    S = _slides()
    path = tmp_path / "slide.ome.tif"
    written = S.write_ome_pyramid(path, S.tissue_image(1024, 1536, seed=1), um_per_px=2.0, n_sub=2)
    adata = read_slide(path, platform="visium")
    data, kw, kind = L.image_layer(adata)
    assert kind == "image" and kw["multiscale"] is True and kw["rgb"] is True
    assert kw["name"] == "slide H&E" and kw["metadata"] == {"section": "slide"}
    assert isinstance(data, list) and all(isinstance(lv, da.Array) for lv in data)
    assert [lv.shape for lv in data] == [(1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    assert all(lv.dtype == np.uint8 for lv in data)
    # a region of a level reads the written pixels
    np.testing.assert_array_equal(np.asarray(data[2][100:140, 150:190]), written[2][100:140, 150:190])
    np.testing.assert_array_equal(np.asarray(data[0][300:310, 700:720]), written[0][300:310, 700:720])
    # the section's spots layer lives in the same (level-0) pixel space
    assert L.section_layers(adata)[0][1]["multiscale"] is True


def test_single_level_slide_gets_strided_levels(tmp_path, no_whole_decode):
    """A tiled TIFF without a pyramid: lazy strided levels down to 2 x 1024 pixels."""
    import tifffile

    from napari_scr2st.data.images import open_slide

    img = _slides().tissue_image(200, 4500, seed=2)
    path = tmp_path / "strip.tif"
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="zlib")
    slide = open_slide(path)
    assert slide.is_lazy and slide.n_levels == 1
    data, kw, _ = L.slide_image_layer(slide, section="strip")
    assert kw["multiscale"] is True and kw["name"] == "strip H&E"
    assert [lv.shape for lv in data] == [(200, 4500, 3), (100, 2250, 3), (50, 1125, 3)]
    np.testing.assert_array_equal(np.asarray(data[2]), img[::4, ::4])


def test_small_decoded_image_keeps_one_array(tmp_path):
    from PIL import Image

    from napari_scr2st.data.images import open_slide

    img = _slides().tissue_image(300, 400, seed=3)
    path = tmp_path / "small.png"
    Image.fromarray(img).save(path)
    data, kw, _ = L.slide_image_layer(open_slide(path), section="small")
    assert isinstance(data, np.ndarray) and "multiscale" not in kw
    np.testing.assert_array_equal(data, img)
