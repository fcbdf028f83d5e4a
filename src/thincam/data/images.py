"""Reading image files as sensor frames, and area downsampling.

Calibration (a PSF frame), simulation (mask PSFs, clean image folders) and ingestion (a release's
captures and references) all read pixels through :func:`load_image`, so a file means the same
thing to each, and they share :func:`area_downsample`, the pixel binning a coarser sensor does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from thincam.errors import BadInputError

_TIFF = {".tif", ".tiff"}
_RASTER = {".png", ".jpg", ".jpeg", ".bmp"}
_NPY = {".npy"}
IMAGE_SUFFIXES = _TIFF | _RASTER | _NPY
_INT_DEPTHS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}


def _read_raw(path: Path) -> np.ndarray:
    ext = path.suffix.lower()
    if ext not in IMAGE_SUFFIXES:
        raise BadInputError(
            f"{path}: unknown image format {ext!r} (expected .tif, .tiff, .png, .jpg, .bmp or .npy)"
        )
    if not path.is_file():
        raise BadInputError(f"{path}: file does not exist")
    try:
        if ext in _TIFF:
            import tifffile

            return np.asarray(tifffile.imread(path))
        if ext in _NPY:
            return np.asarray(np.load(path, allow_pickle=False))
        if ext == ".png":
            # OpenCV keeps 16-bit colour PNGs (FlatNet's 12-bit captures); Pillow cuts them to 8 bits.
            import cv2

            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise ValueError("OpenCV could not decode it")
            return raw[..., [2, 1, 0, *range(3, raw.shape[-1])]] if raw.ndim == 3 else raw
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except Exception as err:  # any reader failure means the same thing to the caller
        raise BadInputError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err


def _to_chw(raw: np.ndarray, path: Path) -> np.ndarray:
    """Gray -> [1,H,W], RGB(A) -> [3,H,W].

    A 3-D array whose last axis has 1-4 entries is channels-last (how image files store it);
    otherwise a first axis of 1 or 3 is taken as channels-first (how this project saves .npy).
    """
    if raw.ndim == 2:
        return raw[None]
    if raw.ndim == 3:
        if raw.shape[-1] in (1, 2):  # gray, gray + alpha
            return raw[None, :, :, 0]
        if raw.shape[-1] in (3, 4):  # RGB, RGBA
            return np.moveaxis(raw[..., :3], -1, 0)
        if raw.shape[0] in (1, 3):
            return raw
    raise BadInputError(
        f"{path}: expected a gray [H,W] or colour [H,W,3|4] / [C,H,W] image, got shape {raw.shape}"
    )


def load_image(
    path: str | os.PathLike,
    bit_depth: int | None = None,
    bit_depth_key: str = "bit_depth",
    clip_negative: bool = False,
) -> np.ndarray:
    """Read a capture as float32 [C,H,W] in [0,1], rejecting data that cannot be a sensor frame.

    Integers are scaled by 1/(2**bit_depth - 1); the bit depth is inferred from uint8/uint16 when
    not given. Float data without a bit depth must already lie in [0,1]. An integer file too narrow
    for the declared depth (8-bit data read as 16-bit would come out 257x too dark) is refused,
    naming ``bit_depth_key``, the config key the depth came from. Negative values are refused,
    or with ``clip_negative`` (a release of background-subtracted floats) clamped at 0.
    """
    path = Path(path)
    raw = _read_raw(path)
    if raw.dtype.kind not in "uif":
        raise BadInputError(f"{path}: unsupported pixel type {raw.dtype}")
    chw = _to_chw(raw, path)
    data = chw.astype(np.float64)
    if not np.isfinite(data).all():
        raise BadInputError(f"{path}: contains {int((~np.isfinite(data)).sum())} NaN/inf values")
    if data.size == 0:
        raise BadInputError(f"{path}: image is empty (shape {raw.shape})")
    lo, hi = float(data.min()), float(data.max())
    if lo < 0 and not clip_negative:
        raise BadInputError(f"{path}: negative pixel values (min {lo:g})")
    if lo < 0:
        data = np.clip(data, 0.0, None)
    if bit_depth is None and raw.dtype.kind in "ui":
        if raw.dtype not in _INT_DEPTHS:
            raise BadInputError(
                f"{path}: cannot infer the bit depth of {raw.dtype}; pass bit_depth"
            )
        bit_depth = _INT_DEPTHS[raw.dtype]
    if bit_depth is None:
        if hi > 1.0:
            raise BadInputError(
                f"{path}: float data max {hi:g} exceeds 1; pass the sensor bit_depth to scale it"
            )
        return data.astype(np.float32)
    if not isinstance(bit_depth, (int, np.integer)) or not 1 <= bit_depth <= 32:
        raise BadInputError(f"{path}: invalid bit depth {bit_depth!r}")
    if raw.dtype.kind in "ui" and 8 * raw.dtype.itemsize < bit_depth:
        raise BadInputError(
            f"{path}: {8 * raw.dtype.itemsize}-bit file ({raw.dtype}) but config key "
            f"{bit_depth_key} says {bit_depth}-bit; set it to {8 * raw.dtype.itemsize} or null"
        )
    full_scale = 2.0 ** int(bit_depth) - 1
    if hi > full_scale:
        raise BadInputError(f"{path}: bit depth {bit_depth} disagrees with data max {hi:g}")
    return (data / full_scale).astype(np.float32)


def area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Block-mean [C,H,W] by ``factor``, dropping the incomplete last rows/columns.

    Area averaging is what a sensor with larger pixels would have measured, so a downsampled
    PSF stays consistent with downsampled captures (point sampling would alias the caustics).
    """
    from skimage.measure import block_reduce

    if factor == 1:
        return image
    c, h, w = image.shape
    hh, ww = h - h % factor, w - w % factor
    if hh == 0 or ww == 0:
        raise ValueError(f"image {h}x{w} is smaller than the downsampling factor {factor}")
    return block_reduce(image[:, :hh, :ww], (1, factor, factor), np.mean).astype(image.dtype)
