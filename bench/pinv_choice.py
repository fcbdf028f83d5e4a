"""Which A+ for a camera: anchor quality of each candidate pseudo-inverse on the validation split.

For each candidate (``tikhonov`` lam or ``tsvd`` threshold) it prints, over the val images of a
simulated dataset: the PSNR of the anchor A+y (what NSDD keeps in the range space), the PSNR of the
oracle fill A+y + (I - A+A) x (the best any null-space filler can do with this A+: its error is
the range-space noise alone), the fraction of the image the null space holds (||Px|| / ||x||) and
the projector error ||P P x - P x|| / ||x||. Run it on val only: the test split is for reporting.

    .venv/bin/python bench/pinv_choice.py --camera phlatcam --dataset faces_phlatcam [--size 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

CANDIDATES = [
    {"kind": "tikhonov", "lam": lam, "iters": 50} for lam in (1e-4, 4e-4, 2.5e-3, 1e-2)
] + [{"kind": "tsvd", "threshold": t} for t in (0.01, 0.02, 0.05, 0.1)]


def main() -> None:
    import torch

    from thincam.data.simulate import operator_spec, stable_seed
    from thincam.data.sources import load_source
    from thincam.data.splits import split_indices
    from thincam.metrics.fidelity import psnr
    from thincam.optics.calibrate import camera_psf
    from thincam.physics import build_operator
    from thincam.physics.noise import sensor_noise
    from thincam.physics.operators import projector_error

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "config.yaml"))
    parser.add_argument("--camera", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--sigma", type=float, help="override the dataset's gaussian_sigma")
    args = parser.parse_args()
    config = yaml.safe_load(open(args.config))
    dataset = config["datasets"][args.dataset]
    psf, _ = camera_psf(config["cameras"][args.camera], where=args.camera, key=args.camera)
    shape = tuple(dataset["image_size"])
    images = load_source(dataset["source"], shape, seed=stable_seed(config["seed"], args.dataset, "source"))
    splits = split_indices(len(images), dataset["splits"], stable_seed(config["seed"], args.dataset, "splits"))
    x = torch.from_numpy(images[splits["val"]])
    noise = dict(dataset["noise"])
    if args.sigma is not None:
        noise["gaussian_sigma"] = args.sigma
    print(f"{args.dataset} val ({len(x)} images), camera {args.camera}, noise {noise}")
    print(f"{'A+':38s} {'anchor dB':>9s} {'oracle dB':>9s} {'null part':>9s} {'P^2-P':>8s}")
    for candidate in CANDIDATES:
        spec = {**operator_spec(dataset["operator"], psf["psf"].shape[-2:], shape), "pinv": candidate}
        try:
            physics = build_operator(psf["psf"], spec)
        except ValueError as err:
            print(f"{str(candidate):38s} {err}")
            continue
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            y = sensor_noise(physics.A(x), generator=generator, **noise)
            anchor = physics.A_dagger(y)
            oracle = anchor + physics.null_project(x)
            null_part = float(torch.linalg.vector_norm(physics.null_project(x)) / torch.linalg.vector_norm(x))
            error = projector_error(physics, x)
        a = psnr(anchor.clamp(0, 1).numpy(), x.numpy()).mean()
        o = psnr(oracle.clamp(0, 1).numpy(), x.numpy()).mean()
        print(f"{str(candidate):38s} {a:9.2f} {o:9.2f} {null_part:9.3f} {error:8.1e}")


if __name__ == "__main__":
    main()
