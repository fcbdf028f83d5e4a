"""DeepInverse's DDRM (``deepinv.sampling.DDRM``, Kawar et al. 2022) on a thincam camera with the
shared prior: method ``ddrm``.

DDRM diffuses in the operator's spectral space, so it needs A's singular value decomposition
(DeepInverse's ``DecomposablePhysics``). The circular lensless operator has one in closed form
(``physics.svd.FourierSVD``: U and V the unitary FFT, singular values |H|, the phase of H in U);
the cropped (linear) lensless and the metalens operators have none, and ``make_solver`` refuses
them before loading anything. The noise levels run linearly from ``sigma_max`` to 0 in ``steps``
denoiser evaluations ([0, 1] scale, as DeepInverse's default ``linspace(1, 0, 100)``; below 1 its
first step is NaN); a frequency whose singular value is below ``sigma_y`` counts as unmeasured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from thincam.errors import BadInputError
from thincam.physics.svd import FourierSVD, has_fourier_svd, operator_description
from thincam.registry import METHODS
from thincam.solvers.deepinv_prior import deepinv_solver, per_image


def ddrm(
    physics,
    y: torch.Tensor,
    denoiser,
    seeds: Sequence[int],
    *,
    steps: int,
    sigma_y: float,
    sigma_max: float = 1.0,
    eta: float = 0.85,
    etab: float = 1.0,
) -> torch.Tensor:
    """Reconstruct images in [0, 1] from ``y`` [B,C,Hs,Ws], image b from seed ``seeds[b]``."""
    from deepinv.sampling import DDRM

    if steps < 2:
        raise ValueError(f"steps must be >= 2 (sigma_max down to 0), got {steps}")
    if sigma_max < 1:
        # the first step draws a measured coefficient with std sqrt(sigma_max^2 - (sigma_y / s)^2),
        # and sigma_y / s approaches 1 for the weakest measured s: below 1 that is NaN
        raise ValueError(f"sigma_max must be >= 1 for deepinv's DDRM, got {sigma_max}")
    decomposition = FourierSVD.of(physics, sigma_y)
    sampler = DDRM(denoiser, sigmas=np.linspace(sigma_max, 0.0, steps), eta=eta, etab=etab)
    return per_image(lambda y_i, seed: sampler(y_i, decomposition), y, seeds)


def require_svd(physics) -> None:
    """Refuse an operator without a closed-form SVD, naming the method, the operator and the property."""
    if not has_fourier_svd(physics):
        raise BadInputError(
            f"method 'ddrm' ({METHODS['ddrm'].label}) cannot run on the {operator_description(physics)}: "
            "it needs a singular value decomposition A = U diag(s) V^T (deepinv DecomposablePhysics), "
            "which only the circular lensless convolution has (diagonal in Fourier); use diffpir or "
            "deepinv_dps, which need only A and A^T"
        )


def make_solver(physics, params, context):
    """The reconstruct stage's entry: deepinv's DDRM with the job's prior, on the operator's SVD."""
    return deepinv_solver(ddrm, "ddrm", physics, params, context, check=require_svd)
