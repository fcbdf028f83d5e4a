"""Pieces of simulated and ingested datasets: stable seeds, the stored operator, finiteness."""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

import numpy as np

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
