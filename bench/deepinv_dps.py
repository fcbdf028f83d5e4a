"""DeepInverse's DPS vs thincam's DPS: same prior, images, step count and device, side by side.

Both run as the workflow runs them (each module's ``make_solver``, one image at a time, each
image from its own seed), alternating image by image so load drift on a shared machine hits both
alike. Prints per method the median seconds per image, mean PSNR against the ground truth and
mean consistency ||A xhat - y|| / ||y||, then the time ratio deepinv / thincam and the PSNR and
consistency differences (deepinv minus thincam). The guidance strengths are on different scales
(thincam's zeta is a constant step, deepinv's weight is scaled by the noise level), so each takes
its own: the defaults are the default config's variants.

Needs a dataset file with ``x``, its PSF file and a prior, e.g. from the default workflow
(``snakemake --cores 1 results/prior/faces results/data/faces_phlatcam/val.h5``, about 6 min):

    python bench/deepinv_dps.py --data results/data/faces_phlatcam/val.h5 \\
        --psf results/psf/phlatcam.h5 --prior results/prior/faces --n 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset file with ground truth x (e.g. val.h5)")
    parser.add_argument("--psf", required=True, help="the dataset camera's PSF file")
    parser.add_argument("--prior", required=True, help="prior directory")
    parser.add_argument("--n", type=int, default=4, help="images")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--zeta", type=float, default=10.0, help="thincam DPS guidance step")
    parser.add_argument("--weight", type=float, default=3.0, help="deepinv DPS guidance weight")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch

    from thincam.data.h5io import json_attr, read_h5
    from thincam.metrics.fidelity import consistency, psnr
    from thincam.solvers import deepinv_dps, dps
    from thincam.stages.common import load_operator

    arrays, attrs = read_h5(args.data, contract="dataset")
    physics = load_operator(args.psf, json_attr(attrs, "operator"), device=args.device)
    y_all, x_all, index = arrays["y"][: args.n], arrays["x"][: args.n], arrays["index"][: args.n]
    context = {
        "dataset": attrs["dataset"],
        "seed": args.seed,
        "device": args.device,
        "models": {"prior": args.prior},
    }
    methods = {
        f"thincam DPS (zeta {args.zeta:g})": dps.make_solver(
            physics, {"steps": args.steps, "zeta": args.zeta}, context
        ),
        f"deepinv DPS (weight {args.weight:g})": deepinv_dps.make_solver(
            physics, {"steps": args.steps, "weight": args.weight}, context
        ),
    }
    seconds = {name: [] for name in methods}
    xhat = {name: [] for name in methods}

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    for i in range(len(y_all)):
        y = torch.from_numpy(y_all[i : i + 1]).to(args.device)
        for name, solve in methods.items():
            sync()
            start = time.perf_counter()
            out = solve(y, index[i : i + 1])
            sync()
            seconds[name].append(time.perf_counter() - start)
            xhat[name].append(out.detach().cpu().numpy())

    print(
        f"{len(y_all)} images of {attrs['dataset']} ({args.data}), {args.steps} steps, device "
        f"{args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'method':34s} {'s/image':>8s} {'PSNR dB':>8s} {'consistency':>12s}")
    summary = {}
    for name in methods:
        images = np.concatenate(xhat[name])
        with torch.no_grad():
            a_xhat = physics.A(torch.from_numpy(images).to(args.device)).cpu().numpy()
        summary[name] = (
            statistics.median(seconds[name]),
            float(np.mean(psnr(np.clip(images, 0, 1), x_all))),
            float(np.mean(consistency(a_xhat, y_all))),
        )
        print(f"{name:34s} {summary[name][0]:8.3f} {summary[name][1]:8.2f} {summary[name][2]:12.4f}")
    (t_ours, p_ours, c_ours), (t_dinv, p_dinv, c_dinv) = summary.values()
    print(
        f"deepinv / thincam time {t_dinv / t_ours:.2f}x, PSNR {p_dinv - p_ours:+.2f} dB, "
        f"consistency {c_dinv - c_ours:+.4f}"
    )


if __name__ == "__main__":
    main()
