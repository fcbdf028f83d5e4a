"""How far the demo's numbers move when the CPU's math kernels change, beside the seed spread.

Two finished demo runs of the same commit, config and seed, one of them with other kernels (no
second CPU type at hand, so one run sets ATEN_CPU_CAPABILITY=default: PyTorch's scalar kernels
instead of the AVX-512 ones this CPU picks; reductions then sum in another order, as on a CPU
with other vector units):

    d=$(mktemp -d) && git clone . $d && cd $d && ATEN_CPU_CAPABILITY=default make demo
    .venv/bin/python bench/claims_across_backends.py RUN_A RUN_B [--claims results/claims/claims.csv]

RUN_A and RUN_B are the project folders (each holding results/). Prints each claim's value in
both runs, the move, and the standard deviation over seeds from `snakemake claims` (its
claims.csv), once both runs have written their tables; then, for every dataset whose test
metrics both runs have, each method's mean test metrics in both, the move, and the largest move
with and without a trained model (Wiener and ADMM train nothing: their move is the kernels' own,
not amplified by training).
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


def run_values(run: Path, config: dict) -> dict[str, float] | None:
    """The run's claim values, or None while its tables are not all written."""
    paths = {kind: run / path for kind, path in claim_tables(config, "results").items()}
    if not all(path.is_file() for path in paths.values()):
        return None
    return claim_values({kind: pd.read_csv(path, keep_default_na=False, na_values=[""]) for kind, path in paths.items()})


def test_means(run: Path, dataset: str) -> pd.DataFrame:
    """Per method and variant, the mean of each metric over the test images of ``dataset``."""
    per_image = pd.read_csv(run / "results/metrics" / dataset / "test.csv")
    columns = [c for c in ("psnr", "ssim", "consistency", "piqe") if per_image[c].notna().any()]
    return per_image.groupby(["method", "variant"])[columns].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--claims", type=Path, help="claims.csv of `snakemake claims` (seed spread)")
    args = parser.parse_args()
    config = yaml.safe_load((args.run_a / "config.yaml").read_text())
    a, b = run_values(args.run_a, config), run_values(args.run_b, config)
    if a is not None and b is not None:
        spread = pd.read_csv(args.claims).set_index("quantity")["std"].to_dict() if args.claims else {}
        print(f"{'claim quantity':44s} {'run A':>9s} {'run B':>9s} {'move':>9s} {'seed std':>9s}")
        for claim in CLAIMS:
            std = spread.get(claim.quantity, float("nan"))
            move = b[claim.key] - a[claim.key]
            print(f"{claim.quantity:44s} {a[claim.key]:9.4g} {b[claim.key]:9.4g} {move:9.3g} {std:9.3g}")
    else:
        print("(claims: a run lacks some of their tables; comparing the test metrics both runs have)")
    for folder in sorted((args.run_a / "results/metrics").iterdir()):
        if not (args.run_b / "results/metrics" / folder.name / "test.csv").is_file():
            continue
        means = [test_means(run, folder.name) for run in (args.run_a, args.run_b)]
        both = pd.concat([*means, means[1] - means[0]], axis=1, keys=["run A", "run B", "move"])
        print(f"\n{folder.name}, test means:")
        print(both.round(5).to_string())
        untrained = both[both.index.get_level_values("method").isin(UNTRAINED)]["move"].abs().max().max()
        trained = both.drop(untrained_index(both))["move"].abs().max().max()
        print(f"largest |move|: {trained:.3g} with a trained model, {untrained:.3g} without (Wiener, ADMM)")


def untrained_index(table: pd.DataFrame):
    return table.index[table.index.get_level_values("method").isin(UNTRAINED)]


if __name__ == "__main__":
    main()
