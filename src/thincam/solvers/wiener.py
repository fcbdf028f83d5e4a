"""Wiener deconvolution: the one-shot linear baseline, xhat = F^-1[conj(H) Y / (|H|^2 + K)].

It reuses the operator's own spectra (``physics.H``) and sensor placement, so it inverts exactly
the model the measurements were simulated with, on CPU or CUDA, for a whole batch at once.
"""

from __future__ import annotations

import torch

from thincam.physics.operators import LenslessConvolution, ProductConvolution


def _place_on_grid(physics, y: torch.Tensor) -> torch.Tensor:
    """C^T y: the sensor image zero-padded into the full convolution grid, as A_adjoint does."""
    (r0, c0), (hs, ws) = physics.geometry.offset, physics.sensor_shape
    padded = y.new_zeros(*y.shape[:-2], *physics.geometry.full)
    padded[..., r0 : r0 + hs, c0 : c0 + ws] = y
    return padded


def _wiener_filter(spectrum: torch.Tensor, H: torch.Tensor, K: float) -> torch.Tensor:
    H = H.to(torch.complex64)
    return spectrum * H.conj() / (H.real**2 + H.imag**2 + K)


def wiener(physics, y: torch.Tensor, K: float) -> torch.Tensor:
    """Wiener estimate of the scene [B,C,H,W] from measurements y [B,C,Hs,Ws], clipped to [0, 1].

    K is the noise-to-signal ratio (a constant; docs/physics.md): larger K suppresses
    the frequencies where |H| is small, at the cost of blur.

    - ``LenslessConvolution`` circular: the exact Wiener inverse on the sensor grid.
    - ``LenslessConvolution`` linear: y is placed at its sensor offset inside the zero-padded
      full grid (the adjoint's placement), filtered there, and the scene window is returned. The
      unmeasured border is treated as zero, which is what makes Wiener a baseline, not an
      inverse of the crop.
    - ``ProductConvolution``: APPROXIMATION. Each grid PSF h_k deconvolves the whole image as if
      it were shift-invariant, and the K results are blended with the partition-of-unity windows
      w_k (xhat = sum_k w_k . wiener_k(y)). With all grid PSFs equal it is the shift-invariant
      Wiener (tested); otherwise each region is deconvolved with its nearby cells' PSFs, which
      is accurate as far as the PSF varies slowly across a cell.
    """
    if K < 0:
        raise ValueError(f"Wiener K must be >= 0, got {K}")
    y = y.to(torch.float32)
    if isinstance(physics, LenslessConvolution):
        if physics.boundary == "circular":
            spectrum = _wiener_filter(torch.fft.rfft2(y), physics.H, K)
            xhat = torch.fft.irfft2(spectrum, s=y.shape[-2:])
        else:
            full = physics.geometry.full
            spectrum = _wiener_filter(torch.fft.rfft2(_place_on_grid(physics, y)), physics.H, K)
            xhat = torch.fft.irfft2(spectrum, s=full)
            xhat = xhat[..., : physics.scene_shape[0], : physics.scene_shape[1]]
    elif isinstance(physics, ProductConvolution):
        full = physics.geometry.full
        spectrum = torch.fft.rfft2(_place_on_grid(physics, y)).unsqueeze(1)  # [B,1,C,...]
        per_psf = torch.fft.irfft2(_wiener_filter(spectrum, physics.H, K), s=full)
        per_psf = per_psf[..., : physics.image_shape[0], : physics.image_shape[1]]
        xhat = (per_psf * physics.windows).sum(dim=1)
    else:
        kind = type(physics).__name__
        raise TypeError(f"wiener needs a LenslessConvolution or ProductConvolution, got {kind}")
    return xhat.clamp(0.0, 1.0)


def make_solver(physics, params, context):
    """The reconstruct stage's entry: ``solve(y, index)`` with the variant's K."""
    from thincam.solvers import check_params

    check_params("wiener", wiener, params, skip=2)
    return lambda y, index: wiener(physics, y, **params)
