"""Quality on val against training steps, with and without warm-up + cosine decay and an EMA.

Trains one model of a finished workflow run again under each schedule variant and step count, and
scores it on the val split (never test) the way the tables would choose:

- ``faces_prior`` / ``natural_prior``: DDNM+ with 20 steps (the demo's ``s20`` row: SVD form on
  the faces, scalar on the metalens), PSNR and GMSD of its reconstructions;
- ``dmdiff``: DMDiff trained on the dataset's real pairs (the ``train`` block of the config, no
  pseudo pairs), restored at alpha 1;
- ``student``: the NSDD student of ``faces_phlatcam`` distilled from the run's target shards.

Variants: ``constant`` (flat learning rate, last weights), ``constant_ema``, ``cosine`` (warm-up
over a tenth of the steps, at most 100, then cosine decay to 0), ``cosine_ema``, and ``run`` (a
prior only: the run's own prior, trained as configured; ``--steps`` is then only its label). One thread per
process, so two models can be measured side by side on two cores. Rows are appended to ``--csv``.

    .venv/bin/python bench/training_schedules.py --run RUN_DIR --model faces_prior \\
        --steps 750 1500 --variants constant cosine cosine_ema --csv schedules.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VARIANTS = {
    "constant": {"lr_decay": "constant", "warmup_steps": 0, "ema_decay": 0.0},
    "constant_ema": {"lr_decay": "constant", "warmup_steps": 0},
    "cosine": {"lr_decay": "cosine", "ema_decay": 0.0},
    "cosine_ema": {"lr_decay": "cosine"},
}


def variant_keys(name: str, steps: int, ema_decay: float) -> dict | None:
    if name == "run":
        return None
    keys = dict(VARIANTS[name])
    if name.startswith("cosine"):
        keys["warmup_steps"] = max(1, min(100, steps // 10))
    if name.endswith("_ema"):
        keys["ema_decay"] = ema_decay
    return keys


def score(xhat, x) -> dict:
    import pyiqa

    from thincam.metrics.fidelity import psnr

    clipped = xhat.clamp(0, 1)
    gmsd = pyiqa.create_metric("gmsd", device="cpu")
    return {"psnr": float(psnr(clipped.numpy(), x.numpy()).mean()), "gmsd": float(gmsd(clipped, x).mean())}


def prior_run(run: Path, config: dict, dataset: str, prior: str, ddnm: dict, keys: dict, steps: int, seed: int) -> dict:
    """Train the prior again with ``keys``; DDNM+ on val with it."""
    import torch

    from thincam.data.h5io import read_h5
    from thincam.models.prior import save_prior, train_prior
    from thincam.solvers import image_seeds
    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.sampling import initial_noise, step_generators
    from thincam.stages.common import dataset_operator, load_operator

    from thincam.models.prior import load_prior

    if keys is None:  # the run's own prior, as configured
        unet, scheduler = load_prior(run / f"results/prior/{prior}")
    else:
        train, _ = read_h5(run / f"results/data/{dataset}/train.h5", ["x"], contract="dataset")
        cfg = {**config["priors"][prior]["train"], **keys, "steps": steps}
        with tempfile.TemporaryDirectory() as folder:
            save_prior(train_prior(train["x"], cfg, seed=seed), folder)
            unet, scheduler = load_prior(folder)
    val_path = run / f"results/data/{dataset}/val.h5"
    arrays, attrs = read_h5(val_path, contract="dataset")
    camera = config["datasets"][dataset]["camera"]
    physics = load_operator(run / f"results/psf/{camera}.h5", dataset_operator(val_path))
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    seeds = image_seeds({"seed": seed, "dataset": attrs["dataset"]}, arrays["index"])
    with torch.no_grad():
        xhat = ddnm_plus(
            physics, y, unet, scheduler, x_T=initial_noise((len(seeds), *x.shape[1:]), seeds),
            generator=step_generators(seeds), **ddnm,
        )  # fmt: skip
    return score(xhat, x)


def dmdiff_run(run: Path, config: dict, keys: dict, steps: int, seed: int) -> dict:
    """DMDiff on the real training pairs of natural_metalens; restored at alpha 1 on val."""
    import torch

    from thincam.data.h5io import read_h5
    from thincam.models.dmdiff.model import load_dmdiff
    from thincam.models.dmdiff.restore import restore
    from thincam.models.dmdiff.train import train_dmdiff
    from thincam.stages.dmdiff import read_fwhm

    spec = config["datasets"]["natural_metalens"]["dmdiff"]
    train, _ = read_h5(run / "results/data/natural_metalens/train.h5", ["x", "y"], contract="dataset")
    n = len(train["x"]) - int(spec["unpaired"])
    fwhm = read_fwhm(run / "results/psf/metalens.h5")
    base = run / "results/dmdiff/natural_metalens/base"
    cfg = {**spec["train"], **keys, "steps": steps}
    with tempfile.TemporaryDirectory() as folder:
        train_dmdiff(base, (train["y"][:n], train["x"][:n]), fwhm, folder, cfg, seed=seed)
        model = load_dmdiff(folder, "cpu", base_dir=base)
        val, _ = read_h5(run / "results/data/natural_metalens/val.h5", ["x", "y"], contract="dataset")
        x, y = torch.from_numpy(val["x"]), torch.from_numpy(val["y"])
        with torch.no_grad():
            return score(restore(model, y, fwhm, 1.0), x)


def student_run(run: Path, config: dict, keys: dict, steps: int, seed: int) -> dict:
    """The faces_phlatcam NSDD student from the run's target shards; val reconstructions."""
    import torch

    from thincam.data.h5io import read_h5
    from thincam.models.nsdd import load_student, nsdd_reconstruct
    from thincam.stages.common import dataset_operator, load_operator
    from thincam.stages.nsdd import distill_nsdd

    spec = config["datasets"]["faces_phlatcam"]["nsdd"]
    shards = sorted(str(p) for p in (run / "results/targets/faces_phlatcam").glob("shard-*.h5"))
    psf = run / "results/psf/phlatcam.h5"
    cfg = {**spec["student"], **keys, "steps": steps, "mode": "null"}
    with tempfile.TemporaryDirectory() as folder:
        distill_nsdd(shards, str(psf), spec.get("operator", {}), str(run / "results/prior/faces"), folder, cfg, seed)
        student = load_student(folder)
        val_path = run / "results/data/faces_phlatcam/val.h5"
        arrays, _ = read_h5(val_path, ["x", "y"], contract="dataset")
        physics = load_operator(psf, dataset_operator(val_path))
        x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
        with torch.no_grad():
            return score(nsdd_reconstruct(student, physics, y), x)


