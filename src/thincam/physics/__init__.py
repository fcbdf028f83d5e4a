"""Linear forward models of thin cameras and their noise."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def build_operator(psf: np.ndarray, operator: Mapping[str, Any], device: str = "cpu"):
    """The forward model of a dataset from its PSF array and operator parameters.

    ``psf`` is ``psf`` [C,H,W] for kind "lensless" and ``psf_grid`` [gy,gx,C,h,w] for kind
    "metalens"; ``operator`` is the dict stored in the dataset's attrs: kind, scene_shape,
    sensor_shape, boundary, and ``pinv`` (see ``operators.PseudoInverse``).
    """
    import torch

    from thincam.physics.operators import LenslessConvolution, ProductConvolution

    kind = operator["kind"]
    if kind == "lensless":
        physics = LenslessConvolution(
            torch.from_numpy(np.asarray(psf)),
            scene_shape=tuple(operator["scene_shape"]),
            sensor_shape=tuple(operator["sensor_shape"]),
            boundary=operator.get("boundary", "linear"),
            pinv=operator["pinv"],
        )
    elif kind == "metalens":
        physics = ProductConvolution(
            torch.from_numpy(np.asarray(psf)),
            image_shape=tuple(operator["scene_shape"]),
            pinv=operator["pinv"],
        )
    else:
        raise ValueError(f"operator kind must be 'lensless' or 'metalens', got {kind!r}")
    return physics.to(device)


# The PSF file dataset each operator kind is built from.
PSF_DATASET = {"lensless": "psf", "metalens": "psf_grid"}
