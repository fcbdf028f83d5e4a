"""Copy the figures the README shows from a finished workflow run into docs/img/, and with
--claims the claims figure and table of `snakemake claims` (the table between the README's
claims-table markers).

The README shows only figures and claim numbers the workflow writes; this script is how they get
there, so they are always what the current code regenerates:

    make demo && .venv/bin/python scripts/readme_figures.py [--results results]
    .venv/bin/snakemake --cores all claims && .venv/bin/python scripts/readme_figures.py --claims
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

# README image -> the workflow output it is a copy of (relative to the results folder).
README_FIGURES = {"docs/img/capture_diffusercam_hand.png": "figures/capture_diffusercam_hand.png"}
CLAIMS_FIGURES = {"docs/img/claims.png": "claims/claims.png"}
CLAIMS_TABLE = "claims/claims.csv"
MARKERS = ("<!-- claims table: scripts/readme_figures.py --claims -->", "<!-- end of claims table -->")


def write_claims_table(summary_csv: Path, readme: Path) -> None:
    """Replace the README's text between MARKERS with the claims table."""
    import pandas as pd

    from thincam.data.atomic import write_bytes_atomic
    from thincam.report.claims import claims_markdown

    text = readme.read_text()
    start, end = text.find(MARKERS[0]), text.find(MARKERS[1])
    if start < 0 or end < start:
        raise SystemExit(f"{readme}: no {MARKERS[0]} ... {MARKERS[1]} block to fill")
    table = claims_markdown(pd.read_csv(summary_csv))
    text = text[: start + len(MARKERS[0])] + "\n" + table + text[end:]
    write_bytes_atomic(text.encode(), readme)


def main() -> None:
    from thincam.data.atomic import write_bytes_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=REPO / "results", help="results folder of a finished run")
    parser.add_argument("--claims", action="store_true", help="the claims figure and table instead")
    args = parser.parse_args()
    figures = CLAIMS_FIGURES if args.claims else README_FIGURES
    needed = [*figures.values(), *([CLAIMS_TABLE] if args.claims else [])]
    missing = [str(args.results / source) for source in needed if not (args.results / source).is_file()]
    if missing:
        target = "snakemake claims" if args.claims else "make demo"
        raise SystemExit(f"not written yet: {', '.join(missing)}; run `{target}` (or snakemake on those files) first")
    for target, source in figures.items():
        write_bytes_atomic((args.results / source).read_bytes(), REPO / target)
        print(f"{args.results / source} -> {target}")
    if args.claims:
        write_claims_table(args.results / CLAIMS_TABLE, REPO / "README.md")
        print(f"{args.results / CLAIMS_TABLE} -> README.md")


if __name__ == "__main__":
    main()