def main() -> None:
    import torch
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a workflow folder with the inputs built")
    parser.add_argument("--model", required=True, choices=["faces_prior", "natural_prior", "dmdiff", "student"])
    parser.add_argument("--steps", type=int, nargs="+", required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, "run"])
    parser.add_argument("--ema-decay", type=float, default=0.995)
    parser.add_argument("--csv", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    seed = int(config["seed"])
    faces_ddnm = config["datasets"]["faces_phlatcam"]["methods"]["ddnm"]["s20"]
    natural_ddnm = config["datasets"]["natural_metalens"]["methods"]["ddnm"]["s20"]
    runs = {
        "faces_prior": lambda keys, steps: prior_run(args.run, config, "faces_phlatcam", "faces", faces_ddnm, keys, steps, seed),
        "natural_prior": lambda keys, steps: prior_run(
            args.run, config, "natural_metalens", "natural", natural_ddnm, keys, steps, seed
        ),
        "dmdiff": lambda keys, steps: dmdiff_run(args.run, config, keys, steps, seed),
        "student": lambda keys, steps: student_run(args.run, config, keys, steps, seed),
    }
    new = not args.csv.exists()
    with open(args.csv, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["model", "variant", "steps", "ema_decay", "val_psnr_db", "val_gmsd", "train_s"])
        for steps in args.steps:
            for variant in args.variants:
                keys = variant_keys(variant, steps, args.ema_decay)
                start = time.perf_counter()
                result = runs[args.model](keys, steps)
                seconds = time.perf_counter() - start
                ema = "" if keys is None else keys.get("ema_decay", 0.0)
                row = [args.model, variant, steps, ema, f"{result['psnr']:.2f}", f"{result['gmsd']:.4f}", f"{seconds:.0f}"]
                writer.writerow(row)
                handle.flush()
                print(*row, flush=True)


if __name__ == "__main__":
    main()
