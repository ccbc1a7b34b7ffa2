"""Legacy ST under any names, folders of sections, honest reports, bad values, image bit depths,
sections without genes: each case with a tiny section written here."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import scipy.sparse as sp
from _slides import tissue_image
from PIL import Image
from test_reader_errors import _grid, _raises, write_counts, write_image, write_spots

from napari_scr2st.data.model import get_fullres_image, make_section
from napari_scr2st.io import (
    read,
    read_collection,
    read_h5ad_section,
    read_legacy_st,
    read_slide,
    sniff,
    write_h5ad_section,
)


# ---- any names ------------------------------------------------------------------------------
def test_read_counts_spots_and_image_under_any_names(tmp_path):
    counts = write_counts(tmp_path / "run42_matrix.dat")  # not sniffed as a counts table
    spots = write_spots(tmp_path / "positions final.tsv")
    image = write_image(tmp_path / "scan.JPEG.png")
    assert sniff(counts) is None
    a = read(counts, spots=spots, image=image, section="R42")
    assert a.n_obs == 9 and list(a.uns["spatial"]) == ["R42"]
    meta = a.uns["spatial"]["R42"]["metadata"]
    assert meta["spots_path"] == str(spots.resolve()) and meta["source_image_path"] == str(image.resolve())
    assert a.uns["spatial"]["R42"]["images"]["lowres"].shape == (300, 300, 3)


def test_missing_spot_file_names_both_ways_to_give_it(tmp_path):
    counts = write_counts(tmp_path / "S9.tsv")
    msg = _raises(["no spot file found", counts, "S9_selection.tsv"], read, counts)
    assert "--spots FILE" in msg and "spots=PATH" in msg


def test_unrecognised_file_mentions_the_spots_option(tmp_path):
    p = tmp_path / "matrix.dat"
    p.write_text("a,b\n1,2\n")
    _raises([p, "--spots FILE", "spots=PATH"], read, p)


# ---- a plain folder of sections ---------------------------------------------------------------
def _folder(tmp_path):
    d = tmp_path / "sections"
    d.mkdir()
    write_counts(d / "S1_counts.tsv")
    write_spots(d / "S1_spots.tsv")
    write_image(d / "S1.jpg")
    tsv = write_counts(d / "tmp.tsv", value=lambda i, j: i * j % 5)
    with gzip.open(d / "S2.tsv.gz", "wt") as fh:
        fh.write(tsv.read_text())
    tsv.unlink()
    write_spots(d / "S2_selection.tsv")
    write_image(d / "S2_HE.png", w=320)
    (d / "notes.txt").write_text("ignored\n")
    return d


def test_folder_of_sections_pairs_files_by_stem(tmp_path):
    d = _folder(tmp_path)
    assert sniff(d) == "folder"
    coll = read(d)
    assert list(coll) == ["S1", "S2"]
    for name, img in (("S1", "S1.jpg"), ("S2", "S2_HE.png")):
        meta = coll[name].uns["spatial"][name]["metadata"]
        assert meta["source_image_path"] == str((d / img).resolve())
        assert meta["spots_path"].endswith(f"{name}_spots.tsv" if name == "S1" else f"{name}_selection.tsv")
    assert coll["S2"].uns["spatial"]["S2"]["metadata"]["fullres_shape"] == [300, 320, 3]
    assert list(read_collection(d, sections=["S2"])) == ["S2"]
    one = read(d, section="S1")
    assert list(one.uns["spatial"]) == ["S1"] and one.n_obs == 9
    (d / "S2_selection.tsv").unlink()
    _raises(["no spot file found", "S2.tsv.gz", "--spots FILE"], read, d)


# ---- what the reader kept ---------------------------------------------------------------------
def test_reader_reports_dropped_spots(tmp_path):
    rows = _grid(n=4)  # 16 positions in the spot file; 6 of them not under tissue
    spots = tmp_path / "S_selection.tsv"
    write_spots(spots, rows)
    lines = spots.read_text().splitlines()
    spots.write_text("\n".join(lines[:1] + [ln[:-1] + ("0" if i < 6 else "1") for i, ln in enumerate(lines[1:])]) + "\n")
    ids = [f"{x}x{y}" for x, y, _, _ in rows] + ["20x20", "21x21"]  # 2 without a spot-file row
    counts = write_counts(tmp_path / "S.tsv", ids=ids)
    with pytest.warns(UserWarning, match=r"kept 10 of 18 spots .*: 6 not under tissue \(selected == 0 .*\), 2 without a spot-file row"):
        a = read_legacy_st(counts, spots)
    rep = a.uns["spatial"]["S"]["metadata"]["reader_report"]
    assert (rep["n_counts_spots"], rep["kept"], rep["not_under_tissue"], rep["without_spot_row"]) == (18, 10, 6, 2)
    assert a.n_obs == 10


# ---- bad values in the counts ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "what"),
    [("inf", "infinite value"), ("nan", "missing value"), ("-2", "negative count"), ("0.37", "non-integer value")],
)
def test_bad_count_values_name_the_file_and_first_bad_column(tmp_path, value, what):
    # the bad value sits in G3 on an early spot and in G2 on a later one: G2 is the first column
    bad = {(1, 2): value, (5, 1): value}
    counts = write_counts(tmp_path / "S.tsv", value=lambda i, j: bad.get((i, j), 1))
    spots = write_spots(tmp_path / "S_selection.tsv")
    msg = _raises([counts, what, "first in column 'G2'"], read_legacy_st, counts, spots)
    if value == "0.37":
        assert "normalised" in msg and "raw integer counts" in msg


# ---- images: bit depth and blank images ---------------------------------------------------------
def _grey16(h=300, w=300) -> np.ndarray:
    """16-bit greyscale 'tissue' in the upper half of the 16-bit range (1000 grey levels)."""
    ramp = np.linspace(40_000, 41_000, w)[None, :].repeat(h, axis=0)
    return ramp.astype(np.uint16)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_16_bit_greyscale_image_is_scaled_not_white(tmp_path, suffix):
    import tifffile

    counts = write_counts(tmp_path / "S.tsv")
    write_spots(tmp_path / "S_selection.tsv")
    img = tmp_path / f"S{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(img, _grey16(), photometric="minisblack")
    else:
        Image.fromarray(_grey16()).save(img)
    a = read(counts, image=img)
    low = a.uns["spatial"]["S"]["images"]["lowres"]
    full = np.asarray(get_fullres_image(a))
    for arr in (low, full):
        assert arr.dtype == np.uint8 and arr.shape[-1] == 3
        assert arr[:, :5].mean() < 30 and arr[:, -5:].mean() > 225  # the ramp spans the range


def test_blank_image_is_refused(tmp_path):
    counts = write_counts(tmp_path / "S.tsv")
    spots = write_spots(tmp_path / "S_selection.tsv")
    img = tmp_path / "S.png"
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(img)
    _raises([img, "blank or nearly uniform"], read_legacy_st, counts, spots, img)


def test_h5ad_16_bit_image_is_scaled(tmp_path):
    xy = np.array([[20.0 * i + 10, 30.0] for i in range(5)])
    a = make_section(sp.csr_matrix(np.ones((5, 2))), ["g1", "g2"], list("abcde"), xy, section="S",
                     spot_diameter_fullres=8.0)  # fmt: skip
    a.uns["spatial"]["S"]["images"]["hires"] = _grey16(60, 120)
    a.uns["spatial"]["S"]["scalefactors"]["tissue_hires_scalef"] = 1.0
    b = read_h5ad_section(write_h5ad_section(a, tmp_path / "s.h5ad"))
    hires = b.uns["spatial"]["S"]["images"]["hires"]
    assert hires.dtype == np.uint8 and hires[:, :3].mean() < 30 and hires[:, -3:].mean() > 225


# ---- a slide before sequencing (no genes) round-trips through h5ad --------------------------------
def test_zero_gene_section_round_trip(tmp_path):
    img = tmp_path / "he.png"
    Image.fromarray(tissue_image(200, 300)).save(img)
    a = read_slide(img, platform="custom", spot_um=10, pitch_um=20, um_per_px=1.0, section="pre")
    assert a.n_vars == 0 and a.n_obs > 20
    b = read_h5ad_section(write_h5ad_section(a, tmp_path / "pre.h5ad"))
    assert b.shape == (a.n_obs, 0) and sp.issparse(b.X)
    assert list(b.obs_names) == list(a.obs_names)
    np.testing.assert_allclose(b.obsm["spatial"], a.obsm["spatial"])
    meta = b.uns["spatial"]["pre"]["metadata"]
    assert meta["source_image_path"] == str(img.resolve()) and meta["image_reader"] == "slide"
    assert b.uns["spatial"]["pre"]["scalefactors"]["spot_diameter_fullres"] == pytest.approx(10.0)
    np.testing.assert_array_equal(np.asarray(get_fullres_image(b)), np.asarray(get_fullres_image(a)))
