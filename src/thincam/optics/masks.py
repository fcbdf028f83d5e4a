"""Simulated lensless PSFs: PhlatCam-style phase-contour masks, random diffusers, sparse dots.

Wave-optics masks are propagated to the sensor by the angular spectrum method on a grid
``oversample`` times finer than the sensor, and the intensity is area-averaged onto the sensor
pixels (a pixel integrates the light that falls on it). All PSFs are float32 [C,H,W], each channel
summing to one, and depend only on their arguments and ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from thincam.data.images import area_downsample

# Wavelength at which a fixed-height (refractive, dispersion-free) mask's phase is specified;
# at another wavelength the same height gives phase * REFERENCE_NM / wavelength.
REFERENCE_NM = 550.0


def angular_spectrum(
    field: np.ndarray, wavelength_m: float, pitch_m: float, distance_m: float, pad: bool = True
) -> np.ndarray:
    """Free-space propagation of a complex [H,W] field over ``distance_m`` (negative: backwards).

    Exact scalar diffraction (no Fresnel approximation): multiply the spectrum by
    exp(i 2 pi z sqrt(1/lambda^2 - fx^2 - fy^2)). Evanescent waves are removed, and the transfer
    function is band-limited (Matsushima & Shimobaba 2009) to the frequencies the sampled kernel
    can represent without aliasing. ``pad`` zero-pads to twice the size so the FFT's circular
    convolution does not wrap light around the edges. numpy's FFT is fine at PSF sizes (< 1k^2).
    """
    field = np.asarray(field, dtype=np.complex128)
    if field.ndim != 2:
        raise ValueError(f"angular_spectrum expects a 2-D field, got shape {field.shape}")
    h, w = field.shape
    if pad:
        field = np.pad(field, ((h // 2, h - h // 2), (w // 2, w - w // 2)))
    ny, nx = field.shape
    fy = np.fft.fftfreq(ny, d=pitch_m)[:, None]
    fx = np.fft.fftfreq(nx, d=pitch_m)[None, :]
    arg = 1.0 / wavelength_m**2 - fx**2 - fy**2
    propagating = arg > 0
    z = abs(distance_m)
    limit_x = 1.0 / (wavelength_m * np.sqrt((2.0 * z / (nx * pitch_m)) ** 2 + 1.0))
    limit_y = 1.0 / (wavelength_m * np.sqrt((2.0 * z / (ny * pitch_m)) ** 2 + 1.0))
    keep = propagating & (np.abs(fx) < limit_x) & (np.abs(fy) < limit_y)
    transfer = np.where(
        keep, np.exp(2j * np.pi * distance_m * np.sqrt(np.where(keep, arg, 0.0))), 0
    )
    out = np.fft.ifft2(np.fft.fft2(field) * transfer)
    if pad:
        out = out[h // 2 : h // 2 + h, w // 2 : w // 2 + w]
    return out


def perlin_noise(shape: tuple[int, int], cells: tuple[int, int], seed: int) -> np.ndarray:
    """Seeded 2-D Perlin gradient noise, zero mean and unit std.

    Written here because no installed library has a seeded Perlin generator; Perlin rather than
    smoothed white noise because its zero crossings form the closed, evenly spaced contours
    PhlatCam uses as its target PSF.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    cy, cx = cells
    angles = rng.uniform(0.0, 2.0 * np.pi, size=(cy + 1, cx + 1))
    gy, gx = np.sin(angles), np.cos(angles)
    y = (np.arange(h) + 0.5) * cy / h
    x = (np.arange(w) + 0.5) * cx / w
    iy, ix = np.floor(y).astype(int), np.floor(x).astype(int)
    ty, tx = (y - iy)[:, None], (x - ix)[None, :]
    iy, ix = iy[:, None], ix[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        return gy[iy + dy, ix + dx] * (ty - dy) + gx[iy + dy, ix + dx] * (tx - dx)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    sy, sx = fade(ty), fade(tx)
    top = corner(0, 0) * (1 - sx) + corner(0, 1) * sx
    bottom = corner(1, 0) * (1 - sx) + corner(1, 1) * sx
    noise = top * (1 - sy) + bottom * sy
    return ((noise - noise.mean()) / noise.std()).astype(np.float64)


def contour_target(
    size: tuple[int, int], seed: int, cells: tuple[int, int], levels: Sequence[float]
) -> np.ndarray:
    """Binary [H,W] map of one-pixel lines where the Perlin noise crosses each level."""
    noise = perlin_noise(size, cells, seed)
    lines = np.zeros(size, dtype=bool)
    for level in levels:
        above = noise > level
        lines[:, :-1] |= above[:, :-1] != above[:, 1:]
        lines[:-1, :] |= above[:-1, :] != above[1:, :]
    return lines.astype(np.float64)


def _unit_sum(stack: np.ndarray) -> np.ndarray:
    sums = stack.sum(axis=(-2, -1), keepdims=True)
    if not (np.isfinite(stack).all() and (sums > 0).all()):
        raise ValueError("simulated PSF is empty or not finite; check the optical parameters")
    return (stack / sums).astype(np.float32)


def _sensor_psf(
    phase: np.ndarray, wavelength_nm: float, pitch_m: float, distance_m: float, oversample: int
) -> np.ndarray:
    """Intensity on the sensor behind a unit-amplitude phase mask lit by an on-axis plane wave."""
    field = angular_spectrum(np.exp(1j * phase), wavelength_nm * 1e-9, pitch_m, distance_m)
    intensity = np.abs(field) ** 2
    return area_downsample(intensity[None], oversample)[0]


def phase_contour_psf(
    size: tuple[int, int] = (32, 32),
    wavelengths_nm: Sequence[float] = (640.0, 550.0, 460.0),
    pixel_pitch_um: float = 10.0,
    distance_mm: float = 2.0,
    seed: int = 0,
    contour_levels: Sequence[float] = (0.0,),
    feature_px: float = 8.0,
    n_iter: int = 30,
    oversample: int = 2,
) -> np.ndarray:
    """PhlatCam-style PSF: a phase mask designed to focus a Perlin contour pattern.

    The contour lines (one per level, Perlin cells about ``feature_px`` sensor pixels wide) are
    the target intensity; Gerchberg-Saxton between the mask plane and the sensor plane (angular
    spectrum, at REFERENCE_NM) finds a phase-only mask producing it; each wavelength then sees
    that mask's height as phase * REFERENCE_NM / lambda and is propagated to the sensor.
    """
    h, w = size
    pitch_m = pixel_pitch_um * 1e-6 / oversample
    distance_m = distance_mm * 1e-3
    cells = (max(1, round(h / feature_px)), max(1, round(w / feature_px)))
    target = contour_target((h, w), seed, cells, contour_levels)
    target_amp = np.sqrt(np.kron(target, np.ones((oversample, oversample))))
    rng = np.random.default_rng(seed + 1)
    phase = rng.uniform(-np.pi, np.pi, size=target_amp.shape)
    wavelength_m = REFERENCE_NM * 1e-9
    for _ in range(n_iter):
        sensor = angular_spectrum(np.exp(1j * phase), wavelength_m, pitch_m, distance_m)
        sensor = target_amp * np.exp(1j * np.angle(sensor))
        phase = np.angle(angular_spectrum(sensor, wavelength_m, pitch_m, -distance_m))
    psfs = [
        _sensor_psf(phase * REFERENCE_NM / wl, wl, pitch_m, distance_m, oversample)
        for wl in wavelengths_nm
    ]
    return _unit_sum(np.stack(psfs))


def random_diffuser_psf(
    size: tuple[int, int] = (32, 32),
    wavelengths_nm: Sequence[float] = (640.0, 550.0, 460.0),
    pixel_pitch_um: float = 10.0,
    distance_mm: float = 2.0,
    seed: int = 0,
    correlation_px: float = 3.0,
    phase_strength: float = 10.0,
    oversample: int = 2,
) -> np.ndarray:
    """DiffuserCam-style caustic PSF from a smooth random phase screen.

    White noise smoothed by a Gaussian of ``correlation_px`` sensor pixels, scaled to an RMS
    phase of ``phase_strength`` radians at REFERENCE_NM: its bumps act as random lenslets whose
    focal lengths (about k * correlation^2 / strength) bring caustics to the sensor distance.
    """
    from scipy import ndimage

    h, w = size
    pitch_m = pixel_pitch_um * 1e-6 / oversample
    rng = np.random.default_rng(seed)
    screen = ndimage.gaussian_filter(
        rng.standard_normal((h * oversample, w * oversample)),
        correlation_px * oversample,
        mode="wrap",
    )
    screen = (screen - screen.mean()) / screen.std() * phase_strength
    psfs = [
        _sensor_psf(screen * REFERENCE_NM / wl, wl, pitch_m, distance_mm * 1e-3, oversample)
        for wl in wavelengths_nm
    ]
    return _unit_sum(np.stack(psfs))


def sparse_dots_psf(
    size: tuple[int, int] = (32, 32),
    n_dots: int = 12,
    blur_px: float = 0.7,
    seed: int = 0,
    channels: int = 3,
) -> np.ndarray:
    """A few pixel-aligned dots of random weight blurred by a Gaussian of sigma ``blur_px``.

    The well-conditioned tiny default (docs/default.md): a few sharp peaks keep |H| away from
    zero at 32x32, where caustics leave most frequencies unusable. Dots sit on pixel centres
    (``blur_px`` is the whole optical + pixel blur): sub-pixel dots integrated over pixels halve
    the median |H| at 32x32 (0.037 vs 0.06 over 10 seeds). An amplitude mask casts the same
    shadow at every wavelength, so all channels share one PSF.
    """
    from scipy import ndimage

    h, w = size
    if not 1 <= n_dots <= h * w:
        raise ValueError(f"n_dots must be between 1 and {h * w}, got {n_dots}")
    rng = np.random.default_rng(seed)
    flat = rng.choice(h * w, size=n_dots, replace=False)
    weights = rng.uniform(0.5, 1.0, n_dots)
    dots = np.zeros(h * w)
    dots[flat] = weights
    psf = ndimage.gaussian_filter(dots.reshape(h, w), blur_px, mode="constant")
    return _unit_sum(np.repeat(psf[None], channels, axis=0))
