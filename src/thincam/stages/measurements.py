"""The measurement rules: simulated datasets and ingested real captures, one HDF5 file per split."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.data.ingest import prepare_capture
from thincam.data.layouts import center_crop, find_pairs, orient
from thincam.data.simulate import check_finite, operator_spec, stable_seed
from thincam.data.sources import resize_image
from thincam.data.splits import split_indices
from thincam.optics.capture import load_image
from thincam.registry import SPLITS
from thincam.stages.common import load_operator


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
    from thincam.logs import progress

    from thincam.data.sources import load_source
    from thincam.physics.noise import sensor_noise

    image_shape = tuple(dataset["image_size"])
    images = load_source(dataset["source"], image_shape, seed=stable_seed(seed, name, "source"))
    check_finite(images, f"image source of dataset {name!r}")
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    psf_shape = tuple(psf_arrays["psf"].shape[-2:])
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    physics = load_operator(psf_path, spec)
    noise = dict(dataset["noise"])
    splits = split_indices(
        len(images), dataset["splits"], stable_seed(seed, name, "splits"), key=f"datasets.{name}.splits"
    )
    for split in SPLITS:
        index = splits[split]
        generator = torch.Generator().manual_seed(stable_seed(seed, name, split, "noise"))
        measurements = []
        for start in progress(range(0, len(index), batch_size), f"simulate {name}/{split}"):
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


def ingest_captures(
    psf_path: str, dataset: Mapping[str, Any], name: str, out_paths: Mapping[str, str], seed: int
) -> None:
    """Write the configured splits of a real capture set; references become ``x`` when present."""
    captures = dataset["captures"]
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    psf_shape = tuple(psf_arrays["psf"].shape[-2:])
    image_shape = tuple(dataset.get("image_size") or psf_shape)
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    pairs = find_pairs(captures["format"], captures["path"])
    splits = split_indices(
        len(pairs), dataset["splits"], stable_seed(seed, name, "splits"), key=f"datasets.{name}.splits"
    )
    # Only the captures some split uses are read: a release (Mirflickr: 25 000 pairs) can exceed memory.
    used = np.unique(np.concatenate([splits[split] for split in SPLITS]))
    position = {int(i): k for k, i in enumerate(used)}
    y, x = [], []
    for measurement, reference in (pairs[i] for i in used):
        capture = prepare_capture(
            measurement,
            bit_depth=captures.get("bit_depth"),
            background=captures.get("background", "corner"),
            downsample=captures.get("downsample", 1),
            sensor_shape=spec["sensor_shape"],
            channels=psf_arrays["psf"].shape[0],
            bit_depth_key=f"datasets.{name}.captures.bit_depth",
            crop=captures.get("crop"),
            fmt=captures["format"],
        )
        check_finite(capture, str(measurement))
        y.append(capture)
        if reference is not None:
            ref = orient(load_image(reference), captures["format"])
            if captures.get("crop") is not None and captures.get("crop_references", False):
                ref = center_crop(ref, captures["crop"])
            ref = np.repeat(ref, 3, axis=0) if ref.shape[0] == 1 else ref[:3]
            x.append(resize_image(ref, image_shape).clip(0, 1).astype(np.float32))
    y_all = np.stack(y)
    x_all = np.stack(x) if x else None
    for split in SPLITS:
        index = splits[split]
        rows = [position[int(i)] for i in index]
        arrays = {"y": y_all[rows], "index": index}
        if x_all is not None:
            arrays["x"] = x_all[rows]
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
