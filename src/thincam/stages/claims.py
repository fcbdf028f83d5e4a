"""The ``claims`` rule: every seed's tables -> the claims table, each claim's values and a figure."""

from __future__ import annotations

import logging
import os
from typing import Mapping

import pandas as pd

from thincam.data.atomic import write_csv_atomic
from thincam.report import claims as claims_report
from thincam.stages.report import read_table

log = logging.getLogger(__name__)


def claims(
    tables: Mapping[int, Mapping[str, str]], out_table: str, out_values: str, out_png: str
) -> pd.DataFrame:
    """Each claim of :data:`thincam.report.claims.CLAIMS` in every seed's run (``tables``: seed ->
    {table kind: CSV}), summarised with mean, spread and verdict."""
    values = {}
    for seed, paths in tables.items():
        folders = sorted({os.path.dirname(p) for p in paths.values()})
        log.info("seed %s: tables in %s", seed, ", ".join(folders))
        values[int(seed)] = claims_report.claim_values({kind: read_table(p) for kind, p in paths.items()})
    summary = claims_report.summarize(values)
    long = pd.DataFrame(
        [{"claim": key, "seed": seed, "value": v} for seed, row in sorted(values.items()) for key, v in row.items()]
    )
    write_csv_atomic(long, out_values)
    write_csv_atomic(summary.round(6), out_table)
    claims_report.claims_figure(summary, out_png)
    for _, row in summary.iterrows():
        log.info("%s: %.4g +/- %.2g (%s)", row["quantity"], row["mean"], row["std"], row["verdict"])
    return summary
