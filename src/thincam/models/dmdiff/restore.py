"""Tunable decoder: I = D(alpha z_pos + (1 - alpha) z_neu), alpha chosen at inference.

z_pos and z_neu share one encoder pass and differ only in the UNet's prompt; alpha trades the
positive path's detail against the neutral path's smoothness without retraining.
"""

from __future__ import annotations

import numpy as np
import torch

from thincam.errors import BadInputError


def restore_sweep(model, y, fwhm_grid, alphas, batch_size: int = 16) -> torch.Tensor:
    """[A,B,3,H,W] CPU float32 in [0,1]: one restoration of ``y`` [B,3,H,W] per alpha.

    The latents are computed once per batch and only the decoder runs per alpha.
    """
    alphas = [float(a) for a in alphas]
    if not alphas or not all(np.isfinite(alphas)):
        raise BadInputError(f"alphas must be finite numbers, got {alphas}")
    y = torch.as_tensor(y, dtype=torch.float32)
    model.check_input(y)
    out = torch.empty((len(alphas), *y.shape), dtype=torch.float32)
    with torch.no_grad():
        for lo in range(0, len(y), int(batch_size)):
            chunk = y[lo : lo + int(batch_size)].to(model.device, torch.float32)
            q = model.q(model.degradation(chunk, fwhm_grid))
            z = model.encode(chunk, q)
            z_pos, z_neu = model.denoise(z, "positive", q), model.denoise(z, "neutral", q)
            for i, alpha in enumerate(alphas):
                mixed = alpha * z_pos + (1 - alpha) * z_neu
                out[i, lo : lo + len(chunk)] = model.decode(mixed).clamp(0, 1).cpu()
    return out


def restore(model, y, fwhm_grid, alpha: float = 1.0, batch_size: int = 16) -> torch.Tensor:
    """Restored images [B,3,H,W] (CPU float32, [0,1]) from metalens captures ``y``.

    alpha 1 (the default) is the positive path alone, 0 the neutral path alone.
    """
    return restore_sweep(model, y, fwhm_grid, [alpha], batch_size)[0]
