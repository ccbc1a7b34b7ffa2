"""Every bad input raises SectionError whose message names the file and the problem."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_scr2st.data.model import SectionError
from napari_scr2st.io import read, read_her2st, read_legacy_st

HEADER = "x\ty\tnew_x\tnew_y\tpixel_x\tpixel_y\tselected\n"


def _grid(
    n: int = 3, step: float = 100.0, offset: float = 50.0
) -> list[tuple[int, int, float, float]]:
    return [
        (x, y, offset + step * (x - 1), offset + step * (y - 1))
        for x in range(1, n + 1)
        for y in range(1, n + 1)
    ]


def write_spots(path: Path, rows=None) -> Path:
    rows = rows if rows is not None else _grid()
    text = HEADER + "".join(f"{x}\t{y}\t{x}\t{y}\t{px}\t{py}\t1\n" for x, y, px, py in rows)
    path.write_text(text)
    return path


def write_counts(
    path: Path, ids=None, genes=("G1", "G2", "G3"), value=lambda i, j: (i + j) % 4
) -> Path:
    ids = ids if ids is not None else [f"{x}x{y}" for x, y, _, _ in _grid()]
    lines = ["\t" + "\t".join(genes)]
    for i, s in enumerate(ids):
        lines.append(s + "\t" + "\t".join(str(value(i, j)) for j in range(len(genes))))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_image(path: Path, w: int = 300, h: int = 300) -> Path:
    """A non-blank RGB image (a horizontal ramp): blank images are refused."""
    ramp = np.broadcast_to(np.linspace(60, 230, w, dtype=np.uint8)[None, :, None], (h, w, 3))
    Image.fromarray(np.ascontiguousarray(ramp)).save(path)
    return path


@pytest.fixture
def good(tmp_path):
    return (
        write_counts(tmp_path / "S.tsv"),
        write_spots(tmp_path / "S_selection.tsv"),
        write_image(tmp_path / "S.png"),
    )


def _raises(match_parts, fn, *args, **kw) -> str:
    with pytest.raises(SectionError) as ei:
        fn(*args, **kw)
    msg = str(ei.value)
    for part in match_parts:
        assert str(part) in msg, f"{part!r} not in {msg!r}"
    return msg


def test_good_small_section_reads(good):
    counts, spots, image = good
    a = read_legacy_st(counts, spots, image)
    assert a.n_obs == 9 and a.n_vars == 3
    assert a.uns["spatial"]["S"]["scalefactors"]["spot_diameter_fullres"] == pytest.approx(50.0)


# ---- missing files ---------------------------------------------------------------------------
def test_missing_counts_file(good, tmp_path):
    _, spots, _ = good
    _raises(
        ["counts file not found", tmp_path / "nope.tsv"],
        read_legacy_st,
        tmp_path / "nope.tsv",
        spots,
    )


def test_missing_spot_file(good, tmp_path):
    counts, _, _ = good
    _raises(
        ["spot file not found", tmp_path / "nope.tsv"],
        read_legacy_st,
        counts,
        tmp_path / "nope.tsv",
    )


def test_missing_image_file(good, tmp_path):
    counts, spots, _ = good
    _raises(
        ["image file not found", tmp_path / "nope.jpg"],
        read_legacy_st,
        counts,
        spots,
        tmp_path / "nope.jpg",
    )


def test_missing_her2st_section(her2st_root):
    _raises(
        ["Z9", "counts file not found", "available sections: A1"], read_her2st, her2st_root, "Z9"
    )


def test_missing_path_in_dispatcher(tmp_path):
    _raises(["not found", tmp_path / "x.h5ad"], read, tmp_path / "x.h5ad")


# ---- spot ids that do not match ---------------------------------------------------------------
def test_no_spot_ids_match(tmp_path):
    counts = write_counts(tmp_path / "S.tsv", ids=[f"{i}x{i}" for i in range(20, 29)])
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises(["none of the 9 spot ids", counts, spots, "9 spots"], read_legacy_st, counts, spots)


def test_too_few_spot_ids_match(tmp_path):
    ids = ["1x1", "1x2", "1x3"] + [f"{i}x{i}" for i in range(20, 27)]
    counts = write_counts(tmp_path / "S.tsv", ids=ids)
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises(["only 3 of 10 spot ids", counts, spots, "50%"], read_legacy_st, counts, spots)


def test_some_unmatched_spots_are_dropped_with_a_warning(tmp_path):
    ids = [f"{x}x{y}" for x, y, _, _ in _grid()] + ["30x30"]
    counts = write_counts(tmp_path / "S.tsv", ids=ids)
    spots = write_spots(tmp_path / "S_selection.tsv")
    with pytest.warns(UserWarning, match="kept 9 of 10 spots .* 1 without a spot-file row"):
        a = read_legacy_st(counts, spots)
    assert a.n_obs == 9


def test_wrong_section_spot_file_from_real_data(her2st_root):
    """Counts of C3 with the spot file of B2: only 3 of C3's 180 positions exist in B2."""
    counts = her2st_root / "data/ST-cnts/C3.tsv.gz"
    spots = her2st_root / "data/ST-spotfiles/B2_selection.tsv"
    _raises(["only 3 of 180 spot ids", counts, spots], read_legacy_st, counts, spots)


# ---- spots outside the image ------------------------------------------------------------------
def test_spots_outside_image(tmp_path):
    rows = _grid()
    rows[-1] = (3, 3, 950.0, 250.0)
    rows[-2] = (3, 2, 250.0, 1250.0)
    counts = write_counts(tmp_path / "S.tsv", ids=[f"{x}x{y}" for x, y, _, _ in rows])
    spots = write_spots(tmp_path / "S_selection.tsv", rows)
    image = write_image(tmp_path / "S.png", w=400, h=300)
    _raises(
        ["2 of 9 spot centres", spots, image, "400 x 300 px"], read_legacy_st, counts, spots, image
    )


