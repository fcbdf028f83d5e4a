"""Linear forward models of thin cameras and their noise."""

from __future__ import annotations

from typing import Any, Mapping


def build_operator(psf_path: str, operator: Mapping[str, Any], device: str = "cpu"):
    """The forward model of a dataset, from its calibrated PSF file and operator parameters.

    ``operator`` is the dict stored in the dataset's attrs: kind ("lensless" | "metalens"),
    scene_shape, sensor_shape, boundary, pinv_lam, pinv_iters.
    """
    import torch

    from thincam.data.h5io import read_h5
    from thincam.physics.operators import LenslessConvolution, ProductConvolution

    kind = operator["kind"]
    if kind == "lensless":
        arrays, _ = read_h5(psf_path, names=["psf"], contract="psf")
        physics = LenslessConvolution(
            torch.from_numpy(arrays["psf"]),
            scene_shape=tuple(operator["scene_shape"]),
            sensor_shape=tuple(operator["sensor_shape"]),
            boundary=operator.get("boundary", "linear"),
            pinv_lam=operator["pinv_lam"],
            pinv_iters=operator.get("pinv_iters", 50),
        )
    elif kind == "metalens":
        arrays, _ = read_h5(psf_path, names=["psf_grid"], contract="psf")
        physics = ProductConvolution(
            torch.from_numpy(arrays["psf_grid"]),
            image_shape=tuple(operator["scene_shape"]),
            pinv_lam=operator["pinv_lam"],
            pinv_iters=operator.get("pinv_iters", 50),
        )
    else:
        raise ValueError(f"operator kind must be 'lensless' or 'metalens', got {kind!r}")
    return physics.to(device)
