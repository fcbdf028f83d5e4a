"""Full-reference fidelity and measurement consistency, per image, on numpy arrays.

Kept free of torch (and skimage until SSIM is asked for) so figure jobs can use them cheaply.
"""

from __future__ import annotations

import numpy as np

from thincam.errors import BadInputError
from thincam.registry import SCALINGS


def _check_pair(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if x.shape != ref.shape or x.ndim != 4:
        raise BadInputError(
            f"expected two [N,C,H,W] arrays of equal shape, got {x.shape} and {ref.shape}"
        )
    return x, ref


def scale_per_image(images: np.ndarray, scaling: str) -> np.ndarray:
    """``images`` [N,C,H,W] scaled by ``scaling`` (:data:`thincam.registry.SCALINGS`): "none", or
    "max", divided by its own maximum as LenslessPiCam's benchmark does to reconstruction and
    reference alike (LCAV/LenslessPiCam, lensless/eval/benchmark.py), which forgives a
    reconstruction's global gain. An image whose maximum is not positive is left as it is, since
    dividing by it would flip or blow it up."""
    if scaling == "none":
        return images
    if scaling != "max":
        raise BadInputError(f"per-image scaling {scaling!r} is not one of {list(SCALINGS)}")
    peak = images.max(axis=(1, 2, 3), keepdims=True)
    return np.where(peak > 0, images / np.where(peak > 0, peak, 1), images).astype(images.dtype)


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """PSNR in dB of each image in ``x`` [N,C,H,W] against ``ref``; inf where they are equal."""
    x, ref = _check_pair(x, ref)
    mse = np.mean((x - ref) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """SSIM of each image, with Wang et al.'s Gaussian window (sigma 1.5) as most papers report it."""
    from skimage.metrics import (
        structural_similarity,  # scipy.ndimage: 0.4 s figure jobs skip
    )

    x, ref = _check_pair(x, ref)
    return np.array(
        [
            structural_similarity(
                a,
                b,
                channel_axis=0,
                data_range=data_range,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
            for a, b in zip(x, ref)
        ]
    )


def consistency(a_xhat: np.ndarray, y: np.ndarray) -> np.ndarray:
    """||A xhat - y|| / ||y|| per image: how well a reconstruction explains its own measurement."""
    a_xhat = np.asarray(a_xhat, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if a_xhat.shape != y.shape:
        raise BadInputError(f"A(xhat) has shape {a_xhat.shape} but the measurement y has {y.shape}")
    n = y.shape[0]
    norm_y = np.linalg.norm(y.reshape(n, -1), axis=1)
    if np.any(norm_y == 0):
        raise BadInputError(f"measurement(s) {np.flatnonzero(norm_y == 0).tolist()} are all zero")
    return np.linalg.norm((a_xhat - y).reshape(n, -1), axis=1) / norm_y