# ---- bad counts ---------------------------------------------------------------------------------
def test_non_numeric_counts(tmp_path):
    counts = write_counts(tmp_path / "S.tsv", value=lambda i, j: "abc" if (i, j) == (4, 1) else 1)
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "non-numeric", "'abc'", "'G2'", "2x2"], read_legacy_st, counts, spots)


def test_negative_counts(tmp_path):
    counts = write_counts(tmp_path / "S.tsv", value=lambda i, j: -3 if (i, j) == (2, 0) else 1)
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "1 negative count", "-3", "'G1'"], read_legacy_st, counts, spots)


def test_counts_with_missing_cells(tmp_path):
    counts = write_counts(tmp_path / "S.tsv", value=lambda i, j: "" if (i, j) == (1, 1) else 1)
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "missing value"], read_legacy_st, counts, spots)


def test_duplicate_spot_ids(tmp_path):
    counts = write_counts(tmp_path / "S.tsv", ids=["1x1", "1x2", "1x1"])
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "more than once", "1x1"], read_legacy_st, counts, spots)


# ---- empty sections -----------------------------------------------------------------------------
def test_counts_without_spots(tmp_path):
    counts = tmp_path / "S.tsv"
    counts.write_text("\tG1\tG2\n")
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "no spots"], read_legacy_st, counts, spots)


def test_counts_without_genes(tmp_path):
    counts = tmp_path / "S.tsv"
    counts.write_text("spot\n1x1\n1x2\n")
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "no gene columns"], read_legacy_st, counts, spots)


def test_empty_counts_file(tmp_path):
    counts = tmp_path / "S.tsv"
    counts.write_text("")
    spots = write_spots(tmp_path / "S_selection.tsv")
    _raises([counts, "is empty"], read_legacy_st, counts, spots)


def test_no_selected_spots(tmp_path):
    counts = write_counts(tmp_path / "S.tsv")
    spots = write_spots(tmp_path / "S_selection.tsv")
    spots.write_text(spots.read_text().replace("\t1\n", "\t0\n"))
    _raises([spots, "selected"], read_legacy_st, counts, spots)


def test_spot_file_missing_columns(tmp_path):
    counts = write_counts(tmp_path / "S.tsv")
    spots = tmp_path / "S_selection.tsv"
    spots.write_text("x\ty\n1\t1\n")
    _raises([spots, "lacks column(s) ['pixel_x', 'pixel_y']"], read_legacy_st, counts, spots)


def test_spot_file_non_numeric(tmp_path):
    counts = write_counts(tmp_path / "S.tsv")
    spots = write_spots(tmp_path / "S_selection.tsv")
    spots.write_text(spots.read_text().replace("\t150.0\t", "\t150,5\t", 1))
    _raises([spots, "non-numeric", "'150,5'", "'pixel_y'"], read_legacy_st, counts, spots)


def test_spot_file_empty_cell(tmp_path):
    counts = write_counts(tmp_path / "S.tsv")
    spots = write_spots(tmp_path / "S_selection.tsv")
    spots.write_text(spots.read_text().replace("\t150.0\t", "\t\t", 1))
    _raises([spots, "missing", "'pixel_y'", "data line 2"], read_legacy_st, counts, spots)


# ---- truncated real files -----------------------------------------------------------------------
def test_truncated_gzip_of_real_counts(her2st_root, tmp_path):
    src = her2st_root / "data/ST-cnts/C3.tsv.gz"
    bad = tmp_path / "C3.tsv.gz"
    bad.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    spots = her2st_root / "data/ST-spotfiles/C3_selection.tsv"
    _raises([bad, "truncated"], read_legacy_st, bad, spots)


def test_truncated_text_of_real_counts(her2st_root, tmp_path):
    """The first 30 lines of C3 and half of the 31st, re-compressed: a cut-off last row."""
    with gzip.open(her2st_root / "data/ST-cnts/C3.tsv.gz", "rt") as fh:
        lines = [next(fh) for _ in range(32)]
    bad = tmp_path / "C3.tsv.gz"
    with gzip.open(bad, "wt") as fh:
        fh.writelines(lines[:31])
        fh.write(lines[31][: len(lines[31]) // 2].rsplit("\t", 1)[0] + "\n")
    spots = her2st_root / "data/ST-spotfiles/C3_selection.tsv"
    _raises([bad, "missing value", "truncated"], read_legacy_st, bad, spots)


# ---- unreadable images --------------------------------------------------------------------------
def test_garbage_image(good, tmp_path):
    counts, spots, _ = good
    img = tmp_path / "S.jpg"
    img.write_bytes(b"this is not a jpeg" * 100)
    _raises(["not a JPEG or PNG file", img], read_legacy_st, counts, spots, img)


def test_truncated_real_jpeg(her2st_root, tmp_path):
    src = next((her2st_root / "data/ST-imgs/C/C3").glob("*.jpg"))
    img = tmp_path / "C3_truncated.jpg"
    with open(src, "rb") as fh:
        img.write_bytes(fh.read(300_000))
    counts = tmp_path / "C3.tsv.gz"
    shutil.copy(her2st_root / "data/ST-cnts/C3.tsv.gz", counts)
    spots = her2st_root / "data/ST-spotfiles/C3_selection.tsv"
    _raises(["cannot read image", img, "truncated"], read_legacy_st, counts, spots, img)


def test_unrecognised_input(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    _raises([p, "not a recognised"], read, p)
