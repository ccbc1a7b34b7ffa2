"""``sniff``, ``read`` and ``read_collection`` across formats."""

from __future__ import annotations

import shutil

import pytest
from _spaceranger import write_spaceranger_outs

from napari_scr2st.data.model import SectionError, validate_section
from napari_scr2st.io import FORMATS, read, read_collection, sniff, write_h5ad_section


def test_sniff(her2st_root, spaceranger, tmp_path):
    assert sniff(her2st_root) == "her2st"
    assert sniff(her2st_root / "data/ST-cnts/C3.tsv.gz") == "legacy_st"
    assert (
        sniff(her2st_root / "data/ST-spotfiles/C3_selection.tsv") is None
    )  # a spot file is not a section
    assert sniff(her2st_root / "data") is None
    assert sniff(spaceranger["outs"]) == "visium"
    assert sniff(spaceranger["outs"].parent) == "visium"
    assert sniff(spaceranger["outs"] / "spatial" / "tissue_hires_image.png") is None
    (tmp_path / "x.h5ad").write_bytes(b"")
    assert sniff(tmp_path / "x.h5ad") == "h5ad"
    (tmp_path / "n.tsv").write_text("a\tb\n1\t2\n")
    assert sniff(tmp_path / "n.tsv") is None
    assert sniff(tmp_path / "missing.tsv.gz") is None
    assert sniff(tmp_path) == "folder"  # it holds x.h5ad and the Space Ranger run sample1/
    (tmp_path / "empty").mkdir()
    assert sniff(tmp_path / "empty") is None
    assert set(FORMATS) == {"legacy_st", "her2st", "visium", "h5ad", "spatialdata", "hest", "folder", "image"}


def test_read_counts_file_in_her2st_layout(her2st_root):
    a = read(her2st_root / "data/ST-cnts/C5.tsv.gz", load_image=False)
    validate_section(a)
    assert a.n_obs == 181 and (a.obs["patient"] == "C").all()
    assert "stereoscope_major" in a.obsm  # read through read_her2st: annotations included


def test_read_counts_file_with_companions(her2st_root, tmp_path):
    shutil.copy(her2st_root / "data/ST-cnts/C6.tsv.gz", tmp_path / "C6.tsv.gz")
    shutil.copy(her2st_root / "data/ST-spotfiles/C6_selection.tsv", tmp_path / "C6_selection.tsv")
    a = read(tmp_path / "C6.tsv.gz")
    assert a.n_obs == 178 and list(a.uns["spatial"]) == ["C6"]
    assert a.uns["spatial"]["C6"]["images"] == {}
    (tmp_path / "C6_selection.tsv").unlink()
    with pytest.raises(
        SectionError, match=r"no spot file found for counts file .*C6.tsv.gz.*C6_selection.tsv"
    ):
        read(tmp_path / "C6.tsv.gz")


def test_read_her2st_root(her2st_root):
    a = read(her2st_root, section="A1")
    assert a.n_obs == 346 and list(a.uns["spatial"]) == ["A1"]
    coll = read(her2st_root, section=["B1"], annotations=False)
    assert list(coll) == ["B1"] and coll["B1"].n_obs > 0


def test_read_visium_and_h5ad(spaceranger, tmp_path):
    a = read(spaceranger["outs"].parent)
    assert list(a.uns["spatial"]) == ["lib1"]
    p = write_h5ad_section(a, tmp_path / "lib1.h5ad")
    b = read(p)
    assert b.n_obs == a.n_obs and list(b.uns["spatial"]) == ["lib1"]


def test_read_collection_of_a_folder(tmp_path):
    write_spaceranger_outs(tmp_path / "runs" / "r1", library="L1")
    write_spaceranger_outs(tmp_path / "runs" / "r2", library="L2")
    (tmp_path / "runs" / "readme.txt").write_text("ignored")
    coll = read_collection(tmp_path / "runs")
    assert list(coll) == ["L1", "L2"]
    assert list(read_collection(tmp_path / "runs", sections=["L2"])) == ["L2"]
    with pytest.raises(SectionError, match=r"section\(s\) \['L3'\] not found"):
        read_collection(tmp_path / "runs", sections=["L3"])
    write_spaceranger_outs(tmp_path / "dup" / "a", library="X")
    write_spaceranger_outs(tmp_path / "dup" / "b", library="X")
    with pytest.raises(SectionError, match="occurs twice"):
        read_collection(tmp_path / "dup")
    (tmp_path / "none").mkdir()
    with pytest.raises(SectionError, match="no readable sections"):
        read_collection(tmp_path / "none")
