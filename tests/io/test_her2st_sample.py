"""``load_her2st_section``: local root, environment variable, cache, and the no-network error."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import pytest

from napari_scr2st import datasets
from napari_scr2st.data.model import SectionError, validate_section
from napari_scr2st.datasets import ENV_VAR, Her2stUnavailableError, load_her2st_section


@pytest.fixture
def no_home(tmp_path, monkeypatch):
    """An empty HOME (so no cache) and no environment variable; the network must not be used."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_VAR, raising=False)

    def no_network(url, dest, timeout):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(datasets, "_fetch", no_network)
    return tmp_path / "home"


def test_load_from_root(her2st_root, no_home):
    a = load_her2st_section("C3", root=her2st_root)
    validate_section(a)
    assert a.n_obs == 180 and (a.obs["patient"] == "C").all()
    assert "lowres" in a.uns["spatial"]["C3"]["images"]
    assert 120 <= a.uns["spatial"]["C3"]["scalefactors"]["spot_diameter_fullres"] <= 170


def test_load_via_environment_variable(her2st_root, no_home, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(her2st_root))
    a = load_her2st_section("A1")
    assert a.n_obs == 346 and list(a.uns["spatial"]) == ["A1"]
    # a root without the section falls through to the environment variable
    b = load_her2st_section("A1", root=no_home, load_image=False)
    assert b.n_obs == 346


def test_no_network_gives_clear_error(no_home):
    with pytest.raises(Her2stUnavailableError) as ei:
        load_her2st_section("C3")
    msg = str(ei.value)
    assert "'C3'" in msg and ENV_VAR in msg and "github.com/almaan/her2st" in msg
    assert "network is unreachable" in msg
    assert str(no_home / ".cache" / "napari-scr2st" / "her2st") in msg
    assert isinstance(ei.value, SectionError)
    assert not any(p.is_file() for p in no_home.rglob("*"))  # nothing half-downloaded
    with pytest.raises(Her2stUnavailableError, match=ENV_VAR):
        load_her2st_section("C3", download=False)


def test_download_fills_the_cache(her2st_root, no_home, monkeypatch):
    """A simulated download (files copied from the local copy) lands in the cache and is read."""
    fetched = []

    def fake_fetch(url, dest: Path, timeout):
        assert url.startswith(datasets.HER2ST_RAW_URL + "/")
        rel = url[len(datasets.HER2ST_RAW_URL) + 1 :]
        fetched.append(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(her2st_root / rel, dest)

    monkeypatch.setattr(datasets, "_fetch", fake_fetch)
    a = load_her2st_section("B4", load_image=False)
    assert a.n_obs == 283
    assert fetched == [
        "data/ST-cnts/B4.tsv.gz",
        "data/ST-spotfiles/B4_selection.tsv",
        "data/ST-imgs/B/B4/BT10737_D2_HE.jpg",
    ]
    cache = no_home / ".cache" / "napari-scr2st" / "her2st"
    assert (cache / "data/ST-imgs/B/B4/BT10737_D2_HE.jpg").is_file()
    fetched.clear()
    load_her2st_section("B4", load_image=False)  # now found in the cache: no second download
    assert fetched == []
