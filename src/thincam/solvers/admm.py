"""ADMM with TV and non-negativity for lensless cameras (Antipa et al., DiffuserCam).

Solves  min_v 1/2 ||C H v - y||^2 + tau ||Psi v||_1 + i_{v >= 0}(v)  with the splitting
X = H v, U = Psi v, W = v, so that every sub-step is closed form:

- U: soft-threshold of Psi v + eta / mu2 at tau / mu2 (anisotropic TV);
- X: (C^T C + mu1 I)^-1 (xi + mu1 H v + C^T y), elementwise because C^T C is a 0/1 mask;
- W: max(rho / mu3 + v, 0) (times the scene-window indicator with ``support=True``);
- v: (mu1 H^T H + mu2 Psi^T Psi + mu3 I)^-1 [mu3 W - rho + Psi^T(mu2 U - eta) + H^T(mu1 X - xi)],
  diagonal in Fourier because H is a circular convolution on the padded grid and Psi is a
  circular finite difference there;
- dual ascent on xi, eta, rho.

U, X and W are one ADMM block (all computed from the previous v), as in LenslessPiCam; the
DiffuserCam tutorial updates W after v instead, which is not the textbook order.

v lives on the full padded grid (``physics.geometry.full``): light from outside the field of
view may land on the sensor, and the circular model on that grid is what makes the v-update
diagonal. The returned estimate is the scene window [0:H, 0:W], where ``physics.A`` places a
scene, so physics.A(x) ~ y (exactly at convergence with ``support=True``). The v-update solves
in Fourier with the spectrum already at hand, so an iteration costs 4 real FFTs (LenslessPiCam's
numpy ADMM takes 6), and scaled duals fold the scalars into fused in-place passes.

Parameter scaling. The tutorial's values (mu1=1e-6, mu2=1e-5, mu3=4e-5, tau=1e-4) are for a PSF
and a measurement each of unit L2 norm. For a unit-sum PSF (the thincam contract) and a
measurement y of any scale the same iterates, scaled, come from

    c = ||psf||_1 / ||psf||_2,  d = ||y||_2,
    mu1' = mu1,  mu2' = mu2 / c^2,  mu3' = mu3 / c^2,  tau' = tau * d / c

(see ``scaled_tutorial_params``): the estimate is then c * d times the tutorial's. For the
DiffuserCam hand at 300x400 (pipeline calibration, max-normalised capture): c = 166.5,
d = 184.1, giving mu1=1e-6, mu2=3.61e-10, mu3=1.44e-9, tau=1.11e-4.
"""

from __future__ import annotations

import math

import torch
from torch.nn.functional import softshrink

from thincam import logs
from thincam.physics.operators import LenslessConvolution


def scaled_tutorial_params(
    psf: torch.Tensor, y: torch.Tensor, mu1: float, mu2: float, mu3: float, tau: float
) -> dict[str, float]:
    """ADMM parameters for ``psf`` and one measurement ``y`` as given, equivalent to
    ``mu1..tau`` tuned for both at unit L2 norm (the DiffuserCam tutorial's convention).

    Rescaling the PSF by 1/c multiplies the solution by c, so the augmented terms on U and W
    (which live in scene units) need mu / c^2, and the TV weight tau / c; rescaling y by d
    multiplies everything by d, which leaves the mu's and multiplies tau by d.
    """
    psf = psf.double()
    c = float(psf.abs().sum() / torch.linalg.vector_norm(psf))
    d = float(torch.linalg.vector_norm(y.double()))
    return {"mu1": mu1, "mu2": mu2 / c**2, "mu3": mu3 / c**2, "tau": tau * d / c}


def _finite_diff(v: torch.Tensor, out_rows: torch.Tensor, out_cols: torch.Tensor) -> None:
    """Psi v into (out_rows, out_cols): circular differences v[i-1] - v[i] along rows, columns."""
    torch.sub(v[..., :-1, :], v[..., 1:, :], out=out_rows[..., 1:, :])
    torch.sub(v[..., -1:, :], v[..., :1, :], out=out_rows[..., :1, :])
    torch.sub(v[..., :, :-1], v[..., :, 1:], out=out_cols[..., :, 1:])
    torch.sub(v[..., :, -1:], v[..., :, :1], out=out_cols[..., :, :1])


def _plus_finite_diff_adjoint(base: torch.Tensor, g_rows, g_cols, scale: float) -> torch.Tensor:
    """base + scale * Psi^T (g_rows, g_cols), where Psi^T g = g[i+1] - g[i] along each axis."""
    acc = torch.sub(base, g_rows, alpha=scale).sub_(g_cols, alpha=scale)
    acc[..., :-1, :].add_(g_rows[..., 1:, :], alpha=scale)
    acc[..., -1:, :].add_(g_rows[..., :1, :], alpha=scale)
    acc[..., :, :-1].add_(g_cols[..., :, 1:], alpha=scale)
    acc[..., :, -1:].add_(g_cols[..., :, :1], alpha=scale)
    return acc


