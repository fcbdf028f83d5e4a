"""How far the demo's numbers move when the CPU's math kernels change, beside the seed spread.

Two finished demo runs of the same commit, config and seed, one of them with other kernels (no
second CPU type at hand, so one run sets ATEN_CPU_CAPABILITY=default: PyTorch's scalar kernels
instead of the AVX-512 ones this CPU picks; reductions then sum in another order, as on a CPU
with other vector units):

    d=$(mktemp -d) && git clone . $d && cd $d && ATEN_CPU_CAPABILITY=default make demo
    .venv/bin/python bench/claims_across_backends.py RUN_A RUN_B [--claims results/claims/claims.csv]

RUN_A and RUN_B are the project folders (each holding results/). Prints each claim's value in
both runs, the move, and the standard deviation over seeds from `snakemake claims` (its
claims.csv), then every trained method's test PSNR in both runs and the largest move among the
methods that train nothing (Wiener, ADMM): they see the same kernels, so their move is the
kernels' own, not amplified by training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from thincam.report.claims import CLAIMS, claim_tables, claim_values  # noqa: E402

UNTRAINED = {"wiener", "admm"}


def run_values(run: Path, config: dict) -> dict[str, float]:
    tables = {}
    for kind, path in claim_tables(config, "results").items():
        tables[kind] = pd.read_csv(run / path, keep_default_na=False, na_values=[""])
    return claim_values(tables)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--claims", type=Path, help="claims.csv of `snakemake claims` (seed spread)")
    args = parser.parse_args()
    config = yaml.safe_load((args.run_a / "config.yaml").read_text())
    a, b = run_values(args.run_a, config), run_values(args.run_b, config)
    spread = {}
    if args.claims:
        spread = pd.read_csv(args.claims).set_index("quantity")["std"].to_dict()
    print(f"{'claim quantity':44s} {'run A':>9s} {'run B':>9s} {'move':>9s} {'seed std':>9s}")
    for claim in CLAIMS:
        std = spread.get(claim.quantity, float("nan"))
        move = b[claim.key] - a[claim.key]
        print(f"{claim.quantity:44s} {a[claim.key]:9.4g} {b[claim.key]:9.4g} {move:9.3g} {std:9.3g}")
    keys = ["dataset", "split", "method", "variant"]
    metrics = [
        pd.read_csv(run / "results/tables/metrics.csv").set_index(keys)["psnr"] for run in (args.run_a, args.run_b)
    ]
    both = pd.concat(metrics, axis=1, keys=["A", "B"]).dropna()
    both = both[both.index.get_level_values("split") == "test"]
    both["move"] = both["B"] - both["A"]
    untrained = both[both.index.get_level_values("method").isin(UNTRAINED)]
    trained = both.drop(untrained.index)
    print("\ntest PSNR (dB) of every method that uses a trained model:")
    print(trained.round(3).to_string())
    print(
        f"\nlargest |move| of test PSNR: {trained['move'].abs().max():.3g} dB with a trained model, "
        f"{untrained['move'].abs().max():.3g} dB without (Wiener, ADMM)"
    )


if __name__ == "__main__":
    main()
