"""Sensor noise: Poisson-Gaussian (deepinv's model, seeded) followed by quantisation."""

from __future__ import annotations

import torch
from deepinv.physics import PoissonGaussianNoise


def sensor_noise(
    y: torch.Tensor,
    *,
    poisson_gain: float,
    gaussian_sigma: float,
    bit_depth: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """y = a Poisson(y/a) + N(0, b^2), clipped to the sensor's range and quantised to bit_depth.

    ``poisson_gain`` a = 0 disables shot noise. Clipping to [0, 1] models saturation.
    """
    if poisson_gain > 0:
        model = PoissonGaussianNoise(gain=poisson_gain, sigma=gaussian_sigma, rng=generator)
        noisy = model(y.clamp_min(0))
    else:
        noisy = y + gaussian_sigma * torch.randn(y.shape, generator=generator, dtype=y.dtype)
    levels = 2**bit_depth - 1
    return torch.round(noisy.clamp(0, 1) * levels) / levels


def effective_sigma(*, poisson_gain: float, gaussian_sigma: float, bit_depth: int, mean_signal: float) -> float:
    """Std of the total noise at the mean signal level: what DDNM+'s sigma_y should be."""
    quantisation = 1.0 / (2**bit_depth - 1) / 12**0.5
    return float((poisson_gain * mean_signal + gaussian_sigma**2 + quantisation**2) ** 0.5)
