"""Choose DMDiff's weight-free perceptual weight on the VALIDATION split (never test).

What: for each ``--weight`` of ``dmdiff.train.weight_free_weight``, train DMDiff with the default
config's ``train`` block on the demo's real pairs (the leading ``train - unpaired`` images; no
pseudo pairs, so one training per weight), then run the tunable decoder over ``--alphas`` on
``val.h5`` and print PSNR, SSIM, the weight-free perceptual metrics (GMSD, MS-SSIM, FSIM, VIF,
NLPD, PIQE; pyiqa, no weights) and a sharpness ratio (mean Sobel gradient magnitude of the
restoration over that of the clean image; 1 = as sharp as the truth). The paper's shape: PSNR
peaks below alpha 1 while sharpness / perceptual scores keep improving to 1.05.

How: after the demo's data and base exist (``snakemake results/dmdiff/natural_metalens/base
results/data/natural_metalens/val.h5``), from the repository root:

    OMP_NUM_THREADS=1 python bench/dmdiff_weight_free.py RUN_DIR --weight 0 0.1 --out sweep.csv

RUN_DIR holds ``results/``; models go to RUN_DIR/bench_weight_free/w<weight>/ and are reused when
present. One weight per process is how it was run (``--weight`` one value, processes in parallel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
DATASET = "natural_metalens"
ALPHAS = (0.0, 0.5, 0.75, 0.9, 1.0, 1.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--weight", type=float, nargs="+", required=True)
    parser.add_argument("--alphas", type=float, nargs="+", default=ALPHAS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from thincam.data.h5io import read_h5
    from thincam.metrics.fidelity import psnr, ssim
    from thincam.metrics.perceptual import PerceptualMetrics
    from thincam.models.dmdiff.model import load_dmdiff
    from thincam.models.dmdiff.restore import restore_sweep
    from thincam.models.dmdiff.train import train_dmdiff
    from thincam.models.losses import gradient_magnitude
    from thincam.stages.dmdiff import n_paired, read_fwhm

    torch.set_num_threads(1)
    spec = yaml.safe_load((REPO / "config.yaml").read_text())["datasets"][DATASET]["dmdiff"]
    results = args.run_dir / "results"
    train, _ = read_h5(results / f"data/{DATASET}/train.h5", ["x", "y"], contract="dataset")
    val, _ = read_h5(results / f"data/{DATASET}/val.h5", ["x", "y"], contract="dataset")
    fwhm = read_fwhm(results / "psf/metalens.h5")
    base = results / f"dmdiff/{DATASET}/base"
    n = n_paired(len(train["x"]), spec["unpaired"])
    metrics = PerceptualMetrics(None)
    sharp_truth = float(gradient_magnitude(torch.from_numpy(val["x"])).mean())
    rows = []
    for weight in args.weight:
        model_dir = args.run_dir / "bench_weight_free" / f"w{weight:g}"
        if not (model_dir / "dmdiff_config.json").is_file():
            cfg = {**spec["train"], "weight_free_weight": weight}
            train_dmdiff(base, (train["y"][:n], train["x"][:n]), fwhm, model_dir, cfg, seed=0)
        model = load_dmdiff(model_dir)
        sweep = restore_sweep(model, val["y"], fwhm, args.alphas).numpy()
        for alpha, xhat in zip(args.alphas, sweep):
            scores = metrics(xhat, val["x"])
            rows.append(
                {
                    "weight": weight,
                    "alpha": alpha,
                    "psnr": float(psnr(xhat, val["x"]).mean()),
                    "ssim": float(ssim(xhat, val["x"]).mean()),
                    **{k: float(np.nanmean(scores[k])) for k in ("gmsd", "ms_ssim", "fsim", "vif", "nlpd", "piqe")},
                    "sharpness": float(gradient_magnitude(torch.from_numpy(xhat)).mean()) / sharp_truth,
                }
            )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    sys.exit(main())
