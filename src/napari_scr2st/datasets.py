"""Public data sets used as samples: the real her2st sample (Andersson et al., Nat Commun 2021).

This module locates a data set on disk (downloading it where a network exists) and reads it
with :mod:`napari_scr2st.io`.

:func:`load_her2st_section` returns one section of the HER2-positive breast cancer legacy-ST
data set as a section AnnData. It looks for a local copy of the authors' repository layout
(``data/ST-cnts``, ``data/ST-spotfiles``, ``data/ST-imgs``) in, in this order:

1. ``root`` (the argument),
2. the folder named by the environment variable ``SCR2ST_HER2ST_ROOT``,
3. ``~/.cache/napari-scr2st/her2st``.

If none has the section, the three files of the section (counts, spot file, image where one
exists) are downloaded from the public GitHub repository almaan/her2st into the cache folder.
Without network access that fails with a :class:`Her2stUnavailableError` that tells the user
to download the repository and set ``SCR2ST_HER2ST_ROOT``.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_path
from .data.model import SectionError
from .io.legacy_st import read_her2st

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = [
    "ENV_VAR",
    "HER2ST_RAW_URL",
    "HER2ST_IMAGES",
    "Her2stUnavailableError",
    "default_cache_dir",
    "find_her2st_root",
    "download_her2st_section",
    "load_her2st_section",
]

ENV_VAR = "SCR2ST_HER2ST_ROOT"
HER2ST_REPO_URL = "https://github.com/almaan/her2st"
HER2ST_RAW_URL = "https://raw.githubusercontent.com/almaan/her2st/master"
#: the six sections with an H&E image in the repository, and the image's file name
HER2ST_IMAGES = {
    "B4": "BT10737_D2_HE.jpg",
    "C2": "5714_HE_BT_C2.jpg",
    "C3": "5714_HE_BT_D1.jpg",
    "C4": "5714_HE_BT_D2.jpg",
    "C5": "5714_HE_BT_E1.jpg",
    "C6": "5714_HE_BT_E2.jpg",
}


class Her2stUnavailableError(SectionError):
    """The her2st section is neither on disk nor downloadable."""


def default_cache_dir() -> Path:
    """``~/.cache/napari-scr2st/her2st``."""
    return Path.home() / ".cache" / "napari-scr2st" / "her2st"


def _section_files(section: str) -> list[str]:
    """Repository-relative paths of the files of ``section`` (image only where one exists)."""
    files = [f"data/ST-cnts/{section}.tsv.gz", f"data/ST-spotfiles/{section}_selection.tsv"]
    if section in HER2ST_IMAGES:
        files.append(f"data/ST-imgs/{section[:1]}/{section}/{HER2ST_IMAGES[section]}")
    return files


def _has_section(root: Path, section: str) -> bool:
    return (root / "data" / "ST-cnts" / f"{section}.tsv.gz").is_file() and (
        root / "data" / "ST-spotfiles" / f"{section}_selection.tsv"
    ).is_file()


def _candidates(root: str | os.PathLike | None) -> list[Path]:
    out = []
    if root is not None:
        out.append(Path(root).expanduser())
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        out.append(Path(env).expanduser())
    out.append(default_cache_dir())
    return out


def find_her2st_root(section: str = "C3", root: str | os.PathLike | None = None) -> Path | None:
    """The first of ``root``, ``$SCR2ST_HER2ST_ROOT``, the cache folder that has ``section``."""
    for cand in _candidates(root):
        if _has_section(cand, section):
            return cand
    return None


def _fetch(url: str, dest: Path, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically (nothing is left behind on failure)."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)


def download_her2st_section(
    section: str, dest: str | os.PathLike | None = None, *, timeout: float = 30.0
) -> Path:
    """Download the counts, spot file and (if any) image of ``section`` into ``dest``.

    ``dest`` defaults to :func:`default_cache_dir`; files already there are not fetched again.
    Returns ``dest``. Network errors propagate (``urllib.error.URLError``, ``OSError``).
    """
    d = Path(dest) if dest is not None else default_cache_dir()
    for rel in _section_files(section):
        target = d / rel
        if target.is_file():
            continue
        _fetch(f"{HER2ST_RAW_URL}/{rel}", target, timeout)
    return d


def load_her2st_section(
    section: str = "C3",
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    load_image: bool = True,
    timeout: float = 30.0,
) -> AnnData:
    """Load her2st section ``section`` (default ``"C3"``, patient C, with image) as a section.

    See the module docstring for where it is looked for. ``download=False`` never touches the
    network. Raises :class:`Her2stUnavailableError` (a ``SectionError``) with instructions when
    the data cannot be found or fetched.
    """
    section = str(section).strip()
    found = find_her2st_root(section, root)
    if found is None:
        looked = ", ".join(str(c) for c in _candidates(root))
        if not download:
            raise Her2stUnavailableError(
                f"her2st section {section!r} not found (looked in: {looked}). Download the "
                f"repository {HER2ST_REPO_URL} and set the environment variable {ENV_VAR} to its "
                "folder (the one that contains data/ST-cnts)."
            )
        try:
            found = download_her2st_section(section, default_cache_dir(), timeout=timeout)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise Her2stUnavailableError(
                f"her2st section {section!r} not found locally (looked in: {looked}) and "
                f"downloading it from {HER2ST_RAW_URL} failed ({e}). Download the repository "
                f"{HER2ST_REPO_URL} (e.g. git clone) and set the environment variable {ENV_VAR} "
                "to its folder (the one that contains data/ST-cnts)."
            ) from e
    return read_her2st(found, section, load_image=load_image)
