"""DDNM+ (Wang et al. 2023): zero-shot range-null space restoration with a diffusion prior.

At each step the prior's clean estimate x0|t keeps its null-space content and has its range-space
content replaced (or, with noise, blended) by what the measurement says; docs/physics.md gives the
equations. Three forms:

- ``"scalar"``: one lambda_t/gamma_t per step and the operator's own A+ (any thincam operator).
- ``"svd"``: the original per-singular-value DDNM+ for operators diagonal in Fourier (circular
  convolution): each frequency k gets its own lambda and noise shaping from its singular value
  s_k, because the noise that A+ passes into frequency k is sigma_y / s_k, not sigma_y. It does not
  use A+'s Tikhonov lam; the noise-aware lambda_k is the regulariser.
- ``"tikhonov"``: the same per-singular-value idea for an operator whose SVD is unknown and whose
  A+ is iterative (the metalens product convolution, the cropped lensless operator). Each step
  solves ``(A^T A + mu_t I)^-1 A^T (A x0 - y')`` by the operator's CG, i.e. lambda_k =
  s_k^2 / (s_k^2 + mu_t): the smooth form of the SVD form's min(1, s_k sigma_t / (a_t sigma)),
  equal to it (1/2) where the noise passed into k is 2 sigma_t, with mu_t = (a_t sigma /
  (2 sigma_t))^2 floored at the configured lam (never a deeper inverse than the A+ chosen on
  val). The scalar form instead applies the fixed Tikhonov A+ with one lambda_t, sized for
  noise passed unchanged, while that A+ amplifies it up to 1 / (2 sqrt(lam)) times (5x at lam
  1e-2) in weakly seen directions.

The prior works in [-1, 1]: x = 2u - 1 for an image u in [0, 1]. A is linear, so with
y' = 2y - A(1) the measurement model reads y' = A x + 2n and the whole sampler stays in [-1, 1];
the noise level there is 2 sigma_y (as in the DDNM/DDRM reference code).

Seeded noise, the DDIM schedule and the UNet call are the samplers' shared ones (``solvers.sampling``).
"""

from __future__ import annotations

import itertools

import torch

from thincam.models.diffusion import prediction_to_x0
from thincam.physics.operators import conjugate_gradient
from thincam.solvers.sampling import Generators, diffusion_solver, measurement_pm, predict_eps, randn, schedule

FORMS = ("scalar", "svd", "tikhonov")


def travel_schedule(steps: int, travel_length: int, travel_repeats: int) -> list[int]:
    """Step indices visited, with time travel: DDNM's get_schedule_jump.

    Index k in 0..steps-1 is the k-th smallest timestep and -1 is the clean end. After reaching an
    index that is a multiple of ``travel_length`` the sampler jumps back ``travel_length`` steps,
    ``travel_repeats - 1`` times.
    """
    jumps = {}
    if travel_length > 0 and travel_repeats > 1:
        jumps = {j: travel_repeats - 1 for j in range(0, steps - travel_length, travel_length)}
    t, visited = steps, []
    while t >= 1:
        t -= 1
        visited.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(travel_length):
                t += 1
                visited.append(t)
    visited.append(-1)
    return visited


def _scene_shape(physics, y, x_T):
    if x_T is not None:
        return tuple(x_T.shape[1:])
    return tuple(physics.A_adjoint(y[:1]).shape[1:])


