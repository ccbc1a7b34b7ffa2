"""``scr2st info PATH``: a summary of any supported input; for a single-cell reference, its
candidate cell-type columns (the best first: the one ``--celltype-key`` defaults to)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    CLIError,
    add_read_args,
    check_file,
    check_inputs,
    load_input,
    read_kwargs,
    short_reason,
)


def register(sub) -> None:
    p = sub.add_parser("info", help="print a summary of a supported input (ST section, folder, h5ad, reference, H&E image)")
    p.add_argument("path", help="legacy-ST counts file or folder, Space Ranger outs/ folder, .h5ad, her2st root or H&E image")
    p.add_argument("--section", help="the section to summarise when PATH holds several (a her2st-style root "
                                     "folder, a HEST folder or a multi-section .h5ad, e.g. C3)")
    add_read_args(p)
    p.set_defaults(func=run)


def _reference_summary(path: Path, section: str | None = None) -> bool:
    """Print a single-cell reference's summary; False when ``path`` is a section ``.h5ad``.

    ``section`` (``--section``) given for a reference is an error: a reference has no sections."""
    import anndata as ad

    from ..reference import list_celltype_columns

    try:
        a = ad.read_h5ad(path, backed="r")
    except Exception as e:  # h5py/anndata raise many types for a corrupt or truncated file
        raise CLIError(f"{path}: cannot read it as .h5ad ({short_reason(e)})") from e
    try:
        if "spatial" in a.obsm:
            return False
        if section:
            raise CLIError(f"--section {section}: {path} is a single-cell reference (no obsm['spatial']), "
                           "not a section file; --section names a section of a multi-section input")
        cands = list_celltype_columns(a.obs)
        print(f"{path}: single-cell reference (no obsm['spatial'])")
        print(f"{a.n_obs} cells x {a.n_vars} genes")
        if not cands:
            print("no obs column looks like cell types (categorical or text with a few values); "
                  f"obs columns: {', '.join(map(str, a.obs.columns)) or '(none)'}")
            return True
        print(f"candidate cell-type columns (best first; --celltype-key defaults to {cands[0]}): {', '.join(cands)}")
        for col in cands:
            vc = a.obs[col].astype(str).value_counts()
            shown = ", ".join(f"{k} ({v})" for k, v in list(vc.items())[:30])
            print(f"  {col}: {len(vc)} types: {shown}{', ...' if len(vc) > 30 else ''}")
        return True
    finally:
        if a.isbacked:
            a.file.close()


def run(args: argparse.Namespace) -> int:
    from .. import io
    from ..data.model import concat_sections, summarize

    path = check_file(args.path, "PATH", what="file or folder", folder_ok=True)
    args.inputs = [str(path)]
    check_inputs(args)
    if path.suffix == ".h5ad" and not read_kwargs(args) and _reference_summary(path, args.section):
        return 0
    got, _ = load_input(str(path), section=args.section, read_kw=read_kwargs(args), option="--section")
    out = next(iter(got.values())) if len(got) == 1 else concat_sections(got)
    print(f"{path}: {io.sniff(path) or 'section'}")
    print(summarize(out))
    return 0
