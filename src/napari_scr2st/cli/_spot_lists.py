"""Spot lists of ``--lock`` / ``--exclude``: parsed before any work, resolved on the pool.

A value is one of:

- comma-separated ids: ``10x12,11x13``; an id may name its section, ``C3:10x12``;
- ``@FILE``, or the path of an existing file:
  - a file without commas or tabs: one id (or ``section:id``) per line; blank lines and lines
    starting with ``#`` are skipped, and so is a first line ``spot_id``. Nothing is sniffed, so
    the ``x`` of ``10x12`` is never taken for a delimiter;
  - the tool's own selection table (``scr2st select --out``: ``.csv``/``.tsv`` with the columns
    of :data:`napari_scr2st.io.export.SELECTION_COLUMNS`), read with
    :func:`~napari_scr2st.io.export.read_selection_csv`;
  - a CSV/TSV (tab-separated when the first line has a tab) with a ``spot_id`` (or ``spot``,
    ``id``, ``barcode``) column and an optional ``section`` column, or without a header:
    ``spot_id[,section]`` per line.

Long lists belong in files: a command line has a length limit.
"""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

from ._common import CLIError

__all__ = ["SpotList", "parse_spot_list"]

_ID_COLUMNS = ("spot_id", "spot", "id", "barcode")


@dataclass
class SpotList:
    """Parsed ids with their sections (``None``: not given), and where they came from."""

    ids: list[str]
    sections: list[str | None]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, pool, option: str):
        """Pool indices of the spots; an id prefixed ``section:`` uses that section when the
        pool has a section of that name. Unknown or ambiguous ids: a :class:`CLIError`."""
        import numpy as np

        names = set(map(str, pool.section_names))
        ids, secs = [], []
        for i, s in zip(self.ids, self.sections, strict=True):
            if s is None and ":" in i and i.split(":", 1)[0] in names:
                s, i = i.split(":", 1)
            ids.append(i)
            secs.append(s)
        ids_a = np.asarray(ids, dtype=object).astype(str)
        has = np.array([s is not None for s in secs], dtype=bool)
        out = np.empty(len(ids), dtype=np.int64)
        try:
            if has.any():
                out[has] = pool.lookup(ids_a[has], [s for s in secs if s is not None], what=f"{option} {self.source}")
            if (~has).any():
                out[~has] = pool.lookup(ids_a[~has], what=f"{option} {self.source}")
        except ValueError as e:
            raise CLIError(f"{e} (ids may be written section:id)") from e
        return out


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except OSError:  # a name too long for the file system
        return False


def _looks_like_path(text: str) -> bool:
    return "," not in text and (os.sep in text or text.lower().endswith((".csv", ".tsv", ".txt", ".gz")))


def parse_spot_list(text: str | None, option: str) -> SpotList:
    """Parse the value of ``option`` (see the module docstring); ``None`` or empty: no spots."""
    if not text:
        return SpotList([], [], option)
    text = str(text)
    if text.startswith("@"):
        path = Path(text[1:])
        if not _is_file(text[1:]):
            raise CLIError(f"{option} {text}: file {path} not found")
        return _read_file(path, option)
    if _is_file(text):
        return _read_file(Path(text), option)
    if _looks_like_path(text):
        raise CLIError(f"{option} {text}: file not found (give ids separated by commas, or an existing file)")
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise CLIError(f"{option} {text!r}: no spot ids")
    return SpotList(ids, [None] * len(ids), "(command line)")


def _read_file(path: Path, option: str) -> SpotList:
    import pandas as pd

    try:
        data = path.read_bytes()
        raw = (gzip.decompress(data) if path.name.lower().endswith(".gz") else data).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise CLIError(f"{option} {path}: cannot read the file ({type(e).__name__}: {e})") from e
    lines = [ln for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise CLIError(f"{option} {path}: no spot ids in the file")
    first = lines[0]
    if "\t" not in first and "," not in first:
        ids = [ln.strip() for ln in lines]
        if ids[0].lower() in _ID_COLUMNS:
            ids = ids[1:]
        if not ids:
            raise CLIError(f"{option} {path}: no spot ids in the file")
        return SpotList(ids, [None] * len(ids), str(path))
    sep = "\t" if "\t" in first else ","
    header = [c.strip().lower() for c in first.split(sep)]
    from ..io.export import SELECTION_COLUMNS, read_selection_csv

    if set(SELECTION_COLUMNS) <= set(header) and path.suffix.lower() in (".csv", ".tsv"):
        try:
            df = read_selection_csv(path)
        except ValueError as e:
            raise CLIError(f"{option} {path}: {e}") from e
        return SpotList(df["spot_id"].astype(str).tolist(), df["section"].astype(str).tolist(), str(path))
    id_col = next((c for c in _ID_COLUMNS if c in header), None)
    try:
        df = pd.read_csv(io.StringIO("\n".join(lines)), sep=sep, dtype=str, keep_default_na=False,
                         header=0 if id_col else None)
    except (ValueError, pd.errors.ParserError) as e:
        raise CLIError(f"{option} {path}: not a spot_id[,section] table ({e})") from e
    if id_col:
        df.columns = [str(c).strip().lower() for c in df.columns]
        ids = df[id_col].str.strip().tolist()
        secs = df["section"].str.strip().tolist() if "section" in df.columns else [None] * len(ids)
    else:
        ids = df.iloc[:, 0].str.strip().tolist()
        secs = df.iloc[:, 1].str.strip().tolist() if df.shape[1] > 1 else [None] * len(ids)
    secs = [s or None for s in secs]
    if not ids:
        raise CLIError(f"{option} {path}: no spot ids in the file")
    if any(not i for i in ids):
        raise CLIError(f"{option} {path}: a row without a spot id")
    return SpotList(ids, secs, str(path))
