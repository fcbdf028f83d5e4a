"""DDNM+ vs plain DDIM sampling: same UNet, steps, batch and device, measured in one run.

Goal: DDNM+ <= 1.10x plain DDIM, i.e. the range-null projection (A, A+ and per-image noise) is
cheap next to the UNet. Without --prior a tiny randomly initialised UNet of the default layout is
used: fine for timing, meaningless for quality.

    python bench/ddnm_overhead.py --device cpu [--prior results/prior/faces] [--boundary linear]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def arguments(description: str, **defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--prior", default=None, help="prior directory (default: random tiny UNet)")
    parser.add_argument("--steps", type=int, default=defaults.get("steps", 50))
    parser.add_argument("--batch", type=int, default=defaults.get("batch", 8))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--boundary", default="circular", choices=["circular", "linear"])
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def setup(args):
    """(unet, scheduler, physics, y, note): a sparse-dot PSF camera and measurements of noise images."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from scipy.ndimage import gaussian_filter

    from thincam.models.prior import DEFAULT_PRIOR_CFG, build_unet, load_prior
    from thincam.physics.operators import LenslessConvolution

    torch.manual_seed(0)
    if args.prior:
        unet, scheduler = load_prior(args.prior, device=args.device)
        note = f"prior {args.prior}"
    else:
        unet = build_unet((3, args.size, args.size), DEFAULT_PRIOR_CFG).eval().requires_grad_(False).to(args.device)
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        note = "random tiny UNet (timing only, no quality meaning)"
    rng = np.random.default_rng(0)
    dots = np.zeros((args.size, args.size))
    dots[rng.integers(0, args.size, 12), rng.integers(0, args.size, 12)] = 1.0
    dots = gaussian_filter(dots, 0.7, mode="wrap")
    psf = torch.from_numpy(np.repeat((dots / dots.sum())[None], 3, 0).astype(np.float32))
    physics = LenslessConvolution(psf, boundary=args.boundary, sensor_shape=(args.size, args.size)).to(args.device)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(1)).to(args.device)
    y = physics.A(x) + 0.01 * torch.randn_like(x)
    n_params = sum(p.numel() for p in unet.parameters())
    return unet, scheduler, physics, y, f"{note}, {n_params / 1e6:.2f} M params"


def timed(fns: dict, device: str, repeats: int) -> dict:
    """Best wall time of each function over ``repeats`` round-robin rounds, after one warm-up each.

    Round-robin, so drifting load from other jobs on a shared machine hits every variant alike,
    and the best of the rounds, which is the least disturbed.
    """
    import torch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    best = {}
    for name, fn in fns.items():
        fn()
        best[name] = float("inf")
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    import torch
    from diffusers import DDIMScheduler

    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.sampling import step_generators

    args = arguments(__doc__.splitlines()[0])
    unet, scheduler, physics, y, note = setup(args)
    shape = (args.batch, unet.config.in_channels, args.size, args.size)
    eta = 0.85

    @torch.no_grad()
    def plain_ddim():
        ddim = DDIMScheduler.from_config(scheduler.config)
        ddim.set_timesteps(args.steps)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=generator).to(args.device)
        for t in ddim.timesteps:
            eps = unet(x, t).sample
            x = ddim.step(eps, t, x, eta=eta, generator=generator).prev_sample
        return x

    def ddnm(form, per_image):
        seeds = list(range(args.batch))
        generator = step_generators(seeds) if per_image else torch.Generator().manual_seed(0)
        return ddnm_plus(
            physics, y, unet, scheduler, steps=args.steps, eta=eta, sigma_y=0.01, form=form, generator=generator
        )

    print(
        f"device {args.device}, {note}, batch {args.batch}, {args.steps} steps, {args.size} px, "
        f"{args.boundary} operator, torch threads {torch.get_num_threads()}"
    )
    runs = {"plain DDIM (diffusers DDIMScheduler.step)": plain_ddim}
    variants = [("scalar", False), ("scalar", True)]
    if args.boundary == "circular":
        variants += [("svd", False), ("svd", True)]
    for form, per_image in variants:
        label = f"DDNM+ {form}, {'per-image generators' if per_image else 'one generator'}"
        runs[label] = lambda form=form, per_image=per_image: ddnm(form, per_image)
    seconds = timed(runs, args.device, args.repeats)
    base = seconds["plain DDIM (diffusers DDIMScheduler.step)"]
    for label, value in seconds.items():
        print(f"{label:48s} {value:8.3f} s   {value / base:.2f}x")


if __name__ == "__main__":
    main()