def _finite_diff_gram(shape: tuple[int, int], device) -> torch.Tensor:
    """Eigenvalues of Psi^T Psi on the rfft grid: sum over axes of 2 - 2 cos(2 pi k / n)."""
    rows, cols = shape
    ky = torch.arange(rows, device=device, dtype=torch.float64)
    kx = torch.arange(cols // 2 + 1, device=device, dtype=torch.float64)
    gram = (2 - 2 * torch.cos(2 * math.pi * ky / rows))[:, None] + (
        2 - 2 * torch.cos(2 * math.pi * kx / cols)
    )[None, :]
    return gram.float()


def _grid(physics: LenslessConvolution):
    """(full grid, sensor slices inside it) for either boundary mode."""
    if physics.boundary == "circular":
        hs, ws = physics.sensor_shape
        return (hs, ws), (slice(0, hs), slice(0, ws))
    (r0, c0), (hs, ws) = physics.geometry.offset, physics.sensor_shape
    return physics.geometry.full, (slice(r0, r0 + hs), slice(c0, c0 + ws))


def admm_tv(
    physics: LenslessConvolution,
    y: torch.Tensor,
    *,
    mu1: float,
    mu2: float,
    mu3: float,
    tau: float,
    n_iter: int,
    nonneg: bool = True,
    support: bool = False,
    progress: bool = False,
) -> torch.Tensor:
    """TV-regularised (and, by default, non-negative) ADMM estimate [B,C,H,W] of the scene.

    ``support=False`` (Antipa, LenslessPiCam) lets v carry light from outside the field of view
    anywhere on the padded grid: right for real captures of an unbounded world, but the part
    of v outside the scene window is dropped from the estimate, so A x ~ y only as far as that
    part is small (TV keeps it small; with tau = 0 it is not). ``support=True`` also projects W
    onto the scene window: the model physics.A states exactly, right for simulated scenes.

    The estimate is in the scale of y and the PSF (a [0, 1] scene under a unit-sum PSF comes
    back in about [0, 1]); it is clamped at 0 when ``nonneg`` but not at 1, because a real
    capture's scale is arbitrary. Deterministic: fixed iteration count, zero start.
    """
    if not isinstance(physics, LenslessConvolution):
        raise TypeError(f"admm_tv needs a LenslessConvolution, got {type(physics).__name__}")
    for name, value in (("mu1", mu1), ("mu2", mu2), ("mu3", mu3)):
        if not value > 0:
            raise ValueError(f"ADMM {name} must be > 0, got {value}")
    if tau < 0:
        raise ValueError(f"ADMM tau must be >= 0, got {tau}")
    y = y.to(torch.float32)
    full, (rows, cols) = _grid(physics)
    H = physics.H.to(torch.complex64)
    batch_shape = (*y.shape[:-2], *full)

    # Scaled duals (xi/mu1, eta/mu2, rho/mu3) turn most updates into single fused passes:
    # X = gain * (xi_s + Hv) + bias, and the v-update right-hand side is
    # mu3 [(W - rho_s) + (mu2/mu3) Psi^T(U - eta_s)] + mu1 H^T (X - xi_s).
    mask = y.new_zeros(full)
    mask[rows, cols] = 1.0
    scene_mask = y.new_zeros(full)
    scene_mask[: physics.scene_shape[0], : physics.scene_shape[1]] = 1.0
    x_gain = mu1 / (mask + mu1)
    x_bias = y.new_zeros(batch_shape)
    x_bias[..., rows, cols] = y / (1.0 + mu1)
    denom = mu1 * (H.real**2 + H.imag**2) + mu2 * _finite_diff_gram(full, y.device) + mu3
    weight_local = (mu3 / denom).to(torch.complex64)
    weight_data = mu1 * H.conj() / denom

    v = y.new_zeros(batch_shape)
    hv = torch.zeros_like(v)
    xi_s, rho_s = torch.zeros_like(v), torch.zeros_like(v)
    eta_rows, eta_cols = torch.zeros_like(v), torch.zeros_like(v)
    grad_rows, grad_cols = torch.zeros_like(v), torch.zeros_like(v)
    for _ in logs.progress(range(n_iter), "admm", disable=not progress):
        # U-update; g = U - eta_s is all the v-update and the eta dual need from U.
        g_rows = softshrink(grad_rows.add_(eta_rows), tau / mu2).sub_(eta_rows)
        g_cols = softshrink(grad_cols.add_(eta_cols), tau / mu2).sub_(eta_cols)
        x = torch.addcmul(x_bias, x_gain, hv.add_(xi_s))
        q = x.sub_(xi_s)  # X - xi_s; X itself is not needed again
        w = rho_s.add(v)
        if nonneg:
            w.clamp_min_(0.0)
        if support:
            w.mul_(scene_mask)
        w_minus_rho = w.sub_(rho_s)  # W itself is not needed again
        local = _plus_finite_diff_adjoint(w_minus_rho, g_rows, g_cols, mu2 / mu3)
        spectrum = torch.fft.rfft2(local) * weight_local
        spectrum.addcmul_(torch.fft.rfft2(q), weight_data)
        v = torch.fft.irfft2(spectrum, s=full)
        hv = torch.fft.irfft2(spectrum.mul_(H), s=full)
        _finite_diff(v, grad_rows, grad_cols)
        # Dual ascent, written with the quantities at hand:
        # xi_s + Hv - X = Hv - q, eta_s + Psi v - U = Psi v - g, rho_s + v - W = v - (W - rho_s).
        torch.sub(hv, q, out=xi_s)
        torch.sub(grad_rows, g_rows, out=eta_rows)
        torch.sub(grad_cols, g_cols, out=eta_cols)
        torch.sub(v, w_minus_rho, out=rho_s)
    xhat = v[..., : physics.scene_shape[0], : physics.scene_shape[1]]
    return xhat.clamp_min(0.0) if nonneg else xhat.contiguous()


def make_solver(physics, params, context):
    """The reconstruct stage's entry: ``solve(y, index)`` with the variant's ADMM parameters."""
    from thincam.solvers import check_params

    check_params("admm", admm_tv, params, skip=2)
    return lambda y, index: admm_tv(physics, y, **params)
