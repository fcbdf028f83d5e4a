"""Teacher target precompute (ddnm_targets, DDNM+) images/s vs the bare UNet bound.

The bound is ceil(N / batch) x steps UNet forwards at that batch size: what sampling would cost if
the projection, file reading/writing and A+ anchors were free. Without --prior a tiny randomly
initialised UNet is saved and used: timing only, no quality meaning.

    python bench/targets_throughput.py --device cpu [--prior results/prior/faces] [--images 32]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from scipy.ndimage import gaussian_filter

    from thincam.data.h5io import atomic_write_h5
    from thincam.stages.nsdd import ddnm_targets
    from thincam.models.prior import DEFAULT_PRIOR_CFG, build_unet, load_prior

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--prior", default=None)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--form", default="svd", choices=["svd", "scalar"])
    args = parser.parse_args()

    size = 32
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prior = args.prior
        if prior is None:
            torch.manual_seed(0)
            build_unet((3, size, size), DEFAULT_PRIOR_CFG).save_pretrained(tmp / "prior" / "unet")
            DDPMScheduler(num_train_timesteps=1000).save_pretrained(tmp / "prior" / "scheduler")
            prior = tmp / "prior"
            note = "random tiny UNet (timing only, no quality meaning)"
        else:
            note = f"prior {prior}"
        unet, _ = load_prior(prior, device=args.device)
        size = unet.config.sample_size if isinstance(unet.config.sample_size, int) else unet.config.sample_size[0]
        rng = np.random.default_rng(0)
        dots = np.zeros((size, size))
        dots[rng.integers(0, size, 12), rng.integers(0, size, 12)] = 1.0
        dots = gaussian_filter(dots, 0.7, mode="wrap")
        atomic_write_h5(
            tmp / "psf.h5", {"psf": np.repeat((dots / dots.sum())[None], 3, 0).astype(np.float32)}, contract="psf"
        )
        operator = {
            "kind": "lensless",
            "boundary": "circular",
            "scene_shape": [size, size],
            "sensor_shape": [size, size],
            "pinv": {"kind": "tikhonov", "lam": 1e-2, "iters": 50},
        }
        y = rng.uniform(0, 1, (args.images, 3, size, size)).astype(np.float32)
        atomic_write_h5(
            tmp / "train.h5",
            {"y": y, "index": np.arange(args.images)},
            attrs={"operator": operator, "dataset": "bench"},
            contract="dataset",
        )
        teacher = {
            "steps": args.steps,
            "eta": 0.85,
            "sigma_y": 0.01,
            "form": args.form,
            "travel_length": 0,
            "travel_repeats": 1,
        }

        def sync():
            if args.device == "cuda":
                torch.cuda.synchronize()

        sync()
        start = time.perf_counter()
        ddnm_targets(
            tmp / "train.h5",
            tmp / "psf.h5",
            operator,
            prior,
            tmp / "shard.h5",
            shard=0,
            n_shards=1,
            teacher=teacher,
            base_seed=0,
            dataset="bench",
            batch_size=args.batch,
            device=args.device,
        )
        sync()
        shard_s = time.perf_counter() - start

        x = torch.randn(args.batch, 3, size, size, device=args.device)
        t = torch.full((args.batch,), 500, device=args.device)
        forward_s = float("inf")  # best single forward: the least disturbed on a shared machine
        with torch.no_grad():
            unet(x, t)
            for _ in range(20):
                sync()
                start = time.perf_counter()
                unet(x, t)
                sync()
                forward_s = min(forward_s, time.perf_counter() - start)
    bound_s = math.ceil(args.images / args.batch) * args.steps * forward_s
    print(
        f"device {args.device}, {note}, {args.images} images, batch {args.batch}, {args.steps} steps, "
        f"form {args.form}, torch threads {torch.get_num_threads()}"
    )
    print(
        f"{'ddnm_targets (incl. load, anchors, write)':52s} {args.images / shard_s:8.2f} images/s  ({shard_s:.2f} s)"
    )
    print(
        f"{'bare UNet bound (steps x batches forwards)':52s} {args.images / bound_s:8.2f} images/s  ({bound_s:.2f} s)"
    )
    print(f"{'efficiency':52s} {bound_s / shard_s:8.2f} of the bound")


if __name__ == "__main__":
    main()
