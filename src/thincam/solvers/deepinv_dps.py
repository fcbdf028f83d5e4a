"""DeepInverse's DPS (``deepinv.sampling.DPS``, Chung et al. 2023) on a thincam camera with the
shared prior: method ``deepinv_dps``, beside thincam's own DPS (``solvers.dps``).

DeepInverse solves the reverse VP-SDE (beta 0.1 to 20, i.e. the DDPM linear schedule in
continuous time) with its DDPM ancestral solver and adds the DPS likelihood score
``-weight grad_x ||A D(x, sigma_t) - y||`` to the prior's score. Its guidance therefore shrinks
with the noise level (the solver multiplies the score by ``s_t s_t-1 (sigma_t^2 - sigma_t-1^2)``),
where thincam's DPS takes a constant step ``zeta``: the two weights are on different scales.
The measurement, A and D all stay on the [0, 1] scale (``minus_one_one``). ``steps`` is the
number of denoiser evaluations, each with a gradient through the UNet, as in thincam's DPS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from thincam.solvers.deepinv_prior import deepinv_solver, per_image


def deepinv_dps(physics, y: torch.Tensor, denoiser, seeds: Sequence[int], *, steps: int, weight: float) -> torch.Tensor:
    """Reconstruct images in [0, 1] from ``y`` [B,C,Hs,Ws], image b from seed ``seeds[b]``."""
    from deepinv.sampling import DPS

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    generator = torch.Generator(device=y.device)
    # num_steps time points from t = 1 to t = 0: one denoiser evaluation per interval
    sampler = DPS(denoiser, num_steps=steps + 1, weight=weight, device=y.device, rng=generator)
    shape = (1, denoiser.unet.config.in_channels, *physics.scene_shape)
    return per_image(lambda y_i, seed: sampler(y_i, physics, x_init=shape, seed=seed), y, seeds)


def make_solver(physics, params, context):
    """The reconstruct stage's entry: deepinv's DPS with the job's prior."""
    return deepinv_solver(deepinv_dps, "deepinv_dps", physics, params, context)
