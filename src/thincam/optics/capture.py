"""Reading captures and turning a captured point-source image into a forward-model PSF.

The PSF of a lensless camera is measured, not designed: a point source is imaged, and the raw
frame carries a dark level, hot pixels and far more pixels than the reconstruction uses. Every
step here exists so the unit-sum PSF the solvers convolve with contains only the optics.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from thincam.errors import BadInputError
from thincam.physics.geometry import centred_start
from thincam.optics.condition import MIN_SIGNAL_ENERGY, SIGNAL_SIGMAS, psf_energy_concentration

_TIFF = {".tif", ".tiff"}
_RASTER = {".png", ".jpg", ".jpeg", ".bmp"}
_NPY = {".npy"}
_INT_DEPTHS = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}
BACKGROUNDS = ("corner", "dark", "none")
# Largest share of a PSF frame's values at full scale accepted by default (cameras.<name>.max_saturated).
MAX_SATURATED_SHARE = 1e-3
# Least share of the PSF's energy (after downsampling) that the crop to the sensor must keep.
MIN_CROP_ENERGY = 0.9


def _read_raw(path: Path) -> np.ndarray:
    ext = path.suffix.lower()
    if ext not in _TIFF | _RASTER | _NPY:
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


def _neighbour_stats(
    plane: np.ndarray, radius: int, rows: int = 256
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel, over its neighbours (itself excluded): median and MAD of the (2r+1)^2 window,
    and the second-largest of the 8 nearest neighbours. Computed in row bands.

    scipy.ndimage has a median filter but no MAD filter (the deviation must be taken from each
    window's own median), so the shifted neighbours are stacked; bands bound the memory.
    """
    k = 2 * radius + 1
    h, w = plane.shape
    # wrap, not reflect/edge: those copy a border pixel's neighbour (or itself) into its own
    # neighbourhood, hiding a defect pair at the border like the sample's (0,0)-(0,1)
    padded = np.pad(plane, radius, mode="wrap")
    offsets = [(i, j) for i in range(k) for j in range(k) if (i, j) != (radius, radius)]
    nearest = [
        n for n, (i, j) in enumerate(offsets) if abs(i - radius) <= 1 and abs(j - radius) <= 1
    ]
    med, mad, second = (np.empty_like(plane) for _ in range(3))
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        stack = np.stack([padded[r0 + i : r1 + i, j : j + w] for i, j in offsets])
        m = np.median(stack, axis=0)
        med[r0:r1] = m
        mad[r0:r1] = np.median(np.abs(stack - m), axis=0)
        second[r0:r1] = np.partition(stack[nearest], -2, axis=0)[-2]
    return med, mad, second


def remove_hot_pixels(
    image: np.ndarray, sigma: float = 6.0, radius: int = 2
) -> tuple[np.ndarray, int]:
    """Replace isolated bright outliers by their 3x3 median; return the image and the count.

    Hot where value - reference > sigma * 1.4826 * MAD and > reference - median. The MAD is
    local (5x5) because caustics are bright but real, and floored at the image's median non-zero
    deviation because quantised flat areas have MAD 0 (the full-resolution DiffuserCam PSF's
    defects sit in such windows). The reference is the second-brightest of the 8 neighbours, not the
    local median: a one-pixel-wide caustic line (the 4x-downsampled DiffuserCam PSF has them)
    towers over its median but not over its neighbours along the line, while a defect, even a
    pair of adjacent ones (the sample has one at (0,0)-(0,1)), towers over all but one. The
    second condition (rising above the local median twice as far as that neighbour does) keeps
    shot noise along a bright line, which the background-dominated MAD underestimates, from
    counting as a defect; it is offset-invariant, like the first.
    """
    from scipy import ndimage

    out = image.copy()
    n_hot = 0
    for c, plane in enumerate(image):
        med, mad, second = _neighbour_stats(plane, radius)
        dev = np.abs(plane - med)
        nonzero = dev[dev > 0]
        floor = float(np.median(nonzero)) if nonzero.size else 0.0
        scale = 1.4826 * np.maximum(mad, floor)
        jump = plane - second
        hot = (jump > sigma * scale) & (jump > second - med)
        if hot.any():
            # wrap for the same reason as above: reflect would count a border pair's twin twice
            out[c][hot] = ndimage.median_filter(plane, size=3, mode="wrap")[hot]
            n_hot += int(hot.sum())
    return out, n_hot


def _crop_around(
    image: np.ndarray, centre: tuple[float, float], size: tuple[int, int]
) -> np.ndarray:
    """An [C,h,w] window whose centre pixel (h//2, w//2) sits at ``centre``; zeros outside."""
    c, H, W = image.shape
    h, w = size
    top = centred_start(H, h, centre=int(round(centre[0])))
    left = centred_start(W, w, centre=int(round(centre[1])))
    out = np.zeros((c, h, w), dtype=image.dtype)
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + h, H), min(left + w, W)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - top : sy1 - top, sx0 - left : sx1 - left] = image[:, sy0:sy1, sx0:sx1]
    return out


