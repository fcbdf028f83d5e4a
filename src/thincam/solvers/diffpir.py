"""DeepInverse's DiffPIR (``deepinv.sampling.DiffPIR``, Zhu et al. 2023) on a thincam camera with
the shared prior: method ``diffpir``.

Each step denoises with the prior, takes the proximal step of ``||A x - y||^2`` at a strength
``rho_t = lambda_ sigma_y^2 / sigma_t^2`` and re-noises (``zeta`` the fresh-noise fraction), on
DeepInverse's fixed linear-beta schedule of 1000 steps, visited at ``steps`` points. The proximal
step is the operator's: on the circular lensless operator the closed form of its Fourier SVD
(``physics.svd.FourierSVD``), on the others deepinv's conjugate gradients on A and A^T.
``sigma_y`` is the measurement noise on the [0, 1] scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from thincam.physics.svd import FourierSVD, has_fourier_svd
from thincam.solvers.deepinv_prior import deepinv_solver, per_image


def diffpir(
    physics,
    y: torch.Tensor,
    denoiser,
    seeds: Sequence[int],
    *,
    steps: int,
    sigma_y: float,
    lambda_: float = 7.0,
    zeta: float = 0.1,
) -> torch.Tensor:
    """Reconstruct images in [0, 1] from ``y`` [B,C,Hs,Ws], image b from seed ``seeds[b]``."""
    from deepinv.optim.data_fidelity import L2
    from deepinv.sampling import DiffPIR

    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the first and last noise levels), got {steps}")
    if sigma_y <= 0:
        raise ValueError(f"sigma_y must be > 0 (it sets the proximal strength), got {sigma_y}")
    operator = FourierSVD.of(physics, sigma_y) if has_fourier_svd(physics) else physics
    sampler = DiffPIR(
        denoiser, L2(), sigma=sigma_y, max_iter=steps, zeta=zeta, lambda_=lambda_, device=y.device
    )
    return per_image(lambda y_i, seed: sampler(y_i, operator), y, seeds)


def make_solver(physics, params, context):
    """The reconstruct stage's entry: deepinv's DiffPIR with the job's prior."""
    return deepinv_solver(diffpir, "diffpir", physics, params, context)
