"""Helpers shared by the CLI verbs: the user-facing error, the input options and the checks
that run BEFORE any slow work (files present and readable, outputs writable, numbers in range,
the torch device available).

Every check raises :class:`CLIError` with a message that names the option or file and says
what was expected; ``cli.main`` prints it as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class CLIError(RuntimeError):
    """A user-facing error: printed as one line, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are :class:`CLIError` (one line, exit code 2)
    instead of a usage dump and ``SystemExit``; sub-parsers inherit the class."""

    def error(self, message: str):
        raise CLIError(f"{self.prog}: error: {message}")


PLATFORMS = ("visium", "legacy_st", "custom")


def short_reason(e: BaseException, limit: int = 160) -> str:
    """``TypeName: first sentence of the message`` on one line (library messages can be pages)."""
    text = " ".join(str(e).split())
    first = text.split(". ")[0]
    if len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def add_read_args(p: argparse.ArgumentParser) -> None:
    """How an input is read (``io.read`` keywords): legacy ST companions, a slide before
    sequencing, Visium HD bins."""
    g = p.add_argument_group("reading the input")
    g.add_argument("--spots", default=None, help="legacy ST: the spot file (any name) of the counts table")
    g.add_argument("--image", default=None, help="the original full-resolution H&E (legacy ST: any name; Space Ranger: "
                                                 "the microscope image the run was aligned to; read lazily)")
    g.add_argument("--platform", default=None, choices=PLATFORMS,
                   help="an H&E image before sequencing: the capture lattice (default visium)")
    g.add_argument("--um-per-px", type=float, default=None,
                   help="an H&E image: micrometres per full-resolution pixel (default: from the file's metadata)")
    g.add_argument("--layout", default=None, help="an H&E image: the platform's spot layout file (spots in tissue)")
    g.add_argument("--spot-um", type=float, default=None, help="an H&E image, --platform custom: spot diameter (um)")
    g.add_argument("--pitch-um", type=float, default=None, help="an H&E image, --platform custom: spot pitch (um)")
    g.add_argument("--bin-size", type=int, default=None, help="Visium HD: bin size in um (default 8)")


def add_input_args(p: argparse.ArgumentParser, *, extra_help: str = "") -> None:
    """The inputs of a verb: files/folders, the sections to read, the synthetic sample's size."""
    p.add_argument("inputs", nargs="*",
                   help="sections (files/folders napari_scr2st.io.read understands); none: the embedded synthetic sample"
                   + extra_help)
    p.add_argument("--sections", nargs="+", default=None,
                   help="sections to read (her2st folder, HEST folder or multi-section h5ad; the name of an image's section)")
    p.add_argument("--n-spots", type=int, default=2000, help="spots of the synthetic sample (default 2000)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the synthetic sample (default 0)")
    add_read_args(p)


# ------------------------------------------------------------------------------ checks
def check_file(path: str | os.PathLike, option: str, *, suffixes: Sequence[str] = (), what: str = "file",
               folder_ok: bool = False) -> Path:
    """``path`` exists, is a readable file (or folder with ``folder_ok``), ends with a suffix."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{option} {p}: no such {what}")
    if p.is_dir() and not folder_ok:
        raise CLIError(f"{option} {p} is a folder; expected a {what}")
    if not os.access(p, os.R_OK):
        raise CLIError(f"{option} {p}: permission denied (not readable)")
    if suffixes and p.is_file() and not p.name.lower().endswith(tuple(suffixes)):
        raise CLIError(f"{option} {p}: expected a {what} ending with {' or '.join(suffixes)}")
    return p


def check_output(path: str | os.PathLike, option: str, *, suffixes: Sequence[str] = (), folder: bool = False) -> Path:
    """``path`` can be written: the right suffix, not a folder (or not a file when ``folder``),
    in an existing writable folder (a folder output's parent must exist)."""
    p = Path(path)
    if suffixes and not p.name.lower().endswith(tuple(suffixes)):
        raise CLIError(f"{option} {p}: expected a file name ending with {' or '.join(suffixes)}")
    if folder:
        if p.exists() and not p.is_dir():
            raise CLIError(f"{option} {p} is a file; expected a folder")
        target = p if p.exists() else p.parent
    else:
        if p.is_dir():
            raise CLIError(f"{option} {p} is a folder; expected a file name")
        target = p.parent
    target = target if str(target) else Path(".")
    if not target.is_dir():
        raise CLIError(f"{option} {p}: folder {target} does not exist")
    if not os.access(target, os.W_OK | os.X_OK):
        raise CLIError(f"{option} {p}: permission denied (folder {target} is not writable)")
    if not folder and p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"{option} {p}: permission denied (the file is read-only)")
    return p


