"""``scr2st info PATH``: a summary of any supported input."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("info", help="print a summary of a supported input (ST section, folder, h5ad, reference)")
    p.add_argument("path", help="legacy-ST counts file or folder, Space Ranger outs/ folder, .h5ad, or her2st root")
    p.add_argument("--section", help="section id when PATH is a her2st-style root folder (e.g. C3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.model import summarize

    path = Path(args.path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".h5ad":
        import anndata as ad

        a = ad.read_h5ad(path, backed="r")
        if "spatial" not in a.obsm:
            # a single-cell reference
            print(f"{path}: single-cell reference (no obsm['spatial'])")
            print(f"{a.n_obs} cells x {a.n_vars} genes")
            for col in a.obs.columns:
                if a.obs[col].dtype.name == "category" and a.obs[col].nunique() <= 100:
                    vc = a.obs[col].value_counts()
                    print(f"  {col}: {len(vc)} types: " + ", ".join(f"{k} ({v})" for k, v in vc.items()))
            return 0
    from .. import io

    kw = {"section": args.section} if args.section else {}
    out = io.read(path, **kw)
    if isinstance(out, dict):
        from ..data.model import concat_sections

        out = concat_sections(out)
    print(f"{path}: {io.sniff(path) or 'section'}")
    print(summarize(out))
    return 0
