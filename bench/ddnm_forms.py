"""Which DDNM+ form for an operator without an SVD: the scalar and tikhonov forms on the val split.

For each (form, steps) it prints, over the validation images of a workflow's dataset: PSNR, GMSD
(weight-free, what the tables choose by without LPIPS weights), consistency ||A xhat - y|| / ||y||
and seconds per image (batched, one thread), beside the anchor A+y. The seeds are the reconstruct
rule's, so a row matches what the workflow would compute. Run it on val only: the test split is
for reporting. Inputs are a finished run's files (the metalens: results/data/natural_metalens,
results/psf/metalens.h5, results/prior/natural):

    .venv/bin/python bench/ddnm_forms.py --data results/data/natural_metalens/val.h5 \\
        --psf results/psf/metalens.h5 --prior results/prior/natural --steps 20 50
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main() -> None:
    import pyiqa
    import torch

    from thincam.data.h5io import read_h5
    from thincam.metrics.fidelity import psnr
    from thincam.models.prior import load_prior
    from thincam.solvers import image_seeds
    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.sampling import initial_noise, step_generators
    from thincam.stages.common import dataset_operator, load_operator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a val split file of the workflow")
    parser.add_argument("--psf", required=True, help="its camera's PSF file")
    parser.add_argument("--prior", required=True, help="the prior folder")
    parser.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--forms", nargs="+", default=["scalar", "tikhonov"])
    parser.add_argument("--eta", type=float, default=0.85)
    parser.add_argument("--sigma-y", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0, help="the config's seed")
    args = parser.parse_args()
    torch.set_num_threads(1)

    arrays, attrs = read_h5(args.data, contract="dataset")
    physics = load_operator(args.psf, dataset_operator(args.data))
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    unet, scheduler = load_prior(args.prior)
    gmsd = pyiqa.create_metric("gmsd", device="cpu")
    seeds = image_seeds({"seed": args.seed, "dataset": attrs["dataset"]}, arrays["index"])

    def row(name: str, xhat: torch.Tensor, seconds: float) -> None:
        clipped = xhat.clamp(0, 1)
        consistency = (physics.A(xhat) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
        print(
            f"{name:22s} {float(psnr(clipped.numpy(), x.numpy()).mean()):8.2f} {float(gmsd(clipped, x).mean()):8.4f}"
            f" {float(consistency.mean()):11.4f} {seconds:9.2f}",
            flush=True,
        )

    print(f"{attrs['dataset']} {attrs['split']} ({len(x)} images), operator {dataset_operator(args.data)}")
    print(f"{'run':22s} {'PSNR':>8s} {'GMSD':>8s} {'consistency':>11s} {'s/image':>9s}")
    with torch.no_grad():
        row("anchor A+y", physics.A_dagger(y), 0.0)
        for form in args.forms:
            for steps in args.steps:
                start = time.perf_counter()
                xhat = ddnm_plus(
                    physics,
                    y,
                    unet,
                    scheduler,
                    steps=steps,
                    eta=args.eta,
                    sigma_y=args.sigma_y,
                    form=form,
                    x_T=initial_noise((len(seeds), *x.shape[1:]), seeds),
                    generator=step_generators(seeds),
                )
                row(f"{form} {steps} steps", xhat, (time.perf_counter() - start) / len(x))


if __name__ == "__main__":
    main()
