"""How well a PSF can be inverted, and whether a captured frame holds a PSF at all.

The singular values of the circular lensless operator are |H|, the PSF's spectrum magnitude: its
spread says which share of the scene a camera measures above the noise (and what a truncated-SVD
A+ drops). A captured frame of only sensor noise and a few hot pixels calibrates into a flat,
noise-shaped "PSF" that every later stage accepts; a real PSF puts most of its energy far above
the noise, which ``psf_energy_concentration`` measures.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Pixels count as PSF signal when brighter than background + SIGNAL_SIGMAS noise sigmas; a frame is
# a PSF when at least MIN_SIGNAL_ENERGY of its above-background energy sits in such pixels. Pure
# Gaussian or Poisson noise puts < 0.2% there (no pixel of a 300x400 frame reaches 5 sigma but by
# chance); the committed DiffuserCam PSF 99%. Dimmed into sigma-20 read noise it keeps 67% (peak
# 110 sigma) and 26% (peak 33 sigma, still accepted), and drops to 10% at peak 16 sigma.
SIGNAL_SIGMAS = 5.0
MIN_SIGNAL_ENERGY = 0.2


def psf_spectrum_spread(psf: np.ndarray, thresholds=(1e-1, 1e-2, 1e-3)) -> dict[str, Any]:
    """Spread of |H| = |FFT(psf)| over the PSF grid, each channel normalised by its largest value.

    These are the singular values of the circular operator on that grid; the linear (cropped)
    operator's differ, but its conditioning follows the same spectrum. ``below_<t>`` is the
    fraction of frequencies (all channels) with |H| <= t * max|H|: what a tsvd A+ with threshold
    t drops. ``condition`` is max|H| / min|H| (inf where some |H| is 0).
    """
    psf = np.asarray(psf, dtype=np.float64)
    if psf.ndim == 2:
        psf = psf[None]
    magnitude = np.abs(np.fft.fft2(psf))
    largest = magnitude.max(axis=(-2, -1), keepdims=True)
    relative = magnitude / largest
    smallest = float(relative.min())
    return {
        "max_abs": [float(v) for v in largest.ravel()],
        "min": smallest,
        "median": float(np.median(relative)),
        "condition": float(1.0 / smallest) if smallest > 0 else float("inf"),
        **{f"below_{t:g}": float((relative <= t).mean()) for t in thresholds},
    }


def noise_sigma(plane: np.ndarray) -> float:
    """Robust sensor-noise sigma of one [H,W] plane from its horizontal neighbour differences.

    Differences cancel the background and any smooth signal, and their median absolute deviation
    ignores the caustics (as long as they cover fewer than half of the pixel pairs). Where that
    MAD is 0 (quantised noise below one level, or a noise-free frame) the mean absolute deviation
    is used instead, so a frame is never read as noise-free while it has any fluctuation.
    """
    differences = np.diff(plane, axis=-1).ravel()
    if differences.size == 0:
        return 0.0
    deviation = np.abs(differences - np.median(differences))
    mad = float(np.median(deviation))
    if mad > 0:
        return 1.4826 * mad / np.sqrt(2.0)
    return 1.2533 * float(deviation.mean()) / np.sqrt(2.0)


def psf_energy_concentration(image: np.ndarray, sigmas: float = SIGNAL_SIGMAS) -> list[float]:
    """Per channel of a background-subtracted [C,H,W] frame: the share of its positive energy in
    pixels brighter than ``sigmas`` noise sigmas (``noise_sigma``)."""
    shares = []
    for plane in np.asarray(image, dtype=np.float64):
        positive = np.clip(plane, 0.0, None)
        total = positive.sum()
        if total <= 0:
            shares.append(0.0)
            continue
        significant = plane > sigmas * noise_sigma(plane)
        shares.append(float(positive[significant].sum() / total))
    return shares
