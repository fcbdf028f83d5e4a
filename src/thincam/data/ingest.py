"""Readers of real capture sets in any released layout of thincam.data.layouts.

A capture without a reference (ground truth) is a valid dataset: its files have no ``x``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from thincam.data.layouts import center_crop, orient
from thincam.errors import BadInputError

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
) -> np.ndarray:
    """Background-subtracted, area-downsampled, centre-cropped, max-normalised RGB capture [C,Hs,Ws]."""
    from skimage.measure import block_reduce

    from thincam.optics.capture import load_image

    image = load_image(path, bit_depth=bit_depth, bit_depth_key=bit_depth_key)
    if fmt is not None:
        image = orient(image, fmt)
    if image.shape[0] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=0)
    if background == "corner":
        h, w = image.shape[-2:]
        ch, cw = max(1, h // 20), max(1, w // 20)
        corners = np.concatenate(
            [image[:, :ch, :cw], image[:, :ch, -cw:], image[:, -ch:, :cw], image[:, -ch:, -cw:]],
            axis=-1,
        )
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
    return (image / peak).astype(np.float32)
