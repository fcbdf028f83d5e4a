"""The measurement rules: simulated datasets and ingested real captures, one HDF5 file per split."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import json_attr, read_h5, streaming_h5
from thincam.data.ingest import NOISE_ESTIMATOR, prepare_capture, prepare_reference
from thincam.data.layouts import find_pairs, layout, published_split
from thincam.data.simulate import check_finite, operator_spec, stable_seed
from thincam.data.sources import to_channels
from thincam.data.splits import split_from_published, split_indices
from thincam.errors import BadInputError
from thincam.registry import SPLITS
from thincam.stages.common import load_operator

log = logging.getLogger(__name__)

# ``captures.normalise: anchor`` puts this percentile of A+y at 1: the [0, 1] scale of the scenes
# a prior is trained on (the 99.5th, not the maximum, so a few ringing pixels do not set it).
ANCHOR_PERCENTILE = 99.5
NOISE_KEYS = ("poisson_gain", "gaussian_sigma", "bit_depth")
# A source path per image: UTF-8, up to 255 bytes (a release's relative paths are far shorter).
SOURCE_DTYPE = np.dtype("S255")


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
    ``gaussian_sigma`` (``noise.gaussian_sigma_from``). Images are read, simulated and written
    ``batch_size`` at a time: a folder source (FFHQ) need not fit in memory.
    """
    import torch
    from thincam.logs import progress

    from thincam.data.sources import load_source
    from thincam.physics.noise import sensor_noise

    image_shape = tuple(dataset["image_size"])
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    channels, psf_shape = psf_arrays["psf"].shape[0], tuple(psf_arrays["psf"].shape[-2:])
    images = load_source(dataset["source"], image_shape, seed=stable_seed(seed, name, "source"))
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    physics = load_operator(psf_path, spec)
    noise = resolve_noise(dataset["noise"], noise_capture_path, name)
    sensor = {key: noise[key] for key in NOISE_KEYS}
    splits = split_indices(
        len(images), dataset["splits"], stable_seed(seed, name, "splits"), key=f"datasets.{name}.splits"
    )
    with contextlib.ExitStack() as stack:  # all three files land, or none
        for split in SPLITS:
            index = splits[split]
            generator = torch.Generator().manual_seed(stable_seed(seed, name, split, "noise"))
            shapes = {
                "x": ((len(index), channels, *image_shape), np.float32),
                "y": ((len(index), channels, *spec["sensor_shape"]), np.float32),
                "index": ((len(index),), np.int64),
            }
            writers, attrs = stack.enter_context(streaming_h5(out_paths[split], shapes, contract="dataset"))
            for start in progress(range(0, len(index), batch_size), f"simulate {name}/{split}"):
                chunk = index[start : start + batch_size]
                clean = to_channels(images[chunk], channels)
                check_finite(clean, f"image source of dataset {name!r}")
                with torch.no_grad():
                    measured = physics.A(torch.from_numpy(clean))
                writers["x"].append(clean)
                writers["y"].append(sensor_noise(measured, generator=generator, **sensor).numpy())
                writers["index"].append(chunk)
            attrs.update(
                dataset=name,
                camera=dataset["camera"],
                split=split,
                operator=spec,
                noise=noise,
                seed=seed,
                source=dict(dataset["source"]),
            )


def assign_splits(captures: Mapping[str, Any], sizes: Mapping[str, int], seed: int, name: str):
    """(pairs per configured split, how they were chosen, every pair of the release in its order):
    the release's published split where it has one (test from its test part; val and train from
    its training part), else a seeded draw. The release is listed once."""
    fmt, key = captures["format"], f"datasets.{name}.splits"
    published = published_split(fmt, captures["path"])
    if published is None:
        pairs = find_pairs(fmt, captures["path"])
        chosen = split_indices(len(pairs), sizes, seed, key=key)
        how = {"kind": "seeded random draw over all captures", "n_captures": len(pairs)}
        return {split: [pairs[i] for i in chosen[split]] for split in SPLITS}, how, pairs
    assigned, available = split_from_published(published, sizes, seed, key=key, real=lambda pair: not pair.pseudo)
    n_pseudo = sum(pair.pseudo for pair in published["train"])
    excluded = sum(pair.pseudo for pair in published["test"])
    if excluded:
        log.warning("%s: %d pseudo captures in the published test split are never tested on", name, excluded)
        assigned["test"] = [pair for pair in assigned["test"] if not pair.pseudo]
    how = {
        "kind": f"published {fmt} split (test from its test part; val and train from its training part)",
        "published_sizes": {**available, **({"train_pseudo": n_pseudo} if n_pseudo else {})},
        "subset": {
            split: len(assigned[split]) < available["test" if split == "test" else "train"] for split in SPLITS
        },
    }
    return assigned, how, published["train"] + published["test"]  # find_pairs' order


