"""Simulated metalens PSFs over the field of view, and their per-patch FWHM.

A hyperbolic metalens focuses one wavelength, on axis, perfectly; off axis its flat phase gives
coma and astigmatism, and because a metasurface imparts the same (wrapped) phase at every
wavelength, it is a diffractive lens with focal length f * lambda_d / lambda: red and blue are
defocused at the sensor. The grid of PSFs feeds the product-convolution forward model, and the
FWHM map feeds DMDiff's degradation-aware LoRA.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pupil(aperture_um: float, n_pupil: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample centres (x, y) in metres inside the circular aperture."""
    pitch = aperture_um * 1e-6 / n_pupil
    coords = (np.arange(n_pupil) - (n_pupil - 1) / 2.0) * pitch
    x, y = np.meshgrid(coords, coords)
    inside = x**2 + y**2 <= (aperture_um * 1e-6 / 2.0) ** 2
    return x[inside], y[inside]


def _focal_intensity(
    field: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    ux: np.ndarray,
    uy: np.ndarray,
    distance_m: float,
    wavelength_m: float,
    chunk: int = 1024,
) -> np.ndarray:
    """|Rayleigh-Sommerfeld integral|^2 of the pupil field at the sensor points (ux, uy).

    Summed directly over the pupil samples for just the points we need: exact (no Fresnel or
    Fraunhofer approximation, which fail at tens of degrees off axis, where the metalens is
    interesting) and cheaper than any FFT grid large enough to hold the off-axis image point.
    float32 with real cos/sin matrix products is 4x faster than complex128 and agrees to 2e-6
    of the peak: the propagation phase is formed as k rho^2 / (r + z) (= k (r - z)), a few
    hundred radians, not the cancellation-prone difference of two large numbers.
    """
    k = np.float32(2.0 * np.pi / wavelength_m)
    z = np.float32(distance_m)
    px32, py32 = px.astype(np.float32), py.astype(np.float32)
    f_re, f_im = field.real.astype(np.float32), field.imag.astype(np.float32)
    out = np.empty(ux.size)
    for start in range(0, ux.size, chunk):
        dx = ux[start : start + chunk, None].astype(np.float32) - px32[None, :]
        dy = uy[start : start + chunk, None].astype(np.float32) - py32[None, :]
        rho2 = dx * dx + dy * dy
        r = np.sqrt(z * z + rho2)
        phase = k * rho2 / (r + z)
        amplitude = z / (r * r)  # obliquity z/r times the 1/r spherical-wave decay
        cos, sin = np.cos(phase) * amplitude, np.sin(phase) * amplitude
        re = cos @ f_re - sin @ f_im
        im = cos @ f_im + sin @ f_re
        out[start : start + chunk] = re.astype(np.float64) ** 2 + im.astype(np.float64) ** 2
    return out


