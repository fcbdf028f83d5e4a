"""What every diffusion sampler here shares: seeded noise, the DDIM schedule, the UNet call, the
measurement on the prior's [-1, 1] scale, and ``make_solver``'s plumbing (prior, per-image seeds).

Randomness can be per image (a list of generators, one per image): then an image's result does not
depend on which other images share its batch, which makes sharded teacher targets reproducible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator] | None


def initial_noise(shape: Sequence[int], seeds: Sequence[int], device="cpu", dtype=torch.float32) -> torch.Tensor:
    """x_T for a batch [B,C,H,W], image b drawn from its own ``torch.Generator`` seeded ``seeds[b]``."""
    shape = tuple(shape)
    if len(shape) != 4 or shape[0] != len(seeds):
        raise ValueError(f"initial_noise: shape {shape} must be [B,C,H,W] with B = len(seeds) = {len(seeds)}")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    return randn(shape, gens, device, dtype)


def step_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """Per-image generators for the sampler's step noise, on a stream distinct from ``initial_noise``.

    Seeded with a fixed odd offset so the first step's z is not a copy of x_T.
    """
    return [torch.Generator().manual_seed((int(s) + 0x9E3779B97F4A7C15) % (1 << 63)) for s in seeds]


def randn(shape: Sequence[int], generator: Generators, device, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise; with a list of generators, one draw per image (on CPU, then moved),
    so the values are the same on every device and for every batch composition."""
    shape = tuple(shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    draws = [torch.randn(shape[1:], generator=g, dtype=dtype) for g in generator]
    return torch.stack(draws).to(device)


def schedule(scheduler, steps: int) -> tuple[list[int], torch.Tensor, float]:
    """(timesteps in ascending order, alphas_cumprod, abar after the last step) for ``steps`` DDIM steps.

    The timestep spacing comes from diffusers' DDIMScheduler built from the prior's scheduler config,
    so a pretrained model's own spacing settings are honoured.
    """
    from diffusers import DDIMScheduler

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ddim = DDIMScheduler.from_config(scheduler.config)
    ddim.set_timesteps(steps)
    timesteps = sorted(int(t) for t in ddim.timesteps)
    return timesteps, ddim.alphas_cumprod.double(), float(ddim.final_alpha_cumprod)


def autocast(device: torch.device, dtype):
    """Mixed precision for the UNet only; the FFT physics stays float32 (half FFTs need 2^n sizes)."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def predict_eps(unet, x: torch.Tensor, t: int, dtype=None) -> torch.Tensor:
    timestep = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    with autocast(x.device, dtype):
        return unet(x, timestep).sample.float()


def measurement_pm(physics, y: torch.Tensor, scene_shape: Sequence[int]) -> torch.Tensor:
    """y' = 2y - A(1): the measurement of the [-1, 1] image, since A(2u - 1) = 2Au - A1."""
    ones = torch.ones((1, *scene_shape), device=y.device, dtype=y.dtype)
    return 2 * y - physics.A(ones)


def diffusion_solver(sampler, name: str, physics, params, context):
    """``solve(y, index)`` of a diffusion sampler with the job's prior and per-image seeds."""
    from thincam.models.prior import load_prior
    from thincam.solvers import check_params, image_seeds

    check_params(name, sampler, params, skip=4)
    unet, scheduler = load_prior(context["models"]["prior"], device=context["device"])
    shape = (physics.scene_shape[0], physics.scene_shape[1])

    def solve(y, index):
        seeds = image_seeds(context, index)
        x_T = initial_noise((len(seeds), unet.config.in_channels, *shape), seeds, y.device)
        return sampler(
            physics,
            y,
            unet,
            scheduler,
            x_T=x_T,
            generator=step_generators(seeds),
            dtype=torch.bfloat16 if context.get("bf16", False) else None,
            **params,
        )

    return solve
