"""Simulated measurements: clean images through a calibrated camera model plus sensor noise."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.data.splits import SPLITS, split_indices
from thincam.errors import BadInputError


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any printable parts; stable across processes (unlike hash())."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def operator_spec(operator: Mapping[str, Any], psf_shape: tuple[int, int], image_shape) -> dict:
    """The full operator description stored with a dataset, sizes resolved from the PSF."""
    spec = dict(operator)
    spec["scene_shape"] = list(image_shape)
    if spec["kind"] == "lensless":
        spec.setdefault("sensor_shape", list(psf_shape))
    else:
        spec["sensor_shape"] = list(image_shape)
    return spec


def check_finite(array: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(array)):
        raise BadInputError(f"{what}: contains NaN or inf")


def simulate_measurements(
    psf_path: str,
    dataset: Mapping[str, Any],
    name: str,
    out_paths: Mapping[str, str],
    seed: int,
    batch_size: int = 64,
) -> None:
    """Write one HDF5 file per split: ``x`` clean, ``y`` = noisy quantised A x, ``index``."""
    import torch
    from tqdm import tqdm

    from thincam.data.sources import load_source
    from thincam.physics import build_operator
    from thincam.physics.noise import sensor_noise

    image_shape = tuple(dataset["image_size"])
    images = load_source(dataset["source"], image_shape, seed=stable_seed(seed, name, "source"))
    check_finite(images, f"image source of dataset {name!r}")
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    psf_shape = tuple(psf_arrays["psf"].shape[-2:])
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    physics = build_operator(psf_path, spec)
    noise = dict(dataset["noise"])
    splits = split_indices(len(images), dataset["splits"], stable_seed(seed, name, "splits"))
    for split in SPLITS:
        index = splits[split]
        generator = torch.Generator().manual_seed(stable_seed(seed, name, split, "noise"))
        measurements = []
        for start in tqdm(range(0, len(index), batch_size), desc=f"simulate {name}/{split}"):
            x = torch.from_numpy(images[index[start : start + batch_size]])
            with torch.no_grad():
                clean = physics.A(x)
            measurements.append(sensor_noise(clean, generator=generator, **noise).numpy())
        y = (
            np.concatenate(measurements)
            if measurements
            else np.zeros((0, 3, *spec["sensor_shape"]), np.float32)
        )
        atomic_write_h5(
            out_paths[split],
            {"x": images[index], "y": y.astype(np.float32), "index": index},
            attrs={
                "dataset": name,
                "camera": dataset["camera"],
                "split": split,
                "operator": spec,
                "noise": noise,
                "seed": seed,
                "source": dict(dataset["source"]),
            },
            contract="dataset",
        )
