"""What the DeepInverse solvers (methods ``deepinv_dps``, ``diffpir``, ``ddrm``) share: thincam's
diffusion prior as the Gaussian denoiser DeepInverse calls, per-image seeding, and the job's
``make_solver`` plumbing.

The prior is the same trained DDPM UNet thincam's DPS and DDNM+ use (``models.prior.load_prior``);
only the calling convention differs, and :class:`PriorDenoiser` converts it exactly (its docstring
has the mapping). DeepInverse's samplers draw noise from one generator for the whole batch (DPS
from its solver's ``rng``, DiffPIR and DDRM from torch's global generator), so each image runs
alone under its own seed (``solvers.image_seeds``): a result then does not depend on its batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from deepinv.models import Denoiser

from thincam.models.diffusion import prediction_to_x0
from thincam.solvers.sampling import autocast


class PriorDenoiser(Denoiser):
    """The DDPM prior as DeepInverse's denoiser ``D(u, sigma)``.

    DeepInverse's convention: ``u = u0 + sigma n`` with the image ``u0`` in [0, 1] and ``sigma``
    on that scale; ``D`` returns the estimate of ``u0`` in [0, 1]. DeepInverse's samplers map
    their own states to it (``MinusOneOneDenoiserWrapper`` halves a [-1, 1] sigma; DiffPIR calls
    ``D(x / (2 sqrt(abar)) + 1/2, sigma_t / 2)``; DDRM works in [0, 1] throughout).

    The prior's convention: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` with ``x0 = 2 u0 - 1``
    in [-1, 1] and an integer timestep t. With ``s = 2 sigma``, the noise on the [-1, 1] scale,

        abar = 1 / (1 + s^2),        x_t = sqrt(abar) (2u - 1)

    is exactly a draw of the prior's forward process at noise level abar. The UNet is asked at the
    timestep whose noise-to-signal ratio ``sqrt((1 - abar_t) / abar_t)`` is nearest to ``s`` (in
    log), and ``models.diffusion.prediction_to_x0`` turns its output into x0 at the continuous
    abar, so for an epsilon prior ``D(u, sigma) = u - sigma eps``: the input itself at
    sigma = 0, and thincam's own ``x0|t`` at a sigma of the prior's timestep t.
    """

    def __init__(self, unet, scheduler, dtype: torch.dtype | None = None):
        super().__init__()
        self.unet = unet
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")
        self.dtype = dtype
        abar = scheduler.alphas_cumprod.double()
        # log noise-to-signal of each training timestep, on the [-1, 1] scale
        self.register_buffer("log_ratio", 0.5 * torch.log((1 - abar) / abar), persistent=False)

    def timesteps(self, sigma: torch.Tensor) -> torch.Tensor:
        """The prior's timestep for each noise level ``sigma`` ([B], on the [0, 1] scale)."""
        log_s = torch.log((2 * sigma.double()).clamp_min(1e-12))
        return (self.log_ratio.to(sigma.device)[None, :] - log_s[:, None]).abs().argmin(dim=1)

    def forward(self, x: torch.Tensor, sigma, *args, **kwargs) -> torch.Tensor:
        sigma = self._handle_sigma(sigma, batch_size=x.shape[0], device=x.device, dtype=torch.float32)
        abar = (1 / (1 + (2 * sigma) ** 2)).view(-1, *[1] * (x.ndim - 1))
        x_t = abar.sqrt() * (2 * x.float() - 1)
        with autocast(x.device, self.dtype):
            output = self.unet(x_t, self.timesteps(sigma)).sample.float()
        return (prediction_to_x0(x_t, output, abar, self.prediction_type) + 1) / 2


def load_denoiser(context) -> PriorDenoiser:
    """The job's prior (``context["models"]["prior"]``) as a :class:`PriorDenoiser`."""
    from thincam.models.prior import load_prior

    unet, scheduler = load_prior(context["models"]["prior"], device=context["device"])
    return PriorDenoiser(unet, scheduler, dtype=torch.bfloat16 if context.get("bf16", False) else None)


def _cuda_devices(device: torch.device) -> list[int]:
    return [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []


def per_image(run: Callable[[torch.Tensor, int], torch.Tensor], y: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``run(y_i, seed_i)`` for each image alone, torch's global generator seeded ``seed_i`` for
    it and restored afterwards; outputs clipped to [0, 1] as thincam's other samplers return them."""
    if len(seeds) != y.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {y.shape[0]}")
    outputs = []
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=_cuda_devices(y.device)):
            torch.manual_seed(int(seed))
            outputs.append(run(y[i : i + 1].float(), int(seed)).float().clamp(0, 1))
    return torch.cat(outputs) if outputs else y.new_zeros((0,))


def deepinv_solver(sampler, name: str, physics, params, context, check: Callable | None = None):
    """``solve(y, index)`` of a deepinv sampler ``sampler(physics, y, denoiser, seeds, **params)``
    with the job's prior; ``check(physics)`` refuses an operator before the prior is loaded."""
    from thincam.solvers import check_params, image_seeds

    check_params(name, sampler, params, skip=4)
    if check is not None:
        check(physics)
    denoiser = load_denoiser(context)

    def solve(y, index):
        return sampler(physics, y, denoiser, image_seeds(context, index), **params)

    return solve

