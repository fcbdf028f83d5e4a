"""Readers of real capture sets: DiffuserCam, PhlatCam-style folders, generic pairs.

A capture without a reference (ground truth) is a valid dataset: its files have no ``x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thincam.data.sources import IMAGE_SUFFIXES
from thincam.errors import BadInputError

# Folder names of each layout: (measurement folders, reference folders); first match wins.
LAYOUTS = {
    "diffusercam": (("diffuser_images", "diffuser"), ("ground_truth_lensed", "lensed")),
    "phlatcam": (("captures", "measurements"), ("references", "displayed")),
    "pairs": (("measurements",), ("references",)),
}


def _files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def find_pairs(fmt: str, path: str) -> list[tuple[Path, Path | None]]:
    """(measurement, reference or None) per capture, matched by file stem."""
    root = Path(path)
    if fmt not in LAYOUTS:
        raise BadInputError(f"unknown capture format {fmt!r}; expected one of {sorted(LAYOUTS)}")
    if root.is_file():
        return [(root, None)]
    if not root.is_dir():
        raise BadInputError(f"{root}: capture path does not exist")
    measurement_names, reference_names = LAYOUTS[fmt]
    measurement_dir = next((root / n for n in measurement_names if (root / n).is_dir()), None)
    if measurement_dir is None:
        raise BadInputError(f"{root}: no measurement folder (expected one of {measurement_names})")
    reference_dir = next((root / n for n in reference_names if (root / n).is_dir()), None)
    measurements = _files(measurement_dir)
    if not measurements:
        raise BadInputError(f"{measurement_dir}: no capture files")
    references = _files(reference_dir) if reference_dir else {}
    if reference_dir is not None and not references:
        # An empty or unreadable references/ folder would silently make a dataset without ground truth.
        raise BadInputError(
            f"{reference_dir}: reference folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "remove it for a dataset without ground truth"
        )
    if references and set(references) != set(measurements):
        missing = sorted(set(measurements) ^ set(references))[:5]
        raise BadInputError(f"{root}: measurements and references do not pair up (e.g. {missing})")
    return [(measurements[stem], references.get(stem)) for stem in measurements]


def prepare_capture(
    path: Path,
    *,
    bit_depth,
    background: str,
    downsample: int,
    sensor_shape,
    channels: int,
    bit_depth_key: str = "bit_depth",
) -> np.ndarray:
    """Background-subtracted, area-downsampled, max-normalised capture [C,Hs,Ws]."""
    from skimage.measure import block_reduce

    from thincam.optics.capture import load_image

    image = load_image(path, bit_depth=bit_depth, bit_depth_key=bit_depth_key)
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
    if tuple(image.shape[-2:]) != tuple(sensor_shape):
        raise BadInputError(
            f"{path}: capture is {tuple(image.shape[-2:])} after downsampling by {downsample}, "
            f"but the camera's sensor is {tuple(sensor_shape)}"
        )
    peak = image.max()
    if not peak > 0:
        raise BadInputError(f"{path}: capture is all zero after background subtraction")
    return (image / peak).astype(np.float32)