def intensity_centroid(image: np.ndarray) -> tuple[float, float]:
    """(row, col) centroid of the channel-summed intensity."""
    total = image.sum(axis=0)
    mass = total.sum()
    rows, cols = np.indices(total.shape)
    return float((rows * total).sum() / mass), float((cols * total).sum() / mass)


def count_saturated(image: np.ndarray, path: Path, max_share: float, key: str) -> int:
    """Values at full scale (1 after :func:`load_image`, i.e. 2**bit_depth - 1), refused above
    ``max_share`` of them.

    A saturated pixel recorded less light than arrived, so the PSF is wrong exactly where it is
    brightest: 3.3% of the DiffuserCam frame at full scale put its PSF 11% off.
    """
    n = int((image >= 1.0).sum())
    if n > max_share * image.size:
        raise BadInputError(
            f"{path}: {n} pixel values ({n / image.size:.2%}) at full scale (2**bit_depth - 1): "
            f"the PSF is clipped where it is brightest; capture it with a shorter exposure, or "
            f"raise config key {key}.max_saturated (now {max_share:g}) to accept it"
        )
    return n


def read_psf_frame(path, bit_depth, key: str, fmt, window) -> np.ndarray:
    """A PSF or dark frame [C,H,W] float64 as the release's captures are read: in the release's
    channel order and orientation (``fmt``), cut to its sensor ``window`` (thincam.data.layouts),
    so PSF and captures stay on one grid."""
    from thincam.data.layouts import release_view, sensor_window

    image = load_image(path, bit_depth, f"{key}.bit_depth").astype(np.float64)
    return sensor_window(release_view(image, fmt), window, path)


def _subtract_dark(image, path, dark_path, background, bit_depth, key, fmt, window, info) -> np.ndarray:
    """The frame less its dark frame (``background: dark``); recorded as info["background"]."""
    if background != "dark":
        return image
    if dark_path is None:
        raise BadInputError(f"{path}: background 'dark' needs a dark_path")
    dark = read_psf_frame(dark_path, bit_depth, key, fmt, window)
    if dark.shape[1:] != image.shape[1:] or dark.shape[0] not in (1, image.shape[0]):
        raise BadInputError(
            f"{dark_path}: dark frame shape {dark.shape} does not match capture {path} "
            f"shape {image.shape}"
        )
    info["background"] = [float(v) for v in np.broadcast_to(dark, image.shape).mean(axis=(1, 2))]
    return image - dark


def _subtract_corners(image, path, background, corner_fraction, info) -> np.ndarray:
    """The frame less its corner level (``background: corner``); refused when nothing is left."""
    if background == "corner":
        c, h, w = image.shape
        k = max(1, int(round(corner_fraction * min(h, w))))
        corners = np.concatenate(
            [
                image[:, :k, :k].reshape(c, -1),
                image[:, :k, -k:].reshape(c, -1),
                image[:, -k:, :k].reshape(c, -1),
                image[:, -k:, -k:].reshape(c, -1),
            ],
            axis=1,
        )
        level = corners.mean(axis=1)
        info["background"] = [float(v) for v in level]
        info["corner_px"] = k
        image = image - level[:, None, None]
    elif background == "none":
        info["background"] = "none"
    signal = image.sum(axis=(1, 2))
    if not (signal > 0).all():
        raise BadInputError(
            f"{path}: no PSF signal above the background (sum {signal.tolist()} <= 0 after "
            f"{background} background subtraction)"
        )
    return image


