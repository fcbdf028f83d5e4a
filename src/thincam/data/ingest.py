"""Readers of real capture sets in any released layout of thincam.data.layouts.

A capture without a reference (ground truth) is a valid dataset: its files have no ``x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from thincam.data.layouts import center_crop, orient
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
) -> PreparedCapture:
    """Background-subtracted, area-downsampled, centre-cropped, max-normalised capture [C,Hs,Ws],
    and its corner-noise std (:func:`corner_noise_sigma` of the raw frame) in the same units.

    Area downsampling by d averages d^2 independent pixel noises, so the std falls by d.
    """
    from skimage.measure import block_reduce

    from thincam.optics.capture import load_image

    image = load_image(path, bit_depth=bit_depth, bit_depth_key=bit_depth_key)
    if fmt is not None:
        image = orient(image, fmt)
    if image.shape[0] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=0)
    noise_sigma = corner_noise_sigma(image) / downsample
    if background == "corner":
        corners = np.concatenate(corner_windows(image), axis=-1)
        image = np.clip(image - corners.mean(axis=(-2, -1), keepdims=True), 0, None)
    if downsample > 1:
        h, w = (s - s % downsample for s in image.shape[-2:])
        image = block_reduce(image[:, :h, :w], (1, downsample, downsample), np.mean)
    if crop is not None:
        image = center_crop(image, crop)
    if tuple(image.shape[-2:]) != tuple(sensor_shape):
        raise BadInputError(
            f"{path}: capture is {tuple(image.shape[-2:])} after downsampling by {downsample} and crop {crop}, "
            f"but the camera's sensor is {tuple(sensor_shape)}"
        )
    peak = image.max()
    if not peak > 0:
        raise BadInputError(f"{path}: capture is all zero after background subtraction")
    return PreparedCapture((image / peak).astype(np.float32), float(noise_sigma / peak))
