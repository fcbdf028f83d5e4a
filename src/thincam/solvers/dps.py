"""Diffusion posterior sampling (Chung et al. 2023): a DDIM/ancestral step of the prior followed by
a gradient step on the measurement residual of the prior's clean estimate.

Unlike DDNM+ it needs no A+, only A and autograd through the UNet, which makes each step about
three UNet forwards' worth of work and its consistency only approximate (docs/physics.md).
"""

from __future__ import annotations

import torch

from thincam.models.diffusion import prediction_to_x0
from thincam.solvers.sampling import Generators, diffusion_solver, measurement_pm, predict_eps, randn, schedule


def dps(
    physics,
    y: torch.Tensor,
    unet,
    scheduler,
    *,
    steps: int,
    zeta: float,
    zeta_mode: str = "constant",
    generator: Generators = None,
    eta: float = 1.0,
    x_T: torch.Tensor | None = None,
    progress: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Reconstruct images in [0, 1] from ``y`` [B,C,Hs,Ws].

    Each step: x_{t-1} = DDIM(x_t, eta) - zeta_t * grad_{x_t} ||y - A x0|t(x_t)||, per image, with
    zeta_t = zeta ("constant") or zeta / ||y - A x0|t|| ("normalized", the DPS paper's choice).
    eta = 1 is the ancestral (DDPM) sampler on the skipped schedule, eta = 0 deterministic DDIM.
    The residual is measured on the [0, 1] scale of y.
    """
    from thincam import logs

    if zeta_mode not in ("constant", "normalized"):
        raise ValueError(f"zeta_mode must be 'constant' or 'normalized', got {zeta_mode!r}")
    y = y.float()
    device = y.device
    scene_shape = tuple(physics.A_adjoint(y[:1]).shape[1:]) if x_T is None else tuple(x_T.shape[1:])
    shape = (y.shape[0], *scene_shape)
    timesteps, alphas_cumprod, final_abar = schedule(scheduler, steps)
    # On the [-1, 1] scale y - A u = (y' - A x) / 2 with y' = 2y - A(1).
    y_pm = measurement_pm(physics, y, scene_shape)
    x = randn(shape, generator, device) if x_T is None else x_T.to(device=device, dtype=torch.float32)
    dims = tuple(range(1, y.ndim))
    for k in logs.progress(range(steps - 1, -1, -1), "DPS", disable=not progress):
        abar_t = float(alphas_cumprod[timesteps[k]])
        abar_prev = final_abar if k == 0 else float(alphas_cumprod[timesteps[k - 1]])
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = predict_eps(unet, x, timesteps[k], dtype)
            x0 = prediction_to_x0(x, eps, abar_t)
            norm = torch.linalg.vector_norm((y_pm - physics.A(x0)) / 2, dim=dims)
            (grad,) = torch.autograd.grad(norm.sum(), x)
        with torch.no_grad():
            # The DDIM step uses the clipped clean estimate and its matching epsilon (diffusers'
            # clip_sample), which keeps the early, wild x0|t from blowing up the trajectory.
            x0c = x0.clamp(-1, 1)
            eps_c = (x - abar_t**0.5 * x0c) / (1 - abar_t) ** 0.5
            var = eta**2 * (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
            x_prev = abar_prev**0.5 * x0c + max(1 - abar_prev - var, 0.0) ** 0.5 * eps_c
            if var > 0:
                x_prev = x_prev + var**0.5 * randn(shape, generator, device)
            scale = zeta / norm.clamp_min(1e-12) if zeta_mode == "normalized" else torch.full_like(norm, zeta)
            x = x_prev - scale.view(-1, *[1] * len(dims)) * grad
    return ((x.detach() + 1) / 2).clamp(0, 1)


def make_solver(physics, params, context):
    """The reconstruct stage's entry: DPS with the job's prior."""
    return diffusion_solver(dps, "dps", physics, params, context)