def check_range(value: float | None, option: str, *, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """``value`` (when given) lies in the interval; NaN never does."""
    if value is None:
        return
    ok = value == value
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        span = f"{left}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}{right}"
        raise CLIError(f"{option} must be in {span}, got {value:g}")


def check_budget(text: str, option: str = "--budget") -> None:
    """A count (>= 1), a fraction in (0, 1] or a percentage in (0, 100] (checked before the
    budget is resolved against any pool, so a percentage over 100 is named as such)."""
    import math

    from ..sampling.pool import resolve_budget

    s = str(text).strip()
    if s.endswith("%"):
        try:
            pct = float(s[:-1])
        except ValueError:
            raise CLIError(f"{option} {text!r}: expected a percentage like '15%', a count like '30' "
                           "or a fraction like '0.15'") from None
        if not (math.isfinite(pct) and 0 < pct <= 100):
            raise CLIError(f"{option} {text!r}: a percentage of the spots must be more than 0 % and at most 100 %")
    try:
        n = resolve_budget(s, 10**12)
    except ValueError as e:
        raise CLIError(f"{option}: {e}") from e
    if n < 1:
        raise CLIError(f"{option} {text!r}: select at least one spot")


def check_device(preference: str | None, option: str = "--device") -> None:
    """The torch device exists on this machine (``auto``, ``cpu``, ``cuda[:N]``, ``mps``, ``gpu``)."""
    if preference is None:
        return
    import re

    from ..device import pick_device

    if not re.fullmatch(r"auto|cpu|gpu|mps|cuda(:\d+)?", str(preference).lower()):
        raise CLIError(f"{option} {preference}: unknown device; expected auto, cpu, cuda, cuda:N, mps or gpu")
    try:
        dev = pick_device(preference)
    except RuntimeError as e:
        raise CLIError(f"{option} {preference}: {str(e).splitlines()[0]}") from e
    if dev.type == "cuda" and dev.index is not None:
        import torch

        if dev.index >= torch.cuda.device_count():
            raise CLIError(f"{option} {preference}: this machine has {torch.cuda.device_count()} CUDA device(s)")


# ------------------------------------------------------------------------------ inputs
_IMAGE_OPTIONS = ("platform", "um_per_px", "layout", "spot_um", "pitch_um")
_READS = {"spots": "a legacy ST counts table", "image": "a legacy ST counts table or a Space Ranger folder",
          "bin_size_um": "a Visium HD output", **{k: "an H&E image before sequencing" for k in _IMAGE_OPTIONS}}
_OPTION_NAMES = {"spots": "--spots", "image": "--image", "platform": "--platform", "um_per_px": "--um-per-px",
                 "layout": "--layout", "spot_um": "--spot-um", "pitch_um": "--pitch-um", "bin_size_um": "--bin-size"}


def check_inputs(args: argparse.Namespace) -> None:
    """The inputs and the reading options of ``args``: files present, numbers positive, and the
    options given only for inputs they apply to (checked before anything is read)."""
    check_range(getattr(args, "n_spots", None), "--n-spots", lo=20)
    for path in args.inputs:
        check_file(path, "input", what="file or folder", folder_ok=True)
    for opt in ("spots", "image", "layout"):
        if getattr(args, opt, None):
            check_file(getattr(args, opt), _OPTION_NAMES[opt])
    for opt in ("um_per_px", "spot_um", "pitch_um", "bin_size"):
        check_range(getattr(args, opt, None), f"--{opt.replace('_', '-')}", lo=0, lo_open=True)
    kw = read_kwargs(args)
    if not args.inputs:
        if kw:
            raise CLIError(f"{', '.join(_OPTION_NAMES[k] for k in kw)}: these read an input file; none was given "
                           "(the embedded synthetic sample needs none)")
        if getattr(args, "sections", None):
            raise CLIError("--sections: names sections of an input file or folder; none was given")
        return
    from .. import io

    for path in args.inputs:
        fmt = io.sniff(path)
        allowed = {"image": _IMAGE_OPTIONS, "legacy_st": ("spots", "image"),
                   "visium": ("bin_size_um", "image")}.get(fmt, ())
        wrong = [k for k in kw if k not in allowed]
        if wrong and fmt is not None:
            raise CLIError(f"{_OPTION_NAMES[wrong[0]]} is for {_READS[wrong[0]]}; {path} is a {fmt} input")
    if kw.get("platform") == "custom" and not (kw.get("spot_um") and kw.get("pitch_um")) and not kw.get("layout"):
        raise CLIError("--platform custom needs --spot-um and --pitch-um (or a --layout file)")


def read_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``io.read`` keywords the reading options of ``args`` give."""
    kw = {k: getattr(args, k, None) for k in ("spots", "image", "platform", "um_per_px", "layout", "spot_um", "pitch_um")}
    kw["bin_size_um"] = getattr(args, "bin_size", None)
    return {k: v for k, v in kw.items() if v is not None}


def _available_sections(path: Path) -> list[str] | None:
    from .. import io

    fmt = io.sniff(path)
    if fmt == "her2st":
        return io.list_her2st_sections(path)
    if fmt == "hest":
        return io.list_hest_samples(path)
    return None


def load_input(path: str | None, *, n_spots: int = 2000, seed: int = 0, section: Sequence[str] | str | None = None,
               read_kw: dict[str, Any] | None = None, option: str = "--sections"):
    """Read ``path`` with :func:`napari_scr2st.io.read`, or make the embedded sample if None.

    ``section``: the sections to read (a her2st/HEST folder or multi-section ``.h5ad``; unknown
    names are an error listing the available ones) or the name of an image's section.
    ``read_kw``: further ``io.read`` keywords; ``option`` names ``section`` in messages. A file that cannot be read (corrupt, truncated,
    unreadable) is a :class:`CLIError` naming it. Returns ``(sections: dict[str, AnnData],
    reference: AnnData | None)``.
    """
    if path is None:
        from ..data import make_sample

        s = make_sample(n_spots=n_spots, seed=seed)
        return {s.section.obs["section"].iloc[0]: s.section}, s.reference
    from .. import io
    from ..data.model import SectionError

    p = Path(path)
    kw = dict(read_kw or {})
    if section:
        names = [section] if isinstance(section, str) else list(section)
        avail = _available_sections(p)
        if avail is not None:
            unknown = [s for s in names if s not in avail]
            if unknown:
                raise CLIError(f"{option}: {p} has no section(s) {', '.join(unknown)}; available: {', '.join(avail)}")
        fmt = io.sniff(p)
        if fmt in ("image", "visium", "spatialdata", "legacy_st"):
            if len(names) != 1:
                raise CLIError(f"{option}: {p} is one section; give one name, got {', '.join(names)}")
            kw["section"] = names[0]
        elif fmt == "h5ad":
            kw["section"] = names[0] if len(names) == 1 else None
        else:
            kw["section"] = names[0] if len(names) == 1 else names
    try:
        out = io.read(p, **kw)
    except (SectionError, CLIError, FileNotFoundError, PermissionError):
        raise
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise CLIError(f"cannot read {p}: {short_reason(e)} (a corrupt or truncated file?)") from e
    if isinstance(out, dict):
        if section:
            missing = [s for s in names if s not in out]
            if missing:
                raise CLIError(f"{option}: {p} has no section(s) {', '.join(missing)}; available: {', '.join(out)}")
            out = {s: out[s] for s in names}
        return out, None
    return {str(out.obs["section"].iloc[0]): out}, None


def load_measured_sections(paths: Sequence[str], *, sections=None, read_kw: dict[str, Any] | None = None,
                           n_spots: int = 2000, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """``({section: AnnData}, embedded reference or None)`` of fully measured inputs (the
    embedded synthetic sample when ``paths`` is empty); a section without counts is an error."""
    from ..session import has_counts

    secs: dict[str, Any] = {}
    ref = None
    for path in list(paths) or [None]:
        got, r = load_input(path, n_spots=n_spots, seed=seed, section=sections if path is not None else None,
                            read_kw=read_kw)
        ref = ref if ref is not None else r
        secs.update(got)
    empty = [n for n, a in secs.items() if not has_counts(a)]
    if empty:
        raise CLIError(f"section(s) {', '.join(empty)} have no counts: a benchmark needs fully measured sections")
    return secs, ref


def load_sections(args: argparse.Namespace):
    """``(AnnData of all input sections, embedded reference or None)``; several sections are
    joined with :func:`~napari_scr2st.data.model.concat_sections`."""
    from ..data.model import concat_sections

    coll: dict[str, Any] = {}
    ref = None
    kw = read_kwargs(args)
    for path in list(args.inputs) or [None]:
        sec = args.sections if path is not None else None
        got, r = load_input(path, n_spots=args.n_spots, seed=args.sample_seed, section=sec, read_kw=kw)
        ref = ref if ref is not None else r
        for name, a in got.items():
            if name in coll:
                raise CLIError(f"section {name!r} given twice")
            coll[name] = a
    adata = next(iter(coll.values())) if len(coll) == 1 else concat_sections(coll)
    return adata, ref


def check_counts(adata, what: str) -> None:
    """The section's counts are finite and non-negative (the first bad gene is named)."""
    import numpy as np

    X = adata.X
    data = X.data if hasattr(X, "data") and hasattr(X, "nnz") else np.asarray(X).ravel()
    if data.size == 0 or (np.isfinite(data).all() and (data >= 0).all()):
        return
    dense = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    bad = ~np.isfinite(dense) | (dense < 0)
    j = int(np.flatnonzero(bad.any(axis=0))[0])
    i = int(np.flatnonzero(bad[:, j])[0])
    raise CLIError(f"{what}: gene {adata.var_names[j]} of spot {adata.obs_names[i]} holds {dense[i, j]:g}; "
                   "counts must be finite and non-negative")


def check_embedding(adata, key: str, what: str) -> None:
    """``obsm[key]`` is finite and varies across spots (a zeroed or broken cache does not)."""
    import numpy as np

    E = np.asarray(adata.obsm[key])
    if E.ndim != 2 or E.shape[0] != adata.n_obs or E.shape[1] == 0:
        raise CLIError(f"{what}: obsm['{key}'] has shape {E.shape}; expected ({adata.n_obs}, features)")
    if not np.isfinite(E).all():
        raise CLIError(f"{what}: obsm['{key}'] holds NaN or infinite values; recompute the embedding")
    if adata.n_obs > 1 and float(np.ptp(E, axis=0).max()) == 0.0:
        from ..features import default_cache_dir

        raise CLIError(f"{what}: obsm['{key}'] is the same for every spot (all {E.flat[0]:g}): a broken embedding "
                       f"or embedding cache; delete the section's files in {default_cache_dir()} to recompute it")
