"""Readers of real capture sets in any released layout of thincam.data.layouts.

A capture without a reference (ground truth) is a valid dataset: its files have no ``x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from thincam.data.images import area_downsample, load_image
from thincam.data.layouts import center_crop, demosaic_rggb, layout, release_view, sensor_window
from thincam.data.sources import resize_image
from thincam.errors import BadInputError

# Each corner window is 1/CORNER_DIVISOR of the frame side (the 'corner' background's windows).
CORNER_DIVISOR = 20
# MAD of a normal distribution times this is its standard deviation.
MAD_TO_STD = 1.4826
# How corner_noise_sigma estimates, as recorded in the dataset files.
NOISE_ESTIMATOR = "MAD of neighbour differences in the four corner windows (1/20 of each side), / sqrt(2)"


class PreparedCapture(NamedTuple):
    """A capture ready for the dataset file and its sensor-noise std, in the same units."""

    y: np.ndarray  # [C,Hs,Ws], max-normalised
    noise_sigma: float
    frame_shape: tuple[int, int]  # the frame's [H, W] before downsampling and crop


def corner_windows(image: np.ndarray) -> list[np.ndarray]:
    """The four corner windows [C,h/20,w/20] of a frame [C,H,W]: where a lensless capture is darkest."""
    h, w = image.shape[-2:]
    ch, cw = max(1, h // CORNER_DIVISOR), max(1, w // CORNER_DIVISOR)
    return [image[:, :ch, :cw], image[:, :ch, -cw:], image[:, -ch:, :cw], image[:, -ch:, -cw:]]


def corner_noise_sigma(image: np.ndarray) -> float:
    """Robust std of the sensor noise of a raw frame [C,H,W], from its four corner windows.

    The MAD (times 1.4826) of the differences between horizontally and vertically neighbouring
    pixels, divided by sqrt(2) (the difference of two independent noises has twice the variance),
    pooled over corners and channels; NaN when every window is one pixel (frames under 40 px on
    both sides). Differences cancel the smooth light that still reaches the corners of a lensless
    capture (the DiffuserCam hand's corner means differ by 5x), which a MAD of the pixel values
    themselves would count as noise; the median ignores hot pixels. The corners see read noise;
    the shot noise of the brighter pixels is not estimated.
    """
    differences = []
    for window in corner_windows(np.asarray(image, dtype=np.float64)):
        differences += [np.diff(window, axis=-1).ravel(), np.diff(window, axis=-2).ravel()]
    values = np.concatenate(differences)
    if values.size == 0:  # one-pixel corner windows: nothing to difference
        return float("nan")
    return float(MAD_TO_STD * np.median(np.abs(values - np.median(values))) / np.sqrt(2.0))


def read_release_frame(
    path: Path, fmt: str | None, *, bit_depth=None, bit_depth_key: str = "bit_depth", window=None
) -> np.ndarray:
    """One capture [C,H,W] as the release's own loader sees it: read, demosaicked when the
    release stores raw mosaics, in RGB order and upright, cut to the sensor ``window``."""
    spec = layout(fmt) if fmt is not None else None
    image = load_image(
        path, bit_depth=bit_depth, bit_depth_key=bit_depth_key, clip_negative=bool(spec and spec.clip_negative)
    )
    if spec is not None and spec.bayer:
        image = demosaic_rggb(image, path)
    return sensor_window(release_view(image, fmt), window, path)


def prepare_capture(
    path: Path,
    *,
    bit_depth,
    background: str,
    downsample: int,
    sensor_shape,
    channels: int,
    bit_depth_key: str = "bit_depth",
    crop=None,
    fmt: str | None = None,
    window=None,
) -> PreparedCapture:
    """Background-subtracted, area-downsampled, centre-cropped, max-normalised capture [C,Hs,Ws],
    and its corner-noise std (:func:`corner_noise_sigma` of the raw frame) in the same units.

    Area downsampling by d averages d^2 independent pixel noises, so the std falls by d.
    """
    image = read_release_frame(path, fmt, bit_depth=bit_depth, bit_depth_key=bit_depth_key, window=window)
    frame_shape = tuple(int(s) for s in image.shape[-2:])
    if image.shape[0] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=0)
    noise_sigma = corner_noise_sigma(image) / downsample
    if background == "corner":
        corners = np.concatenate(corner_windows(image), axis=-1)
        image = np.clip(image - corners.mean(axis=(-2, -1), keepdims=True), 0, None)
    image = area_downsample(image, downsample)
    if crop is not None:
        image = center_crop(image, crop)
    if tuple(image.shape[-2:]) != tuple(sensor_shape):
        raise BadInputError(
            f"{path}: capture is {tuple(image.shape[-2:])} after window {window}, downsampling by {downsample} "
            f"and crop {crop}, but the camera's sensor is {tuple(sensor_shape)}"
        )
    peak = image.max()
    if not peak > 0:
        raise BadInputError(f"{path}: capture is all zero after background subtraction")
    return PreparedCapture((image / peak).astype(np.float32), float(noise_sigma / peak), frame_shape)


def prepare_reference(
    path: Path, *, fmt: str | None, capture_frame: tuple[int, int], downsample: int, crop, image_shape
) -> np.ndarray:
    """A reference [3,H,W] in [0,1] on the reconstruction grid, seen as the release's loader sees it.

    A release whose reference and capture frames cover the same field of view at different
    resolutions (DMDiff: 512 px references, 400 px captures) has the reference resized onto the
    capture's frame first, then downsampled and cropped exactly like the capture: cropping each
    on its own grid would cover different parts of the scene. Otherwise the reference is cropped
    by ``crop`` when given (pixel-aligned pairs) and resized to ``image_shape``.
    """
    ref = release_view(load_image(path), fmt)
    ref = np.repeat(ref, 3, axis=0) if ref.shape[0] == 1 else ref[:3]
    if fmt is not None and layout(fmt).register_reference:
        ref = area_downsample(resize_image(ref, capture_frame), downsample)
    if crop is not None:
        ref = center_crop(ref, crop)
    if tuple(ref.shape[-2:]) != tuple(image_shape):
        ref = resize_image(ref, image_shape)
    return ref.clip(0, 1).astype(np.float32)
