"""Copy the figures the README shows from a finished workflow run into docs/img/.

The README shows only figures the workflow writes; this script is how they get there, so a
figure in the README is always one the current code can regenerate:

    make demo && .venv/bin/python scripts/readme_figures.py [--results results]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# README image -> the workflow output it is a copy of (relative to the results folder).
README_FIGURES = {"docs/img/capture_diffusercam_hand.png": "figures/capture_diffusercam_hand.png"}


def main() -> None:
    from thincam.data.atomic import write_bytes_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "results", help="results folder of a finished run")
    args = parser.parse_args()
    missing = [str(args.results / source) for source in README_FIGURES.values() if not (args.results / source).is_file()]
    if missing:
        raise SystemExit(f"not written yet: {', '.join(missing)}; run `make demo` (or snakemake on those files) first")
    for target, source in README_FIGURES.items():
        write_bytes_atomic((args.results / source).read_bytes(), REPO / target)
        print(f"{args.results / source} -> {target}")


if __name__ == "__main__":
    main()