def _pixel_grid(
    centre: tuple[float, float], size: tuple[int, int], pitch_m: float, oversample: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample points of an h x w window whose pixel (h//2, w//2) is at ``centre``."""
    h, w = size
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    ys = ((np.arange(h) - h // 2)[:, None] + sub[None, :]).ravel() * pitch_m + centre[0]
    xs = ((np.arange(w) - w // 2)[:, None] + sub[None, :]).ravel() * pitch_m + centre[1]
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return xx.ravel(), yy.ravel()


def field_angles(grid: tuple[int, int], max_field_deg: float) -> np.ndarray:
    """[gy,gx,2] (tan_y, tan_x) of each grid cell's chief ray; the corner cells reach max_field_deg.

    Cells are evenly spaced in image height (tan theta), as sensor patches are.
    """
    gy, gx = grid
    sy = np.linspace(-1.0, 1.0, gy) if gy > 1 else np.zeros(1)
    sx = np.linspace(-1.0, 1.0, gx) if gx > 1 else np.zeros(1)
    corner = np.hypot(sy[0], sx[0])
    scale = np.tan(np.deg2rad(max_field_deg)) / corner if corner > 0 else 0.0
    ty, tx = np.meshgrid(sy * scale, sx * scale, indexing="ij")
    return np.stack([ty, tx], axis=-1)


def metalens_psf_grid(
    psf_size: tuple[int, int] = (17, 17),
    grid: tuple[int, int] = (3, 3),
    wavelengths_nm: Sequence[float] = (640.0, 550.0, 460.0),
    design_wavelength_nm: float = 550.0,
    focal_mm: float = 0.2,
    aperture_um: float = 50.0,
    pixel_pitch_um: float = 1.5,
    max_field_deg: float = 30.0,
    n_pupil: int = 40,
    oversample: int = 2,
) -> np.ndarray:
    """float32 [gy,gx,C,h,w] PSFs of a hyperbolic metalens, one per field angle and wavelength.

    Each cell: a plane wave at the cell's field angle crosses the metalens phase
    -2 pi / lambda_d (sqrt(r^2 + f^2) - f) and is propagated to the sensor at distance f; the
    intensity is integrated over ``oversample``^2 points per pixel. The h x w window is centred
    on the channel-summed intensity centroid (found on a window twice as large, at half
    resolution), so every PSF is centred: the field-dependent image shift is distortion, which
    the product-convolution model ignores. Channels share the centre, so lateral colour stays in
    the PSFs. Unit sum per channel.
    """
    h, w = psf_size
    gy, gx = grid
    focal_m = focal_mm * 1e-3
    pitch_m = pixel_pitch_um * 1e-6
    # A pupil sampled at pitch d repeats the focal field every lambda f / d: those ghosts must
    # stay outside the (coarse, 2x) window in which the PSF is located.
    window_m = 2 * max(h, w) * pitch_m
    ghost_per_sample = min(wavelengths_nm) * 1e-9 * focal_m / (aperture_um * 1e-6)
    if ghost_per_sample * n_pupil <= window_m:
        raise ValueError(
            f"n_pupil={n_pupil} aliases the focal field (ghost spacing "
            f"{ghost_per_sample * n_pupil * 1e6:.1f} um <= window {window_m * 1e6:.1f} um); "
            f"use n_pupil > {int(window_m / ghost_per_sample)}"
        )
    px, py = _pupil(aperture_um, n_pupil)
    lens_phase = (
        -2.0
        * np.pi
        / (design_wavelength_nm * 1e-9)
        * (np.sqrt(px**2 + py**2 + focal_m**2) - focal_m)
    )
    tans = field_angles(grid, max_field_deg)
    out = np.empty((gy, gx, len(wavelengths_nm), h, w), dtype=np.float32)
    for i in range(gy):
        for j in range(gx):
            tan_y, tan_x = tans[i, j]
            norm = np.sqrt(1.0 + tan_x**2 + tan_y**2)
            fields = [
                np.exp(1j * (lens_phase + 2e9 * np.pi / wl * (px * tan_x + py * tan_y) / norm))
                for wl in wavelengths_nm
            ]
            # the chief ray crosses the lens centre undeviated (zero phase gradient there)
            chief = (focal_m * tan_y, focal_m * tan_x)
            ux, uy = _pixel_grid(chief, (h, w), 2.0 * pitch_m, 1)
            coarse = sum(
                _focal_intensity(f, px, py, ux, uy, focal_m, wl * 1e-9)
                for f, wl in zip(fields, wavelengths_nm, strict=True)
            )
            centre = (
                float((uy * coarse).sum() / coarse.sum()),
                float((ux * coarse).sum() / coarse.sum()),
            )
            ux, uy = _pixel_grid(centre, (h, w), pitch_m, oversample)
            for c, (f, wl) in enumerate(zip(fields, wavelengths_nm, strict=True)):
                fine = _focal_intensity(f, px, py, ux, uy, focal_m, wl * 1e-9)
                pix = fine.reshape(h, oversample, w, oversample).mean(axis=(1, 3))
                out[i, j, c] = pix / pix.sum()
    return out


def psf_fwhm(psf2d: np.ndarray, upsample: int = 8) -> float:
    """FWHM in pixels of a 2-D PSF, as the diameter of a disc with the above-half-maximum area.

    Defined by area rather than a profile cut so it is one number for the asymmetric off-axis
    PSFs (coma, astigmatism). The PSF is first upsampled (cubic spline) so that a
    1.5-pixel spot is not quantised to whole pixels (cubic: within 4% for Gaussians of sigma
    >= 0.8 px at any sub-pixel offset; linear interpolation misses off-grid peaks by up to 9%).
    """
    from scipy import ndimage

    psf2d = np.asarray(psf2d, dtype=np.float64)
    if psf2d.ndim != 2 or not np.isfinite(psf2d).all() or psf2d.max() <= 0:
        raise ValueError(f"psf_fwhm needs a finite 2-D PSF with a positive peak, got {psf2d.shape}")
    fine = ndimage.zoom(psf2d, upsample, order=3, mode="nearest", grid_mode=True)
    area = (fine >= 0.5 * fine.max()).sum() / upsample**2
    return float(2.0 * np.sqrt(area / np.pi))


def fwhm_map(psf_grid: np.ndarray, pixel_pitch: float = 1.0) -> np.ndarray:
    """float32 [gy,gx]: the mean over channels of each patch's FWHM, times ``pixel_pitch``."""
    psf_grid = np.asarray(psf_grid)
    if psf_grid.ndim != 5:
        raise ValueError(f"fwhm_map expects [gy,gx,C,h,w], got shape {psf_grid.shape}")
    gy, gx, channels = psf_grid.shape[:3]
    out = np.empty((gy, gx), dtype=np.float32)
    for i in range(gy):
        for j in range(gx):
            out[i, j] = (
                np.mean([psf_fwhm(psf_grid[i, j, c]) for c in range(channels)]) * pixel_pitch
            )
    return out
