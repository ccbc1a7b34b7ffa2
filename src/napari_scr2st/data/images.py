"""H&E images opened lazily: whole-slide TIFFs region by region, JPEG/PNG decoded once.

:func:`open_slide` returns a :class:`SlideImage` for

- **TIFF-family files** (TIFF, pyramidal/tiled TIFF, OME-TIFF, Aperio SVS, Hamamatsu NDPI),
  read with :mod:`tifffile`: each pyramid level of the first series is wrapped with
  ``aszarr()`` into a zarr array, so a region read decodes only the tiles (or strips) it
  touches, and :attr:`SlideImage.levels` are dask arrays over those zarr arrays (a napari
  multiscale image layer takes the list as is). JPEG-compressed tiles (SVS, NDPI) need
  ``imagecodecs``.
- **JPEG and PNG**, decoded once per process (cached by path, size and modification time):
  RGB and greyscale JPEGs with imagecodecs' libjpeg-turbo (the same pixels as Pillow, faster,
  and without holding the GIL), everything else with Pillow; a 2x pyramid of the decoded
  image is built on first use of ``levels``.
  These files are opened through Pillow's JPEG/PNG plugins directly rather than
  ``Image.open``, so Pillow's process-wide ``MAX_IMAGE_PIXELS`` guard is neither hit nor
  changed; :data:`MAX_DECODE_PIXELS` bounds what is decoded instead.

Pixels are always returned as RGB ``uint8``: greyscale is repeated to three channels, an alpha
channel is composited over white (bare glass), and samples that are not 8-bit (16-bit, 32-bit,
float) are scaled linearly by their real range, the 0.5 and 99.5 percentiles of the colour
samples of the smallest pyramid level (integer images are never stretched by more than one
grey level per unit, so a nearly constant 16-bit image stays nearly constant). The range is
computed once per image, so every region and level is scaled identically.

``um_per_px`` (micrometres per full-resolution pixel) comes from the file when it says so:
OME ``PhysicalSizeX``/``PhysicalSizeY`` (with their units), the Aperio ``MPP =`` entry of an
SVS ImageDescription, or the TIFF ``XResolution``/``YResolution`` with ``ResolutionUnit`` inch
or centimetre (this also covers NDPI); JPEG/PNG dpi is read the same way. Values outside
:data:`PLAUSIBLE_UM_PER_PX` (e.g. the 72 dpi default of many writers, 353 um/px) are treated
as absent, and ``um_per_px`` is then ``None``.

A blank or near-uniform image (thumbnail grey-level standard deviation below
:data:`BLANK_STD`) raises :class:`~napari_scr2st.data.model.SectionError` naming the file;
:func:`check_not_blank` is the reusable check.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import SectionError

#: the longer side of the low-resolution copy of an image kept in a section
LOWRES_MAX_SIDE = 2000

if TYPE_CHECKING:
    import dask.array

__all__ = [
    "SlideImage",
    "open_slide",
    "is_whole_slide",
    "is_image_file",
    "check_not_blank",
    "to_rgb_uint8",
    "TIFF_SUFFIXES",
    "PIL_SUFFIXES",
    "IMAGE_SUFFIXES",
    "BLANK_STD",
    "MAX_DECODE_PIXELS",
    "PLAUSIBLE_UM_PER_PX",
]

PathLike = str | os.PathLike

#: suffixes read through tifffile (".ome.tif" ends in ".tif")
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi")
#: suffixes decoded whole with Pillow
PIL_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PIL_SUFFIXES
#: grey-level standard deviation (0-255 scale) of the thumbnail below which an image is blank
BLANK_STD = 2.0
#: largest JPEG/PNG (pixels) decoded into memory; larger images must be tiled TIFFs
MAX_DECODE_PIXELS = 1_000_000_000
#: (min, max) micrometres per pixel accepted from file metadata
PLAUSIBLE_UM_PER_PX = (0.01, 50.0)
#: percentiles of the colour samples mapped to 0 and 255 for images that are not 8-bit
RANGE_PERCENTILES = (0.5, 99.5)
#: the smallest level is subsampled to about this many pixels to find the range
_RANGE_SAMPLE_PX = 2_000_000
#: pyramid of decoded JPEG/PNG images: halve until the longer side is at most this
_PYRAMID_MIN_SIDE = 1024

_UNIT_TO_UM = {
    "m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "μm": 1.0, "micron": 1.0,
    "nm": 1e-3, "å": 1e-4, "pm": 1e-6,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# pixel conversion
# --------------------------------------------------------------------------------------------
def _value_range(raw: np.ndarray) -> tuple[float, float]:
    """(lo, hi) mapped to 0 and 255 for raw colour samples (see the module docstring)."""
    if raw.dtype == np.uint8 or raw.dtype == np.bool_:
        return 0.0, 255.0
    colour = raw[..., : 3 if raw.shape[-1] >= 3 else 1].astype(np.float64)
    colour = colour[np.isfinite(colour)]
    if colour.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(colour, RANGE_PERCENTILES))
    if raw.dtype.kind in "iu":
        hi = max(hi, lo + 255.0)
    elif not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _alpha_max(dtype: np.dtype) -> float:
    if dtype.kind in "iu":
        return float(np.iinfo(dtype).max)
    return 1.0


def to_rgb_uint8(raw: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Convert raw samples ``(h, w)`` or ``(h, w, c)`` to RGB ``uint8`` ``(h, w, 3)``.

    Colour samples are mapped linearly from ``[lo, hi]`` to ``[0, 255]`` (clipped; ``uint8``
    input with ``(0, 255)`` is passed through). One channel is grey, two are grey + alpha,
    three RGB, four RGBA; more than four keep the first three. Alpha is composited over white.
    """
    raw = np.asarray(raw)
    if raw.ndim == 2:
        raw = raw[..., None]
    c = raw.shape[-1]
    colour = raw[..., :1] if c <= 2 else raw[..., :3]
    if raw.dtype == np.bool_:
        rgb = colour.astype(np.float32) * 255.0
    elif raw.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        rgb = colour
    else:
        rgb = (colour.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
        rgb = np.nan_to_num(rgb, nan=255.0)
    if c in (2, 4):
        alpha = raw[..., -1:].astype(np.float32) / np.float32(_alpha_max(raw.dtype))
        alpha = np.clip(alpha, 0.0, 1.0)
        rgb = rgb * alpha + 255.0 * (1.0 - alpha)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return np.ascontiguousarray(rgb)


def check_not_blank(image: np.ndarray, source: Any, *, min_std: float = BLANK_STD) -> None:
    """Raise :class:`SectionError` naming ``source`` when ``image`` is blank or near-uniform.

    ``image`` is an 8-bit grey or RGB(A) array, typically a thumbnail or a hires image of
    another reader; it is subsampled to about 1,000 px a side, and blank means that the
    standard deviation of its grey levels (0-255) is below ``min_std``.
    """
    img = np.asarray(image)
    if img.size == 0:
        raise SectionError(f"image {source} has no pixels (shape {img.shape})")
    step = max(1, max(img.shape[:2]) // 1000)
    sub = img[::step, ::step].astype(np.float32)
    grey = sub[..., :3].mean(axis=-1) if sub.ndim == 3 else sub
    std = float(grey.std())
    if not std >= min_std:
        raise SectionError(
            f"image {source} is blank or nearly uniform (grey-level standard deviation "
            f"{std:.2f} < {min_std:g} on a 0-255 scale, mean {float(grey.mean()):.0f}); "
            "is it the right file, and does it show the tissue?"
        )


# --------------------------------------------------------------------------------------------
# physical scale
# --------------------------------------------------------------------------------------------
def _plausible(v: float | None) -> float | None:
    if v is None or not np.isfinite(v):
        return None
    return float(v) if PLAUSIBLE_UM_PER_PX[0] <= v <= PLAUSIBLE_UM_PER_PX[1] else None


def _mean_or_none(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None


def _ome_um_per_px(xml: str) -> float | None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        vals = []
        for ax in ("X", "Y"):
            size = el.get(f"PhysicalSize{ax}")
            if size is None:
                continue
            unit = el.get(f"PhysicalSize{ax}Unit", "µm").strip().lower()
            factor = _UNIT_TO_UM.get(unit)
            try:
                vals.append(_plausible(float(size) * factor) if factor is not None else None)
            except ValueError:
                vals.append(None)
        return _mean_or_none(vals)
    return None


def _resolution_um_per_px(xres: float | None, yres: float | None, unit: int | None) -> float | None:
    """From pixels per unit (TIFF XResolution/YResolution) and ResolutionUnit (2 inch, 3 cm)."""
    per = {2: 25400.0, 3: 10000.0}.get(int(unit) if unit is not None else 0)
    if per is None:
        return None
    vals = [_plausible(per / r) if r and r > 0 else None for r in (xres, yres)]
    return _mean_or_none(vals)


def _tiff_um_per_px(tf, page) -> float | None:
    if tf.is_ome and tf.ome_metadata:
        v = _ome_um_per_px(tf.ome_metadata)
        if v is not None:
            return v
    if tf.is_svs:
        m = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", tf.pages.first.description or "")
        if m:
            try:
                v = _plausible(float(m.group(1)))
            except ValueError:
                v = None
            if v is not None:
                return v
    tags = page.tags
    if "XResolution" not in tags:
        return None
    try:
        xres, yres = (float(r) for r in page.resolution)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return _resolution_um_per_px(xres, yres, int(page.resolutionunit))


# --------------------------------------------------------------------------------------------
# backends
# --------------------------------------------------------------------------------------------
class _TiffLevel:
    """One pyramid level of a tifffile series as a zarr array, read as raw ``(h, w, c)``."""

    def __init__(self, series, level: int, axes: str):
        import zarr

        self.store = series.aszarr(level=level)
        self.array = zarr.open(self.store, mode="r")
        self.axes = axes
        shape = dict(zip(axes, self.array.shape, strict=True))
        self.channel_axis = "S" if "S" in axes else ("C" if "C" in axes else None)
        self.shape = (int(shape["Y"]), int(shape["X"]))
        self.dtype = np.dtype(self.array.dtype)

    def _index(self, ys: slice, xs: slice) -> tuple:
        out = []
        for ax in self.axes:
            if ax == "Y":
                out.append(ys)
            elif ax == "X":
                out.append(xs)
            elif ax == self.channel_axis:
                out.append(slice(None))
            else:
                out.append(0)
        return tuple(out)

    def _to_yxc(self, arr, xp):
        kept = [ax for ax in self.axes if ax in ("Y", "X") or ax == self.channel_axis]
        if self.channel_axis is None:
            arr = arr[..., None]
            kept.append("C")
            order = [kept.index("Y"), kept.index("X"), kept.index("C")]
        else:
            order = [kept.index("Y"), kept.index("X"), kept.index(self.channel_axis)]
        return xp.transpose(arr, order)

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        return np.ascontiguousarray(self._to_yxc(np.asarray(self.array[self._index(ys, xs)]), np))

    def as_dask(self):
        import dask.array as da

        arr = da.from_zarr(self.array)[self._index(slice(None), slice(None))]
        arr = self._to_yxc(arr, da)
        return arr.rechunk({2: -1})


class SlideImage:
    """A histology image read lazily; pixels are always RGB ``uint8``.

    Use :func:`open_slide` (cached per file) rather than the constructor. Attributes:

    ``path``
        the file (``None`` for :meth:`from_array`);
    ``shape``
        full-resolution ``(height, width, 3)``;
    ``level_shapes``, ``downsamples``, ``n_levels``
        ``(height, width)`` of each pyramid level and its downsample factor relative to level
        0 (``downsamples[0] == 1.0``; the mean of the row and column factors);
    ``um_per_px``
        micrometres per full-resolution pixel from the file's metadata, or ``None``;
    ``is_lazy``
        True when pixels are read on demand from the file (TIFF family), False when the whole
        image is decoded in memory (JPEG/PNG, :meth:`from_array`).
    """

    def __init__(
        self,
        *,
        path: Path | None,
        tiff_levels: list[_TiffLevel] | None = None,
        array: np.ndarray | None = None,
        um_per_px: float | None = None,
        handle: Any = None,
    ):
        self.path = path
        self.um_per_px = um_per_px
        self._handle = handle  # the open TiffFile backing tiff_levels
        self._tiff = tiff_levels
        self._array = array
        self._levels: list | None = None
        self._thumbs: dict[int, tuple[np.ndarray, float]] = {}
        if tiff_levels is not None:
            self.level_shapes = [lv.shape for lv in tiff_levels]
            self._range = _value_range(self._range_sample())
        elif array is not None:
            self.level_shapes = _pyramid_shapes(array.shape)
            self._range = (0.0, 255.0)
        else:
            raise ValueError("SlideImage needs tiff_levels or array")
        h, w = self.level_shapes[0]
        self.shape = (int(h), int(w), 3)
        self.downsamples = [
            float((h / lh + w / lw) / 2.0) for lh, lw in self.level_shapes
        ]

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_array(cls, image: np.ndarray, *, um_per_px: float | None = None) -> SlideImage:
        """Wrap an in-memory image (converted to RGB ``uint8`` by its range if needed)."""
        raw = np.asarray(image)
        arr = to_rgb_uint8(raw, *_value_range(raw if raw.ndim == 3 else raw[..., None]))
        arr.setflags(write=False)
        return cls(path=None, array=arr, um_per_px=um_per_px)

    @property
    def level0(self) -> np.ndarray | dask.array.Array:
        """The full-resolution RGB ``uint8`` image: a dask array when :attr:`is_lazy` (slice it,
        then ``np.asarray`` the slice), else the decoded read-only NumPy array."""
        return self.levels[0] if self._tiff is not None else self._array

    @property
    def n_levels(self) -> int:
        return len(self.level_shapes)

    @property
    def is_lazy(self) -> bool:
        return self._tiff is not None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "in-memory image"

    def __repr__(self) -> str:
        return (
            f"SlideImage({self.name!r}, shape={self.shape}, levels={self.n_levels}, "
            f"um_per_px={self.um_per_px})"
        )

    def _range_sample(self) -> np.ndarray:
        lv = self._tiff[-1]
        h, w = lv.shape
        step = max(1, int(np.ceil(np.sqrt(h * w / _RANGE_SAMPLE_PX))))
        if lv.dtype == np.uint8:
            return np.zeros((1, 1, 1), np.uint8)
        return lv.read(slice(0, h, step), slice(0, w, step))

    # ---------------------------------------------------------------- pixels
    @property
    def levels(self) -> list[dask.array.Array]:
        """Every pyramid level as a lazy RGB ``uint8`` dask array ``(h, w, 3)``, largest first."""
        if self._levels is None:
            import dask.array as da

            if self._tiff is not None:
                lo, hi = self._range
                self._levels = []
                for lv in self._tiff:
                    raw = lv.as_dask()
                    self._levels.append(
                        raw.map_blocks(
                            to_rgb_uint8, lo, hi, dtype=np.uint8,
                            chunks=(raw.chunks[0], raw.chunks[1], (3,)),
                        )  # fmt: skip
                    )
            else:
                self._levels = [
                    da.from_array(a, chunks=(2048, 2048, 3)) for a in _pyramid(self._array)
                ]
        return self._levels

    def read_region(
        self, x: int, y: int, w: int, h: int, *, level: int = 0, pad_value: int = 255
    ) -> np.ndarray:
        """RGB ``uint8`` ``(h, w, 3)``: the region with top-left pixel ``(x, y)`` of ``level``.

        Coordinates and sizes are in pixels of ``level`` (level 0 = full resolution). Only the
        tiles the region touches are decoded. Parts outside the image are ``pad_value``.
        """
        x, y, w, h, level = int(x), int(y), int(w), int(h), int(level)
        if w < 0 or h < 0:
            raise ValueError(f"region size must be >= 0, got w={w}, h={h}")
        if not 0 <= level < self.n_levels:
            raise ValueError(f"level must be in [0, {self.n_levels}), got {level}")
        lh, lw = self.level_shapes[level]
        out = np.full((h, w, 3), pad_value, dtype=np.uint8)
        x0, y0, x1, y1 = max(0, x), max(0, y), min(lw, x + w), min(lh, y + h)
        if x1 <= x0 or y1 <= y0:
            return out
        if self._tiff is not None:
            raw = self._tiff[level].read(slice(y0, y1), slice(x0, x1))
            part = to_rgb_uint8(raw, *self._range)
        elif level == 0:
            part = self._array[y0:y1, x0:x1]
        else:
            part = np.asarray(self.levels[level][y0:y1, x0:x1])
        out[y0 - y : y1 - y, x0 - x : x1 - x] = part
        return out

    def thumbnail(self, max_side: int = LOWRES_MAX_SIDE) -> tuple[np.ndarray, float]:
        """``(image, scale)``: RGB ``uint8`` with the longer side at most ``max_side``.

        ``scale`` = thumbnail pixels per full-resolution pixel (as
        :func:`~napari_scr2st.data.model.downscale_image`). Read from the smallest pyramid
        level that is at least ``max_side`` (a strided read when that level is much larger),
        then resized with Pillow; cached per ``max_side``.
        """
        max_side = int(max_side)
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        if max_side in self._thumbs:
            return self._thumbs[max_side]
        from PIL import Image

        H, W = self.shape[:2]
        scale = min(1.0, max_side / max(H, W))
        size = (max(1, round(W * scale)), max(1, round(H * scale)))
        if self._tiff is None:
            src = self._array
        else:
            idx = 0
            for i, (lh, lw) in enumerate(self.level_shapes):
                if max(lh, lw) >= max(size):
                    idx = i
            lh, lw = self.level_shapes[idx]
            step = max(1, max(lh, lw) // (2 * max(size)))
            raw = self._tiff[idx].read(slice(0, lh, step), slice(0, lw, step))
            src = to_rgb_uint8(raw, *self._range)
        if (src.shape[1], src.shape[0]) == size:
            thumb = np.ascontiguousarray(src)
        else:
            thumb = np.asarray(Image.fromarray(src).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
        thumb.setflags(write=False)
        self._thumbs[max_side] = (thumb, float(scale))
        return self._thumbs[max_side]

    def check_not_blank(self, *, min_std: float = BLANK_STD) -> None:
        """:func:`check_not_blank` on the default thumbnail, naming this file."""
        check_not_blank(self.thumbnail()[0], self.name, min_std=min_std)


def _pyramid_shapes(shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(h, w)`` of the 2x pyramid of an in-memory image, down to :data:`_PYRAMID_MIN_SIDE`."""
    h, w = int(shape[0]), int(shape[1])
    out = [(h, w)]
    while max(h, w) > 2 * _PYRAMID_MIN_SIDE:
        h, w = h // 2, w // 2
        out.append((h, w))
    return out


def _pyramid(image: np.ndarray) -> list[np.ndarray]:
    from PIL import Image

    levels = [image]
    for h, w in _pyramid_shapes(image.shape[:2])[1:]:
        levels.append(np.asarray(Image.fromarray(levels[-1]).resize((w, h), Image.Resampling.BOX)))
    return levels


def _open_tiff(path: Path) -> SlideImage:
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError, struct.error) as e:
        raise SectionError(f"cannot read image {path} as TIFF: {e}") from e
    try:
        if not tf.series:
            raise SectionError(f"image {path}: the TIFF holds no image series")
        series = tf.series[0]
        axes = series.axes
        if "Y" not in axes or "X" not in axes:
            raise SectionError(f"image {path}: the first TIFF series has axes {axes!r}, expected Y and X")
        levels = []
        for i, lv in enumerate(series.levels):
            if lv.axes != axes:
                break  # a level with other axes is not part of this pyramid
            levels.append(_TiffLevel(series, i, axes))
        mpp = _tiff_um_per_px(tf, series.levels[0].keyframe)
        return SlideImage(path=path, tiff_levels=levels, um_per_px=mpp, handle=tf)
    except SectionError:
        tf.close()
        raise
    except Exception as e:  # tifffile/imagecodecs raise many types for unsupported files
        tf.close()
        raise SectionError(f"cannot read image {path}: {type(e).__name__}: {e}") from e


_PIL_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


def open_pillow_unguarded(path):
    """Open an image file with Pillow WITHOUT its process-wide decompression-bomb check.

    ``Image.open`` refuses images above ``PIL.Image.MAX_IMAGE_PIXELS`` (about 89 Mpx), which
    whole H&E images exceed. Instead of switching that guard off for the whole process (every
    thread and plugin), this picks the format plugin from the file's first bytes, as
    ``Image.open`` does, and opens the file with the plugin class directly, which skips only
    this call's check; the caller bounds what it decodes. Raises ``PIL.UnidentifiedImageError``
    when no plugin accepts the file. The image is lazy (header read); use it as a context manager.
    """
    from PIL import Image, UnidentifiedImageError

    Image.init()
    with open(path, "rb") as fh:
        prefix = fh.read(16)
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept is not None else True
        if not verdict or isinstance(verdict, str):
            continue
        try:
            return factory(os.fspath(path))
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {os.fspath(path)!r}")


def _jpeg_turbo(path: Path) -> np.ndarray | None:
    """Decode an RGB or greyscale JPEG with imagecodecs' libjpeg-turbo, or None to use Pillow.

    The pixels equal Pillow's (both use libjpeg-turbo's default integer IDCT and upsampling;
    checked on the her2st H&E JPEGs), but imagecodecs decodes them 1.2-2.3x faster and
    releases the GIL for the decode (another thread waited at most 4-10 ms for it, against
    28-51 ms under Pillow, which takes it back between chunks: ``benchmarks/bench_jpeg_decode.py``);
    a worker decoding a 90-Mpx H&E with Pillow had starved the viewer's UI thread.
    """
    data = Path(path).read_bytes()
    if not data.rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        # No end-of-image marker: a truncated file, which libjpeg-turbo "decodes" with grey
        # where the data stops. Pillow raises "image file is truncated" for it (or decodes a
        # file that merely has trailing bytes).
        return None
    try:
        import imagecodecs

        raw = imagecodecs.jpeg8_decode(data)
    except Exception:  # noqa: BLE001 - no imagecodecs, or a JPEG it cannot decode: Pillow decides
        return None
    return raw if raw.dtype == np.uint8 and raw.ndim in (2, 3) else None


def _decode_pil(path: Path) -> SlideImage:
    from PIL import JpegImagePlugin, PngImagePlugin

    with open(path, "rb") as fh:
        head = fh.read(8)
    fmt = next((f for magic, f in _PIL_MAGIC.items() if head.startswith(magic)), None)
    if fmt is None:
        raise SectionError(f"image {path}: not a JPEG or PNG file (unrecognised signature {head!r})")
    cls = JpegImagePlugin.JpegImageFile if fmt == "JPEG" else PngImagePlugin.PngImageFile
    try:
        # the plugin class directly: Image.open's process-wide MAX_IMAGE_PIXELS check is skipped
        with cls(path) as im:
            w, h = im.size
            if w * h > MAX_DECODE_PIXELS:
                raise SectionError(
                    f"image {path} has {w} x {h} = {w * h:,} pixels, more than the "
                    f"{MAX_DECODE_PIXELS:,} decoded into memory; convert it to a tiled pyramidal "
                    "TIFF (e.g. with tifffile or libvips) to read it region by region"
                )
            dpi = im.info.get("dpi")
            raw = _jpeg_turbo(path) if fmt == "JPEG" and im.mode in ("RGB", "L") else None
            if raw is None:
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                elif im.mode == "1":
                    im = im.convert("L")
                raw = np.asarray(im)
    except SectionError:
        raise
    except Exception as e:  # PIL raises several types for broken files
        raise SectionError(f"cannot read image {path}: {e}") from e
    if raw.ndim == 2:
        raw = raw[..., None]
    arr = to_rgb_uint8(raw, *_value_range(raw))
    arr.setflags(write=False)
    mpp = None
    if dpi:
        try:
            mpp = _resolution_um_per_px(float(dpi[0]), float(dpi[1]), 2)
        except (TypeError, ValueError, IndexError):
            mpp = None
    return SlideImage(path=path, array=arr, um_per_px=mpp)


@functools.lru_cache(maxsize=8)
def _open_tiff_cached(path: str, size: int, mtime_ns: int) -> SlideImage:  # noqa: ARG001 - size and mtime are cache keys
    return _open_tiff(Path(path))


@functools.lru_cache(maxsize=2)
def _decode_pil_cached(path: str, size: int, mtime_ns: int) -> SlideImage:  # noqa: ARG001 - size and mtime are cache keys
    return _decode_pil(Path(path))


def _is_tiff_name(p: Path) -> bool:
    return p.name.lower().endswith(TIFF_SUFFIXES)


def is_image_file(path: PathLike) -> bool:
    """True when ``path`` is a file whose name ends in one of :data:`IMAGE_SUFFIXES`."""
    p = Path(path)
    return p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)


def open_slide(path: PathLike, *, check_blank: bool = True) -> SlideImage:
    """Open a histology image as a :class:`SlideImage` (cached by path, size and mtime).

    TIFF-family files (:data:`TIFF_SUFFIXES`) are read with tifffile, JPEG/PNG by their
    signature, whatever the suffix (RGB and greyscale JPEGs with imagecodecs, the rest with
    Pillow). With ``check_blank`` a blank or near-uniform
    image raises :class:`SectionError`. A missing or unreadable file raises
    :class:`SectionError` naming it.
    """
    p = Path(path)
    if not p.is_file():
        raise SectionError(f"image file not found: {p}")
    st = p.stat()
    key = (str(p.resolve()), int(st.st_size), int(st.st_mtime_ns))
    slide = _open_tiff_cached(*key) if _is_tiff_name(p) else _decode_pil_cached(*key)
    if check_blank:
        slide.check_not_blank()
    return slide


@functools.lru_cache(maxsize=64)
def _is_whole_slide_cached(path: str, size: int, mtime_ns: int) -> bool:  # noqa: ARG001 - size and mtime are cache keys
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                return False
            series = tf.series[0]
            page = series.levels[0].keyframe
            eight_bit_rgb = series.dtype == np.uint8 and page.samplesperpixel in (1, 3)
            return len(series.levels) > 1 or bool(page.is_tiled) or not eight_bit_rgb or tf.is_ome
    except Exception:  # not a TIFF tifffile can parse: leave it to the other readers
        return False


def is_whole_slide(path: PathLike) -> bool:
    """True when ``path`` should be read region by region through :func:`open_slide`.

    That is a TIFF-family file (by suffix) that is pyramidal, tiled, OME, or whose samples
    are not 8-bit grey/RGB (Pillow would misread those). Plain 8-bit strip TIFFs, JPEG and
    PNG are False: they are decoded whole. Never raises.
    """
    p = Path(path)
    try:
        if not (p.is_file() and _is_tiff_name(p)):
            return False
        st = p.stat()
    except OSError:
        return False
    return _is_whole_slide_cached(str(p.resolve()), int(st.st_size), int(st.st_mtime_ns))
