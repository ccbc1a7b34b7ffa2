"""Helpers shared by the CLI verbs."""

from __future__ import annotations

import argparse


class CLIError(RuntimeError):
    """A user-facing error: printed as one line, exit code 2."""


def add_sample_args(p: argparse.ArgumentParser) -> None:
    """Options that size the embedded synthetic sample."""
    p.add_argument("--n-spots", type=int, default=2000, help="spots of the synthetic sample (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def load_input(path: str | None, *, n_spots: int = 2000, seed: int = 0, section: str | None = None):
    """Read ``path`` with :func:`napari_scr2st.io.read`, or make the embedded sample if None.

    Returns ``(sections: dict[str, AnnData], reference: AnnData | None)``.
    """
    if path is None:
        from ..data import make_sample

        s = make_sample(n_spots=n_spots, seed=seed)
        return {s.section.obs["section"].iloc[0]: s.section}, s.reference
    from .. import io

    kw = {"section": section} if section else {}
    out = io.read(path, **kw)
    if isinstance(out, dict):
        return out, None
    return {str(out.obs["section"].iloc[0]): out}, None
