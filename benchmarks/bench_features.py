"""Throughput of histology features: crops/second for crop extraction alone and for embedding
(crops + encoder), on the synthetic sample and on one real her2st section with an image.

Usage::

    python benchmarks/bench_features.py                      # CPU, synthetic 1000 spots + her2st C3
    python benchmarks/bench_features.py --device cuda --batch-size 128
    python benchmarks/bench_features.py --her2st-root ../shared/data/her2st --section C4

The embedding cache is disabled (``use_cache=False``), so every run measures real work. The
encoder is loaded once, outside the timings, and its load time is printed. For her2st, decoding
the JPEG (about 9,300 x 9,900 px) is timed separately: it happens once per process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HER2ST = ROOT / ".." / "shared" / "data" / "her2st"


def _read_her2st(root: Path, section: str):
    """The her2st section, read with the package's reader (image kept lazily)."""
    from napari_scr2st.io.legacy_st import read_her2st

    return read_her2st(root, section, annotations=False)


def _time_crops(adata, *, batch_size: int, out_size: int) -> tuple[float, int]:
    from napari_scr2st.features.crops import iter_crops

    t = time.perf_counter()
    n = 0
    for idx, crops in iter_crops(adata, batch_size=batch_size, out_size=out_size):
        n += len(idx)
        assert crops.shape[1:] == (out_size, out_size, 3)
    return time.perf_counter() - t, n


def _time_embed(adata, encoder, *, batch_size: int, out_size: int) -> tuple[float, int]:
    from napari_scr2st.features import compute_vision_embeddings

    t = time.perf_counter()
    X = compute_vision_embeddings(
        adata, encoder, batch_size=batch_size, out_size=out_size, use_cache=False, key_added=None
    )
    dt = time.perf_counter() - t
    assert X.shape == (adata.n_obs, encoder.num_features) and np.isfinite(X).all()
    return dt, adata.n_obs


def _report(label: str, adata, encoder, args) -> None:
    from napari_scr2st.features.crops import resolve_crop_px

    crop = resolve_crop_px(adata)
    dt, n = _time_crops(adata, batch_size=args.batch_size, out_size=args.out_size)
    print(
        f"{label}: {n} spots, crop {crop} px -> {args.out_size} px | crops only: "
        f"{n / dt:8.1f} crops/s ({dt:.2f} s)"
    )
    dt, n = _time_embed(adata, encoder, batch_size=args.batch_size, out_size=args.out_size)
    print(
        f"{label}: {n} spots, crop {crop} px -> {args.out_size} px | crops + {encoder.name}: "
        f"{n / dt:8.1f} crops/s ({dt:.2f} s)"
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--n-spots", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out-size", type=int, default=224)
    p.add_argument("--her2st-root", type=Path, default=DEFAULT_HER2ST)
    p.add_argument("--section", default="C3")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_scr2st.data.synthetic import make_sample
    from napari_scr2st.features.encoders import load_encoder

    t = time.perf_counter()
    enc = load_encoder(args.model, device=args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; encoder: {enc!r}")
    print(f"encoder load: {time.perf_counter() - t:.2f} s")
    # warm-up (first forward pass allocates)
    enc.embed(np.zeros((2, args.out_size, args.out_size, 3), np.uint8))

    t = time.perf_counter()
    syn = make_sample(n_spots=args.n_spots, seed=0).section
    print(f"synthetic sample generated in {time.perf_counter() - t:.2f} s")
    _report(f"synthetic (n_spots={args.n_spots})", syn, enc, args)

    root = args.her2st_root.resolve()
    if not root.is_dir():
        print(f"her2st data not found at {root}: skipped")
        return
    t = time.perf_counter()
    sec = _read_her2st(root, args.section)
    print(
        f"her2st {args.section}: read in {time.perf_counter() - t:.2f} s (the reader decodes the JPEG)"
    )
    from napari_scr2st.data.model import get_fullres_image

    t = time.perf_counter()
    img = get_fullres_image(sec)
    print(
        f"her2st {args.section}: full-res image {img.shape} ready in {time.perf_counter() - t:.2f} s "
        "(cached per process after the first read)"
    )
    _report(f"her2st {args.section}", sec, enc, args)


if __name__ == "__main__":
    main()