def ingest_captures(
    psf_path: str, dataset: Mapping[str, Any], name: str, out_paths: Mapping[str, str], seed: int
) -> None:
    """Write the configured splits of a real capture set; references become ``x`` when present.

    Each capture is read as its release's loader reads it (``thincam.data.layouts``), then
    max-normalised, and with ``captures.normalise: anchor`` rescaled so that the
    :data:`ANCHOR_PERCENTILE` of its A+y is 1 (a capture's exposure is arbitrary, a prior's
    scenes lie in [0, 1]). The median of the captures' corner-noise estimates, in the same
    units, is stored in the ``noise`` attribute (``gaussian_sigma_estimate``). Per image the file
    records its source files (``source``, ``reference_source``: paths relative to the release
    root) and, for a release with pseudo captures, ``pseudo``. The files are streamed one image at a
    time: a release (Mirflickr: 25 000 pairs, 39 GB as float32) need not fit in memory.
    """
    from thincam.logs import progress

    captures = dataset["captures"]
    fmt = captures["format"]
    normalise = captures.get("normalise", "peak")
    psf_arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
    channels, psf_shape = psf_arrays["psf"].shape[0], tuple(psf_arrays["psf"].shape[-2:])
    image_shape = tuple(dataset.get("image_size") or psf_shape)
    spec = operator_spec(dataset["operator"], psf_shape, image_shape)
    assigned, how, release = assign_splits(captures, dataset["splits"], stable_seed(seed, name, "splits"), name)
    everything = [pair for split in SPLITS for pair in assigned[split]]
    has_x = any(pair.reference is not None for pair in everything)
    has_pseudo = any(pair.pseudo for pair in everything)
    index_of = {pair.source: i for i, pair in enumerate(release)}
    register = layout(fmt).register_reference
    reference_crop = captures.get("crop") if (register or captures.get("crop_references", False)) else None
    physics = load_operator(psf_path, spec) if normalise == "anchor" else None
    sigmas: list[float] = []

    def prepared(pair):
        capture = prepare_capture(
            pair.measurement,
            bit_depth=captures.get("bit_depth"),
            background=captures.get("background", "corner"),
            downsample=captures.get("downsample", 1),
            sensor_shape=spec["sensor_shape"],
            channels=channels,
            bit_depth_key=f"datasets.{name}.captures.bit_depth",
            crop=captures.get("crop"),
            fmt=fmt,
            window=captures.get("window"),
        )
        y, sigma = capture.y, capture.noise_sigma
        check_finite(y, str(pair.measurement))
        if physics is not None:
            scale = anchor_scale(physics, y)
            if not scale > 0:
                raise BadInputError(f"{pair.measurement}: A+y has no positive values to normalise by")
            y, sigma = y / scale, sigma / scale
        sigmas.append(sigma)
        x = None
        if pair.reference is not None:
            x = prepare_reference(
                pair.reference,
                fmt=fmt,
                capture_frame=capture.frame_shape,
                downsample=captures.get("downsample", 1),
                crop=reference_crop,
                image_shape=image_shape,
            )
        return y, x

    def shapes(n: int) -> dict[str, tuple]:
        out = {
            "y": ((n, channels, *spec["sensor_shape"]), np.float32),
            "index": ((n,), np.int64),
            "source": ((n,), SOURCE_DTYPE),
        }
        if has_x:
            out["x"] = ((n, 3, *image_shape), np.float32)
            out["reference_source"] = ((n,), SOURCE_DTYPE)
        if has_pseudo:
            out["pseudo"] = ((n,), np.bool_)
        return out

    with contextlib.ExitStack() as stack:
        files = {
            split: stack.enter_context(streaming_h5(out_paths[split], shapes(len(assigned[split])), contract="dataset"))
            for split in SPLITS
        }
        bar = progress(total=len(everything), desc=f"ingest {name}")
        for split in SPLITS:
            writers, _ = files[split]
            for pair in assigned[split]:  # one image at a time: memory stays flat with the release's size
                y, x = prepared(pair)
                writers["y"].append(y[None])
                writers["index"].append(np.array([index_of[pair.source]], np.int64))
                writers["source"].append(_encode([pair.source]))
                if has_x:
                    writers["x"].append(x[None])
                    writers["reference_source"].append(_encode([pair.reference_source]))
                if has_pseudo:
                    writers["pseudo"].append(np.array([pair.pseudo]))
                bar.update(1)
        bar.close()
        estimate = float(np.median(sigmas)) if sigmas else float("nan")
        noise = {
            "kind": "real",
            "gaussian_sigma_estimate": estimate if np.isfinite(estimate) else None,
            "estimator": NOISE_ESTIMATOR,
            "n_captures": len(sigmas),
        }
        log.info(
            "%s: sensor noise sigma %.4g (median over %d captures; %s); splits: %s",
            name, estimate, len(sigmas), NOISE_ESTIMATOR, json.dumps(how),
        )  # fmt: skip
        for split in SPLITS:
            files[split][1].update(
                dataset=name,
                camera=dataset["camera"],
                split=split,
                operator=spec,
                noise=noise,
                normalise=normalise,
                seed=seed,
                release_root=str(captures["path"]),
                split_source=how,
            )


def _encode(paths: list[str]) -> np.ndarray:
    """Relative paths as UTF-8 bytes (HDF5 stores fixed-length bytes; read them with ``decode``)."""
    encoded = [p.encode() for p in paths]
    too_long = [p for p, e in zip(paths, encoded) if len(e) > SOURCE_DTYPE.itemsize]
    if too_long:
        raise BadInputError(f"{too_long[0]}: source path longer than {SOURCE_DTYPE.itemsize} bytes")
    return np.array(encoded, dtype=SOURCE_DTYPE)


def anchor_scale(physics, capture: np.ndarray) -> float:
    """The :data:`ANCHOR_PERCENTILE` of A+y for one capture [C,Hs,Ws]."""
    import torch

    with torch.no_grad():
        anchor = physics.A_dagger(torch.from_numpy(capture[None]))
    return float(np.percentile(anchor.numpy(), ANCHOR_PERCENTILE))
