import numpy as np
import pytest
import scipy.sparse as sp

from napari_scr2st.data import (
    SectionError,
    concat_sections,
    make_sample,
    make_section,
    split_sections,
    summarize,
    validate_section,
)
from napari_scr2st.data.expression import log1p_normalized
from napari_scr2st.data.model import get_fullres_image, library_id, read_image


def _tiny(name="S1", n=4):
    counts = np.arange(n * 3, dtype=float).reshape(n, 3)
    return make_section(
        counts, ["g1", "g2", "g3"], [f"{i}x1" for i in range(n)], np.c_[np.arange(n) * 10.0, np.ones(n)],
        section=name, patient="P", spot_diameter_fullres=5.0,
    )


def test_make_section_fields():
    a = _tiny()
    validate_section(a)
    assert library_id(a) == "S1"
    assert sp.issparse(a.X)
    assert a.obs["section"].tolist() == ["S1"] * 4
    assert a.uns["spatial"]["S1"]["scalefactors"]["spot_diameter_fullres"] == 5.0
    assert get_fullres_image(a) is None


def test_large_image_is_only_stored_downscaled(tmp_path):
    from PIL import Image

    img = np.full((3000, 2500, 3), 200, np.uint8)
    path = tmp_path / "he.png"
    Image.fromarray(img).save(path)
    a = make_section(np.ones((2, 2)), ["a", "b"], ["s1", "s2"], np.array([[10, 10], [20, 20]]),
                     section="S", image=img, image_path=path, spot_diameter_fullres=5)
    low = a.uns["spatial"]["S"]["images"]["lowres"]
    assert max(low.shape[:2]) == 2000 and "hires" not in a.uns["spatial"]["S"]["images"]
    assert a.uns["spatial"]["S"]["scalefactors"]["tissue_lowres_scalef"] == pytest.approx(2000 / 3000)
    full = get_fullres_image(a)
    assert full.shape == (3000, 2500, 3)
    assert get_fullres_image(a) is full  # read once, then cached: never decoded twice


def test_read_image_errors_name_the_file(tmp_path):
    with pytest.raises(SectionError, match="not found.*nope.jpg"):
        read_image(tmp_path / "nope.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(SectionError, match="bad.jpg"):
        read_image(bad)


def test_validate_names_the_field():
    a = _tiny()
    del a.obsm["spatial"]
    with pytest.raises(SectionError, match=r"obsm\['spatial'\]"):
        validate_section(a)
    with pytest.raises(SectionError, match="no spots"):
        validate_section(_tiny()[:0].copy())


def test_concat_and_split_round_trip():
    coll = {"S1": _tiny("S1"), "S2": _tiny("S2", 3)}
    joined = concat_sections(coll)
    assert joined.n_obs == 7
    assert set(joined.uns["spatial"]) == {"S1", "S2"}
    assert joined.obs_names.is_unique
    back = split_sections(joined)
    assert back["S2"].n_obs == 3 and list(back["S2"].uns["spatial"]) == ["S2"]
    assert "2 section(s)" in summarize(joined)


def test_log1p_normalized_matches_scanpy():
    import scanpy as sc

    a = make_sample(n_spots=200, seed=0).section
    ref = a.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    genes = ["EPCAM", "CD3E", "SYN0005"]
    ours = log1p_normalized(a, genes)
    np.testing.assert_allclose(ours, ref[:, genes].X.toarray(), rtol=1e-5, atol=1e-5)
    with pytest.raises(KeyError, match="NOPE"):
        log1p_normalized(a, ["NOPE"])
def test_reading_a_large_section_image_leaves_pillows_guard_on(shared_data, tmp_path):
    """A her2st H&E image (~92 Mpx, above Pillow's limit) reads; the process-wide guard stays."""
    import shutil

    from PIL import Image

    src = next((shared_data / "her2st" / "data" / "ST-imgs" / "C" / "C3").glob("*.jpg"))
    path = shutil.copy(src, tmp_path / "C3.jpg")  # a fresh path: not served from read_image's cache
    before = Image.MAX_IMAGE_PIXELS
    assert before is not None
    img = read_image(path)
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] * img.shape[1] > before
    assert Image.MAX_IMAGE_PIXELS == before


def test_pillow_guard_stays_on_while_a_large_image_is_read(tmp_path, monkeypatch):
    """Reading a large image never switches Pillow's process-wide bomb guard off, not even
    during the read: other threads and plugins keep it (the header read and the decode go
    through the format plugin directly)."""
    import PIL
    from PIL import Image

    from napari_scr2st.data.model import read_image
    from napari_scr2st.io._common import image_size

    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200), (200, 120, 180)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 60,000 px is a "bomb" now
    with pytest.raises(Image.DecompressionBombError):
        Image.open(big)
    seen = []
    real_convert = Image.Image.convert

    def spy(self, *a, **k):
        seen.append(PIL.Image.MAX_IMAGE_PIXELS)
        return real_convert(self, *a, **k)

    monkeypatch.setattr(Image.Image, "convert", spy)
    assert image_size(big) == (200, 300, 3)
    img = read_image(big)
    assert img.shape == (200, 300, 3) and tuple(img[0, 0]) == (200, 120, 180)
    assert seen and set(seen) == {1000}
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(Image.DecompressionBombError):  # the guard still protects everyone else
        Image.open(big)
