"""Real captures into the dataset HDF5 layout: DiffuserCam, PhlatCam-style folders, generic pairs.

A capture without a reference (ground truth) is a valid dataset: its files have no ``x``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.data.simulate import check_finite, operator_spec, stable_seed
from thincam.data.sources import IMAGE_SUFFIXES
from thincam.data.splits import SPLITS, split_indices
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
    if references and set(references) != set(measurements):
        missing = sorted(set(measurements) ^ set(references))[:5]
        raise BadInputError(f"{root}: measurements and references do not pair up (e.g. {missing})")
    return [(measurements[stem], references.get(stem)) for stem in measurements]


def prepare_capture(
    path: Path, *, bit_depth, background: str, downsample: int, sensor_shape, channels: int
) -> np.ndarray:
    """Background-subtracted, area-downsampled, max-normalised capture [C,Hs,Ws]."""
    from skimage.measure import block_reduce

    from thincam.optics.capture import load_image

    image = load_image(path, bit_depth=bit_depth)
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


def ingest_captures(
    psf_path: str, dataset: Mapping[str, Any], name: str, out_paths: Mapping[str, str], seed: int
) -> None:
    """Write the configured splits of a real capture set; references become ``x`` when present."""
    from thincam.data.sources import resize_image
    from thincam.optics.capture import load_image

    captures = dataset["captures"]
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    psf_shape = tuple(psf_arrays["psf"].shape[-2:])
    image_shape = tuple(dataset.get("image_size") or psf_shape)
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    pairs = find_pairs(captures["format"], captures["path"])
    y, x = [], []
    for measurement, reference in pairs:
        capture = prepare_capture(
            measurement,
            bit_depth=captures.get("bit_depth"),
            background=captures.get("background", "corner"),
            downsample=captures.get("downsample", 1),
            sensor_shape=spec["sensor_shape"],
            channels=psf_arrays["psf"].shape[0],
        )
        check_finite(capture, str(measurement))
        y.append(capture)
        if reference is not None:
            ref = load_image(reference)
            ref = np.repeat(ref, 3, axis=0) if ref.shape[0] == 1 else ref[:3]
            x.append(resize_image(ref, image_shape).clip(0, 1).astype(np.float32))
    y_all = np.stack(y)
    x_all = np.stack(x) if x else None
    sizes = dataset["splits"]
    splits = split_indices(len(y_all), sizes, stable_seed(seed, name, "splits"))
    for split in SPLITS:
        index = splits[split]
        arrays = {"y": y_all[index], "index": index}
        if x_all is not None:
            arrays["x"] = x_all[index]
        atomic_write_h5(
            out_paths[split],
            arrays,
            attrs={
                "dataset": name,
                "camera": dataset["camera"],
                "split": split,
                "operator": spec,
                "noise": {"kind": "real"},
                "seed": seed,
                "source": [str(m) for m, _ in pairs],
            },
            contract="dataset",
        )