def _svd_weights(physics, scene_shape, device):
    """|H| on the image's rfft grid, or a clear error for operators that are not Fourier multipliers."""
    if not hasattr(physics, "singular_values"):
        raise ValueError(
            f"form='svd' needs an operator diagonal in Fourier with singular_values(); "
            f"{type(physics).__name__} has none: use form='tikhonov' (or form='scalar')"
        )
    try:
        sv = physics.singular_values().to(device=device, dtype=torch.float32)
    except ValueError as err:
        raise ValueError(
            f"form='svd' is not available for this operator ({err}): use form='tikhonov' (or form='scalar')"
        ) from err
    grid = (scene_shape[0], scene_shape[1], scene_shape[2] // 2 + 1)
    if tuple(sv.shape[-3:]) != grid:
        raise ValueError(
            f"form='svd': singular values of shape {tuple(sv.shape)} do not match the image rfft grid {grid}"
        )
    return sv


def _tikhonov_floor(physics) -> tuple[float, int]:
    """(lam, CG iterations) of the operator's Tikhonov A+: the tikhonov form's floor and budget."""
    pinv = getattr(physics, "pinv", None)
    if pinv is None or pinv.kind != "tikhonov":
        kind = None if pinv is None else pinv.kind
        raise ValueError(
            f"form='tikhonov' takes its lam floor and CG iterations from a Tikhonov A+; "
            f"{type(physics).__name__} has pinv {kind!r}: use form='scalar' or 'svd'"
        )
    return pinv.lam, pinv.iters


def tikhonov_weight(a_t: float, sigma_t: float, sigma: float, floor: float) -> float:
    """mu_t of the tikhonov form: (a_t sigma / (2 sigma_t))^2, the smallest mu whose step passes
    at most sigma_t of measurement noise into any direction (the SVD form's bound), at least
    ``floor``; inf where the next step is noise-free but the measurement is not (trust x0|t, as
    lambda_k = 0 does)."""
    if sigma == 0:
        return floor
    if sigma_t == 0:
        return float("inf")
    return max(floor, (a_t * sigma / (2 * sigma_t)) ** 2)


def tikhonov_correction(physics, residual: torch.Tensor, mu: float, iters: int) -> torch.Tensor:
    """(A^T A + mu I)^-1 A^T residual by CG from zero: lambda_k / s_k applied to the residual."""
    return conjugate_gradient(lambda v: physics.A_adjoint(physics.A(v)) + mu * v, physics.A_adjoint(residual), iters)


def _filter(image: torch.Tensor, response: torch.Tensor) -> torch.Tensor:
    """Multiply by a real, symmetric frequency response (a function of |H|): stays real."""
    return torch.fft.irfft2(torch.fft.rfft2(image) * response, s=image.shape[-2:])


@torch.no_grad()
def ddnm_plus(
    physics,
    y: torch.Tensor,
    unet,
    scheduler,
    *,
    steps: int,
    eta: float,
    sigma_y: float,
    form: str = "scalar",
    travel_length: int = 0,
    travel_repeats: int = 1,
    generator: Generators = None,
    x_T: torch.Tensor | None = None,
    progress: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Reconstruct images in [0, 1] from measurements ``y`` [B,C,Hs,Ws] by noise-aware DDNM+.

    ``generator``: one ``torch.Generator`` for the batch, or a list with one per image (then the
    result of an image does not depend on its batch). ``x_T`` fixes the starting noise (see
    ``sampling.initial_noise``). ``dtype`` (float16/bfloat16) runs the UNet under autocast.
    """
    from thincam import logs

    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if sigma_y < 0:
        raise ValueError(f"sigma_y must be >= 0, got {sigma_y}")
    y = y.float()
    device = y.device
    scene_shape = _scene_shape(physics, y, x_T)
    shape = (y.shape[0], *scene_shape)
    timesteps, alphas_cumprod, final_abar = schedule(scheduler, steps)

    def abar(k: int) -> float:
        return final_abar if k < 0 else float(alphas_cumprod[timesteps[k]])

    y_pm = measurement_pm(physics, y, scene_shape)
    sigma = 2.0 * sigma_y
    if form == "svd":
        sv = _svd_weights(physics, scene_shape, device)
        live = sv > 1e-6 * sv.max()
        sv_safe = torch.where(live, sv, torch.ones_like(sv))
    elif form == "tikhonov":
        floor, iters = _tikhonov_floor(physics)
    x = randn(shape, generator, device) if x_T is None else x_T.to(device=device, dtype=torch.float32)
    x0hat = None
    visited = travel_schedule(steps, travel_length, travel_repeats)
    for i, j in logs.progress(list(itertools.pairwise(visited)), "DDNM+", disable=not progress):
        if j > i:  # time travel: re-noise the latest clean estimate to the later timestep
            x = abar(j) ** 0.5 * x0hat + (1 - abar(j)) ** 0.5 * randn(shape, generator, device)
            continue
        abar_t = abar(i)
        eps = predict_eps(unet, x, timesteps[i], dtype)
        x0 = prediction_to_x0(x, eps, abar_t)
        a_t, sigma_t = abar(j) ** 0.5, (1 - abar(j)) ** 0.5
        residual = physics.A(x0) - y_pm
        if form == "scalar":
            if sigma_t >= a_t * sigma:
                lam, gamma = 1.0, (sigma_t**2 - (a_t * sigma) ** 2) ** 0.5
            else:
                lam, gamma = sigma_t / (a_t * sigma), 0.0
            x0hat = x0 - lam * physics.A_dagger(residual)
        elif form == "tikhonov":
            # The null space keeps the prior's content and gets DDIM's full sigma_t of noise; the
            # measurement noise the step passes, a_t sigma s_k / (s_k^2 + mu_t), is at most sigma_t
            # (at s_k = sqrt(mu_t)) and near 0 for well-seen and unseen directions, so the total
            # is sigma_t there and at most sqrt(2) sigma_t in between.
            mu = tikhonov_weight(a_t, sigma_t, sigma, floor)
            x0hat = x0 if mu == float("inf") else x0 - tikhonov_correction(physics, residual, mu, iters)
            gamma = sigma_t
        else:
            if sigma == 0:
                lam = live.float()
                gamma = torch.full_like(sv, sigma_t)
            else:
                noise_k = a_t * sigma / sv_safe  # the measurement noise passed into frequency k
                lam = torch.where(live, (sigma_t / noise_k).clamp(max=1.0), 0.0)
                gamma = torch.where(live, (sigma_t**2 - noise_k**2).clamp(min=0.0).sqrt(), sigma_t)
            # Per-frequency lambda_k (Y'_k / H_k - X0_k) = A^T applied to lambda_k / |H_k|^2 (A x0 - y').
            x0hat = x0 - physics.A_adjoint(_filter(residual, lam / sv_safe**2))
        if sigma_t > 0 and (form == "svd" or gamma > 0):
            direction = eps if eta == 0 else eta * randn(shape, generator, device) + (1 - eta**2) ** 0.5 * eps
            noise = _filter(direction, gamma) if form == "svd" else gamma * direction
            x = a_t * x0hat + noise
        else:
            x = a_t * x0hat
    return ((x + 1) / 2).clamp(0, 1)


def make_solver(physics, params, context):
    """The reconstruct stage's entry: DDNM+ with the job's prior."""
    return diffusion_solver(ddnm_plus, "ddnm", physics, params, context)
