"""Memory and time of the lazy whole-slide reader on a 60,000 x 60,000 RGB pyramidal TIFF.

Usage::

    python benchmarks/bench_wsi_memory.py                  # write to a temporary folder, then read
    python benchmarks/bench_wsi_memory.py --side 30000 --compression zlib --keep /tmp/wsi

The slide is written tile by tile from a generator (tifffile never holds the image): mostly
constant glass tiles, and textured "tissue" tiles inside a central ellipse, JPEG-compressed as
in an SVS (zlib where imagecodecs is missing). Sub-resolutions are written the same way, down to
about 2,000 px. Then it is opened with :func:`napari_scr2st.data.images.open_slide`, the dask
levels are built, a thumbnail is read, 200 random 224-px crops are read at full resolution, and
the slide is read as a new section (:func:`napari_scr2st.io.slide.read_slide`, Visium lattice)
whose first 200 spot crops go through :func:`napari_scr2st.features.crops.iter_crops`. Peak RSS
(``resource.getrusage``) is printed after every step. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TILE = 512


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform != "darwin" else rss / 2**20


def report(step: str, seconds: float, extra: str = "") -> None:
    print(f"{step:<44s} {seconds:8.2f} s   peak RSS {peak_rss_mb():8.0f} MiB   {extra}", flush=True)


def motifs(n: int = 16, seed: int = 0) -> list[np.ndarray]:
    """A few textured H&E-coloured tiles: pink stroma with purple 'nuclei'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    out = []
    for _ in range(n):
        tile = np.empty((TILE, TILE, 3), np.float32)
        tile[:] = (220, 150, 190)
        tile += rng.normal(0, 12, (TILE, TILE, 1))
        for cx, cy, r in zip(rng.uniform(0, TILE, 120), rng.uniform(0, TILE, 120), rng.uniform(4, 10, 120), strict=True):
            tile[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = (110, 60, 150)
        out.append(np.clip(tile, 0, 255).astype(np.uint8))
    return out


def tile_generator(side: int, tiles: list[np.ndarray]):
    """Tiles of a ``side`` x ``side`` level in row-major order: textured inside a central
    ellipse (about a quarter of the slide), constant glass elsewhere."""
    glass = np.full((TILE, TILE, 3), (240, 238, 242), np.uint8)
    n = -(-side // TILE)
    c = side / 2.0
    for ty in range(n):
        for tx in range(n):
            x, y = (tx + 0.5) * TILE, (ty + 0.5) * TILE
            inside = ((x - c) / (0.35 * side)) ** 2 + ((y - c) / (0.25 * side)) ** 2 <= 1.0
            yield tiles[(tx * 7 + ty * 13) % len(tiles)] if inside else glass


def write_slide(path: Path, side: int, compression: str, um_per_px: float) -> list[int]:
    import tifffile

    sides = [side]
    while sides[-1] > 4000:
        sides.append(sides[-1] // 2)
    tiles = motifs()
    opts = {"tile": (TILE, TILE), "photometric": "rgb", "compression": compression, "dtype": np.uint8}
    res = {"resolution": (1e4 / um_per_px, 1e4 / um_per_px), "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(tile_generator(side, tiles), shape=(side, side, 3), subifds=len(sides) - 1, **opts, **res)
        for s in sides[1:]:
            tw.write(tile_generator(s, tiles), shape=(s, s, 3), subfiletype=1, **opts)
    return sides


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=60000, help="full-resolution width = height (px)")
    ap.add_argument("--compression", default="jpeg", help="tile compression (jpeg, zlib)")
    ap.add_argument("--um-per-px", type=float, default=0.5)
    ap.add_argument("--crops", type=int, default=200)
    ap.add_argument("--crop-px", type=int, default=224)
    ap.add_argument("--keep", type=Path, default=None, help="write the slide into this folder and keep it")
    args = ap.parse_args(argv)

    compression = args.compression
    if compression == "jpeg":
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            compression = "zlib"
            print("imagecodecs not installed: tiles are zlib-compressed instead of JPEG")

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "wsi_bench.tif"
        print(f"peak RSS at start: {peak_rss_mb():.0f} MiB (Python + NumPy)")
        t = time.perf_counter()
        sides = write_slide(path, args.side, compression, args.um_per_px)
        report("write (tile generator)", time.perf_counter() - t,
               f"{path.stat().st_size / 2**20:.0f} MiB on disk, {compression}, levels {sides}")  # fmt: skip

        from napari_scr2st.data.images import open_slide
        from napari_scr2st.features.crops import iter_crops
        from napari_scr2st.io.slide import read_slide

        t = time.perf_counter()
        slide = open_slide(path, check_blank=False)
        report("open_slide", time.perf_counter() - t, f"{slide}")
        t = time.perf_counter()
        levels = slide.levels
        report("build dask levels", time.perf_counter() - t, f"{[lv.shape[:2] for lv in levels]}")
        t = time.perf_counter()
        thumb, scale = slide.thumbnail()
        report("thumbnail (2000 px) + blank check", time.perf_counter() - t, f"{thumb.shape}, scale {scale:.4f}")
        slide.check_not_blank()

        rng = np.random.default_rng(0)
        c = args.side / 2.0
        ang, rad = rng.uniform(0, 2 * np.pi, args.crops), np.sqrt(rng.uniform(0, 1, args.crops))
        xs = c + 0.3 * args.side * rad * np.cos(ang)
        ys = c + 0.2 * args.side * rad * np.sin(ang)
        t = time.perf_counter()
        total = 0.0
        for x, y in zip(xs, ys, strict=True):
            total += float(slide.read_region(int(x), int(y), args.crop_px, args.crop_px).mean())
        dt = time.perf_counter() - t
        report(f"{args.crops} random {args.crop_px}-px crops", dt,
               f"{1000 * dt / args.crops:.1f} ms/crop, mean grey {total / args.crops:.0f}")  # fmt: skip

        t = time.perf_counter()
        adata = read_slide(path, platform="visium")
        report("read_slide (tissue + Visium lattice)", time.perf_counter() - t, f"{adata.n_obs} spots")
        t = time.perf_counter()
        idx = np.arange(min(args.crops, adata.n_obs))
        n = sum(len(b) for b, _ in iter_crops(adata, indices=idx, batch_size=64, out_size=224))
        dt = time.perf_counter() - t
        report(f"iter_crops, {n} spots (2 diameters, 224 out)", dt, f"{1000 * dt / max(n, 1):.1f} ms/crop")
        full_gib = args.side * args.side * 3 / 2**30
        print(f"decoded full resolution would be {full_gib:.1f} GiB; peak RSS {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
