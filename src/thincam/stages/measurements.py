"""The measurement rules: simulated datasets and ingested real captures, one HDF5 file per split."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, json_attr, read_h5
from thincam.data.ingest import NOISE_ESTIMATOR, prepare_capture
from thincam.data.layouts import center_crop, find_pairs, orient
from thincam.data.simulate import check_finite, operator_spec, stable_seed
from thincam.data.sources import resize_image, to_channels
from thincam.data.splits import split_indices
from thincam.errors import BadInputError
from thincam.optics.capture import load_image
from thincam.registry import SPLITS
from thincam.stages.common import load_operator

log = logging.getLogger(__name__)

# ``captures.normalise: anchor`` puts this percentile of A+y at 1: the [0, 1] scale of the scenes
# a prior is trained on (the 99.5th, not the maximum, so a few ringing pixels do not set it).
ANCHOR_PERCENTILE = 99.5
NOISE_KEYS = ("poisson_gain", "gaussian_sigma", "bit_depth")


def resolve_noise(noise: Mapping[str, Any], capture_path: str | None, name: str) -> dict[str, Any]:
    """The dataset's noise settings, with ``gaussian_sigma_from`` replaced by the sigma estimated
    from that capture dataset's dark corners (its file's ``noise`` attribute)."""
    noise = dict(noise)
    source = noise.pop("gaussian_sigma_from", None)
    if source is None:
        return noise
    if capture_path is None:
        raise BadInputError(f"datasets.{name}.noise.gaussian_sigma_from: no capture file given for {source!r}")
    _, attrs = read_h5(capture_path, names=[], contract="dataset")
    estimate = json_attr(attrs, "noise").get("gaussian_sigma_estimate")
    if estimate is None:
        raise BadInputError(
            f"{capture_path}: no gaussian_sigma_estimate in its noise attribute (captures under "
            "40 px on both sides have one-pixel corner windows, nothing to estimate from)"
        )
    log.info(
        "%s: Gaussian noise sigma %.4g, estimated from the dark corners of %s (%s)",
        name, estimate, capture_path, NOISE_ESTIMATOR,
    )  # fmt: skip
    return {**noise, "gaussian_sigma": float(estimate), "gaussian_sigma_from": {"dataset": source, "file": str(capture_path)}}


def simulate_measurements(
    psf_path: str,
    dataset: Mapping[str, Any],
    name: str,
    out_paths: Mapping[str, str],
    seed: int,
    batch_size: int = 64,
    noise_capture_path: str | None = None,
) -> None:
    """Write one HDF5 file per split: ``x`` clean (in the camera's channels: gray for a
    monochrome PSF), ``y`` = noisy quantised A x, ``index``.

    ``noise_capture_path``: the capture dataset file whose corner-noise estimate sets
    ``gaussian_sigma`` (``noise.gaussian_sigma_from``).
    """
    import torch
    from thincam.logs import progress

    from thincam.data.sources import load_source
    from thincam.physics.noise import sensor_noise

    image_shape = tuple(dataset["image_size"])
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    channels, psf_shape = psf_arrays["psf"].shape[0], tuple(psf_arrays["psf"].shape[-2:])
    images = load_source(dataset["source"], image_shape, seed=stable_seed(seed, name, "source"))
    images = to_channels(images, channels)
    check_finite(images, f"image source of dataset {name!r}")
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    physics = load_operator(psf_path, spec)
    noise = resolve_noise(dataset["noise"], noise_capture_path, name)
    sensor = {key: noise[key] for key in NOISE_KEYS}
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
            measurements.append(sensor_noise(clean, generator=generator, **sensor).numpy())
        y = (
            np.concatenate(measurements)
            if measurements
            else np.zeros((0, channels, *spec["sensor_shape"]), np.float32)
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
    """Write the configured splits of a real capture set; references become ``x`` when present.

    Each capture is max-normalised, and with ``captures.normalise: anchor`` rescaled so that
    the :data:`ANCHOR_PERCENTILE` of its A+y is 1 (a capture's exposure is arbitrary, a prior's
    scenes lie in [0, 1]). The median of the captures' corner-noise estimates, in the same
    units, is stored in the ``noise`` attribute (``gaussian_sigma_estimate``).
    """
    captures = dataset["captures"]
    normalise = captures.get("normalise", "peak")
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
    physics = load_operator(psf_path, spec) if normalise == "anchor" else None
    y, x, sigmas = [], [], []
    for measurement, reference in (pairs[i] for i in used):
        capture, sigma = prepare_capture(
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
        if physics is not None:
            scale = anchor_scale(physics, capture)
            if not scale > 0:
                raise BadInputError(f"{measurement}: A+y has no positive values to normalise by")
            capture, sigma = capture / scale, sigma / scale
        y.append(capture)
        sigmas.append(sigma)
        if reference is not None:
            ref = orient(load_image(reference), captures["format"])
            if captures.get("crop") is not None and captures.get("crop_references", False):
                ref = center_crop(ref, captures["crop"])
            ref = np.repeat(ref, 3, axis=0) if ref.shape[0] == 1 else ref[:3]
            x.append(resize_image(ref, image_shape).clip(0, 1).astype(np.float32))
    y_all = np.stack(y)
    x_all = np.stack(x) if x else None
    estimate = float(np.median(sigmas))
    noise = {
        "kind": "real",
        "gaussian_sigma_estimate": estimate if np.isfinite(estimate) else None,
        "estimator": NOISE_ESTIMATOR,
        "n_captures": len(sigmas),
    }
    log.info(
        "%s: sensor noise sigma %.4g (median over %d captures; %s)",
        name, estimate, len(sigmas), NOISE_ESTIMATOR,
    )  # fmt: skip
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
                "noise": noise,
                "normalise": normalise,
                "seed": seed,
                "source": [str(m) for m, _ in pairs],
            },
            contract="dataset",
        )


def anchor_scale(physics, capture: np.ndarray) -> float:
    """The :data:`ANCHOR_PERCENTILE` of A+y for one capture [C,Hs,Ws]."""
    import torch

    with torch.no_grad():
        anchor = physics.A_dagger(torch.from_numpy(capture[None]))
    return float(np.percentile(anchor.numpy(), ANCHOR_PERCENTILE))