def crop_psf(
    image: np.ndarray, size, center: bool, path: Path, downsample: int, key: str
) -> tuple[np.ndarray, tuple[float, float], float]:
    """(crop to ``size``, its centre, the least share of a channel's energy it keeps) of a
    background-free, downsampled PSF frame.

    Refused when ``size`` exceeds the frame (zeros would stand for PSF never measured) or the crop
    keeps less than :data:`MIN_CROP_ENERGY` (light the model would say never reached the sensor):
    both mean ``size`` and ``downsample`` disagree, e.g. a forgotten downsample keeps 0.5%.
    """
    size = (int(size[0]), int(size[1]))
    c, h, w = image.shape
    keys = f"config keys {key}.size {list(size)} and {key}.downsample {downsample}"
    if size[0] > h or size[1] > w:
        raise BadInputError(
            f"{path}: {keys}: the frame is only {h}x{w} after downsampling, so the PSF would be "
            f"zero-padded where it was never measured; size is the sensor after downsampling"
        )
    # Without centring, the frame's centre pixel (h // 2, w // 2), the convention of
    # centred_start: h / 2 rounds up on an odd side and shifted the crop by one pixel.
    centre = intensity_centroid(image) if center else (h // 2, w // 2)
    cropped = _crop_around(image, centre, size)
    kept = float((cropped.sum(axis=(1, 2)) / image.sum(axis=(1, 2))).min())
    if kept < MIN_CROP_ENERGY:
        raise BadInputError(
            f"{path}: {keys}: the {size[0]}x{size[1]} crop of the {h}x{w} frame after "
            f"downsampling keeps {kept:.1%} of the PSF's energy (at least {MIN_CROP_ENERGY:.0%} "
            f"needed): raise downsample or size so the PSF fits the sensor"
        )
    return cropped, centre, kept


def check_capture_psf(
    path: str | os.PathLike,
    *,
    dark_path: str | os.PathLike | None,
    bit_depth: int | None,
    background: str,
    downsample: int,
    size: tuple[int, int],
    center: bool,
    max_saturated: float = MAX_SATURATED_SHARE,
    key: str = "camera",
    fmt: str | None = None,
    window=None,
    corner_fraction: float = 0.05,
) -> None:
    """The refusals of :func:`calibrate_capture_psf` that the frame decides (saturation, crop),
    without its slow hot-pixel pass: cheap enough to run on every config before any job."""
    path = Path(path)
    image = read_psf_frame(path, bit_depth, key, fmt, window)
    count_saturated(image, path, max_saturated, key)
    info: dict[str, Any] = {}
    image = _subtract_dark(image, path, dark_path, background, bit_depth, key, fmt, window, info)
    image = _subtract_corners(image, path, background, corner_fraction, info)
    crop_psf(area_downsample(np.clip(image, 0.0, None), downsample), size, center, path, downsample, key)


def calibrate_capture_psf(
    path: str | os.PathLike,
    *,
    dark_path: str | os.PathLike | None = None,
    bit_depth: int | None = None,
    background: str = "corner",
    corner_fraction: float = 0.05,
    hot_pixel_sigma: float = 6.0,
    downsample: int = 1,
    size: tuple[int, int] | None = None,
    center: bool = True,
    max_saturated: float = MAX_SATURATED_SHARE,
    key: str = "camera",
    fmt: str | None = None,
    window=None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Captured point-source frame -> float32 [C,H,W] PSF with each channel summing to 1.

    Order: saturation count, dark subtraction, hot pixels, corner background, energy check, clip,
    area downsampling, crop (refused when it drops energy or pads), unit sum; ``key``
    (cameras.<name>) names the config keys in errors. Hot pixels go before the corner estimate so
    a defect in a corner window (the DiffuserCam sample has one at (0,0)) cannot bias the
    background; the Hampel test is offset-invariant, so this equals subtracting first. With a dark frame the defects it shares are
    subtracted first. A frame whose energy is not concentrated above the noise
    (``optics.condition.psf_energy_concentration``) is refused: it holds no PSF.

    A PSF shipped with a release (``fmt``) is first put in that release's channel order and
    orientation, and cut to its sensor ``window``, exactly as its captures are
    (``thincam.data.layouts``), so the two stay on one grid.
    """
    path = Path(path)
    if background not in BACKGROUNDS:
        raise BadInputError(f"{path}: background must be one of {BACKGROUNDS}, got {background!r}")
    if int(downsample) != downsample or downsample < 1:
        raise BadInputError(f"{path}: downsample must be a positive integer, got {downsample!r}")
    downsample = int(downsample)
    image = read_psf_frame(path, bit_depth, key, fmt, window)
    info: dict[str, Any] = {"source": str(path), "raw_shape": list(image.shape)}
    info["n_saturated"] = count_saturated(image, path, max_saturated, key)
    image = _subtract_dark(image, path, dark_path, background, bit_depth, key, fmt, window, info)
    image, info["n_hot_pixels"] = remove_hot_pixels(image, hot_pixel_sigma)
    image = _subtract_corners(image, path, background, corner_fraction, info)
    concentration = psf_energy_concentration(image)
    info["energy_concentration"] = concentration
    if min(concentration) < MIN_SIGNAL_ENERGY:
        raise BadInputError(
            f"{path}: no PSF in this frame: only {min(concentration):.1%} of the energy above the "
            f"{background} background lies in pixels more than {SIGNAL_SIGMAS:g} noise sigmas above "
            f"it (a PSF puts at least {MIN_SIGNAL_ENERGY:.0%} there); it looks like sensor noise"
        )
    image = np.clip(image, 0.0, None)
    image = area_downsample(image, downsample)
    info["downsample"] = downsample

    if size is not None:
        image, centre, info["energy_kept"] = crop_psf(image, size, center, path, downsample, key)
        info["crop_centre"] = [float(centre[0]), float(centre[1])]
    sums = image.sum(axis=(1, 2))
    if not (sums > 0).all():
        raise BadInputError(f"{path}: the cropped/downsampled PSF holds no energy")
    psf = (image / sums[:, None, None]).astype(np.float32)
    if not np.isfinite(psf).all():
        raise BadInputError(f"{path}: PSF has NaN/inf after normalisation")
    info["shape"] = list(psf.shape)
    return psf, info
