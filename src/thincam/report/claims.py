"""The demo's paper claims over seeds: each claim one number read from a run's tables, its mean
and spread over seeds, and a verdict.

Why: training amplifies floating-point differences, so a difference of a few tenths of a dB
between two trained models moves with the seed and with the CPU's math kernels. A claim is only
a finding when every seed agrees on it. The seeds' runs re-train and re-run what the claims read
on the demo's own measurements (:func:`seed_config`), so the spread is that of training and
sampling, and each claim compares models on the same test images.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from thincam.errors import BadInputError
from thincam.report import figures

log = logging.getLogger(__name__)

SEED_RUNS = "results/seeds"  # each seed's run_dir is SEED_RUNS/{seed}


def seed_run_dir(config: Mapping[str, Any], seed: int) -> str:
    """Where a claims seed's run writes: the demo's own folder for the demo's seed."""
    if seed == config["seed"]:
        return config.get("run_dir", "results")
    return f"{SEED_RUNS}/{seed}"


def seed_config(config: Mapping[str, Any], seed: int) -> dict:
    """The config one claims seed runs: the demo's, with ``seed``, its own ``run_dir``, only the
    methods ``claims.methods`` names (so only the models those need are trained), and no
    ``claims`` of its own."""
    keep = config["claims"]["methods"]
    run = {k: copy.deepcopy(v) for k, v in config.items() if k != "claims"}
    run["seed"] = seed
    run["run_dir"] = seed_run_dir(config, seed)
    for name, dataset in run["datasets"].items():
        for key in ("methods", "sweeps"):
            if key in dataset:
                dataset[key] = {m: v for m, v in dataset[key].items() if m in keep.get(name, [])}
    captures = {
        name: [r for r in runs if r.split("/")[0] in keep.get(name, [])]
        for name, runs in run["figures"]["capture_figures"].items()
    }
    run["figures"]["capture_figures"] = {name: runs for name, runs in captures.items() if runs}
    return run


def claim_tables(config: Mapping[str, Any], run_dir: str) -> dict[str, str]:
    """{table kind: CSV path} of one run that the claims read (``capture`` for the first
    capture figure's table)."""
    tables = {kind: f"{run_dir}/tables/{kind}.csv" for kind in _TABLE_KINDS if config.get("tables", {}).get(kind)}
    captures = list(config["figures"]["capture_figures"])
    if captures:
        tables["capture"] = f"{run_dir}/tables/capture_{captures[0]}.csv"
    return tables


def _cell(table: pd.DataFrame, key: str, label: str, column: str) -> float:
    """The value in ``column`` of the row whose ``key`` is ``label`` ("Method/Variant" for both)."""
    if "/" in label:
        method, variant = label.split("/")
        rows = table[(table["Method"].astype(str) == method) & (table["Variant"].astype(str) == variant)]
    else:
        rows = table[table[key].astype(str) == label]
    if rows.empty:
        raise BadInputError(f"no row {label!r} (have {list(table[key])})")
    if column not in table.columns:
        raise BadInputError(f"no column {column!r} (have {list(table.columns)})")
    return float(rows.iloc[0][column])


def _diff(kind: str, key: str, a: str, b: str, column: str) -> Callable[[Mapping[str, pd.DataFrame]], float]:
    """Row ``a`` minus row ``b`` in ``column`` of table ``kind`` (rows found by column ``key``)."""
    return lambda t: _cell(t[kind], key, a, column) - _cell(t[kind], key, b, column)


def _ratio(kind: str, key: str, a: str, b: str, column: str) -> Callable[[Mapping[str, pd.DataFrame]], float]:
    return lambda t: _cell(t[kind], key, a, column) / _cell(t[kind], key, b, column)


def _alpha_peak(t: Mapping[str, pd.DataFrame]) -> float:
    """PSNR at alpha 1 minus the best PSNR below it: > 0 when PSNR peaks at 1 (or above)."""
    sweep = t["alpha_sweep"].astype({"alpha": float})
    at_one = sweep.loc[np.isclose(sweep["alpha"], 1.0), "PSNR"]
    below = sweep.loc[sweep["alpha"] < 1.0 - 1e-9, "PSNR"]
    if at_one.empty or below.empty:
        raise BadInputError(f"the alpha sweep needs alpha 1 and an alpha below it (have {list(sweep['alpha'])})")
    return float(at_one.iloc[0] - below.max())


def _pseudo_gain(t: Mapping[str, pd.DataFrame]) -> float:
    table = t["dmdiff_ablation"].dropna(subset=["pseudo capture PSNR (dB)"])
    if table.empty:
        raise BadInputError("the DMDiff ablation table has no pseudo-pair quality (no model used pseudo pairs)")
    row = table.iloc[0]
    return float(row["pseudo capture PSNR (dB)"] - row["clean-as-capture PSNR (dB)"])


@dataclass(frozen=True)
class Claim:
    """A claim as one number per run, and the side of ``threshold`` it claims that number is on."""

    key: str
    group: str  # the paper (or workflow) the claim belongs to
    statement: str  # what the paper (or the README at one seed) says
    quantity: str  # what is measured, with its unit
    value: Callable[[Mapping[str, pd.DataFrame]], float]
    side: str  # ">" or "<"
    threshold: float = 0.0

    def holds(self, value: float) -> bool:
        return value > self.threshold if self.side == ">" else value < self.threshold


_N, _F, _T = "NSDD (null space)", "NSDD (full image)", "DDNM+ (teacher)"
CLAIMS = (
    Claim("nsdd_teacher_psnr", "NSDD", "NSDD matches its DDNM+ teacher's PSNR",
          "PSNR, NSDD - teacher (dB)", _diff("nsdd_ablation", "Ablation", _N, _T, "PSNR"), ">", 0.0),
    Claim("nsdd_teacher_gmsd", "NSDD", "NSDD is near its teacher's perceptual quality",
          "GMSD, NSDD - teacher", _diff("nsdd_ablation", "Ablation", _N, _T, "GMSD"), "<", 0.0),
    Claim("nsdd_speedup", "NSDD", "NSDD needs a fraction of its teacher's time",
          "time, teacher / NSDD (x)", _ratio("nsdd_ablation", "Ablation", _T, _N, "time (s)"), ">", 1.0),
    Claim("null_vs_full_psnr", "NSDD", "distilling the null space beats distilling the full image",
          "PSNR, null space - full image (dB)", _diff("nsdd_ablation", "Ablation", _N, _F, "PSNR"), ">", 0.0),
    Claim("null_vs_full_gmsd", "NSDD", "the null-space student is perceptually better",
          "GMSD, null space - full image", _diff("nsdd_ablation", "Ablation", _N, _F, "GMSD"), "<", 0.0),
    Claim("ddnm_vs_dps_consistency", "NSDD", "DDNM+ fits the measurement better than DPS",
          "consistency, DPS - DDNM+", _diff("nsdd_main", "Method", "DPS", "DDNM+", "consistency"), ">", 0.0),
    Claim("alpha_peak", "DMDiff", "PSNR peaks at alpha 1.0, not below it",
          "PSNR, alpha 1 - best alpha < 1 (dB)", _alpha_peak, ">", 0.0),
    Claim("alpha_gmsd", "DMDiff", "a larger alpha is perceptually better",
          "GMSD, alpha 1.05 - alpha 0", _diff("alpha_sweep", "Variant", "alpha1.05", "alpha0", "GMSD"), "<", 0.0),
    Claim("negative_path", "DMDiff", "the negative path (pseudo pairs) helps",
          "PSNR, full - no negative path (dB)", _diff("dmdiff_ablation", "Variant", "full", "no_negative", "PSNR"), ">", 0.0),
    Claim("pseudo_gain", "DMDiff", "pseudo captures pass the 1 dB rule",
          "PSNR vs true captures, pseudo - clean (dB)", _pseudo_gain, ">", 1.0),
    Claim("svda", "DMDiff", "SVDA helps",
          "PSNR, full - no SVDA (dB)", _diff("dmdiff_ablation", "Variant", "full", "no_svda", "PSNR"), ">", 0.0),
    Claim("svda_fwhm", "DMDiff", "the FWHM input of SVDA helps",
          "PSNR, full - SVDA without FWHM (dB)", _diff("dmdiff_ablation", "Variant", "full", "svda_no_fwhm", "PSNR"), ">", 0.0),
    Claim("dmdiff_vs_unet", "DMDiff", "DMDiff beats the supervised UNet",
          "PSNR, DMDiff full - UNet (dB)", _diff("dmdiff_main", "Method", "DMDiff/full", "UNet (supervised)", "PSNR"), ">", 0.0),
    Claim("capture_piqe", "capture", "on the real capture NSDD is as clean as its teacher",
          "PIQE, NSDD - DDNM+", _diff("capture", "Method", "NSDD", "DDNM+", "PIQE"), "<", 0.0),
    Claim("capture_consistency", "capture", "on the real capture NSDD fits the measurement as its teacher does",
          "consistency, NSDD - DDNM+", _diff("capture", "Method", "NSDD", "DDNM+", "consistency"), "<", 0.0),
)
_TABLE_KINDS = ("nsdd_main", "nsdd_ablation", "dmdiff_main", "alpha_sweep", "dmdiff_ablation")


def claim_values(tables: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """{claim key: value} of one run's tables; NaN (with a warning saying why) for a claim whose
    table or rows the run's config does not build."""
    values = {}
    for claim in CLAIMS:
        try:
            values[claim.key] = claim.value(tables)
        except KeyError as err:  # the run's config builds no such table
            log.warning("claim %r left out: no table %s", claim.key, err)
            values[claim.key] = math.nan
        except BadInputError as err:
            log.warning("claim %r left out: %s", claim.key, err)
            values[claim.key] = math.nan
    return values


def verdict(claim: Claim, values: np.ndarray) -> str:
    """"holds" when every seed is on the claimed side, "does not hold" when none is, else
    "within the spread": the seeds disagree, so the one-seed claim was not a finding."""
    on_side = [claim.holds(v) for v in values]
    if all(on_side):
        return "holds"
    if not any(on_side):
        return "does not hold"
    return "within the spread"


def summarize(values_by_seed: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """One row per claim: its quantity, the claimed side, each seed's value, mean, standard
    deviation over seeds (n - 1), min, max and verdict. Claims no seed measured are left out."""
    seeds = sorted(values_by_seed)
    rows = []
    for claim in CLAIMS:
        values = np.array([values_by_seed[s][claim.key] for s in seeds], dtype=float)
        if np.isnan(values).all():
            continue
        if np.isnan(values).any():
            missing = [s for s, v in zip(seeds, values) if np.isnan(v)]
            raise BadInputError(
                f"claim {claim.key!r}: seeds {missing} have no value, the others have (their runs lack its "
                "table or rows: see the warnings above)"
            )
        rows.append(
            {
                "group": claim.group,
                "claim": claim.statement,
                "quantity": claim.quantity,
                "claimed": f"{claim.side} {claim.threshold:g}",
                **{f"seed {s}": v for s, v in zip(seeds, values)},
                "mean": values.mean(),
                "std": values.std(ddof=1),
                "min": values.min(),
                "max": values.max(),
                "verdict": verdict(claim, values),
            }
        )
    return pd.DataFrame(rows)


_VERDICT_COLOURS = {"holds": "C2", "does not hold": "C3", "within the spread": "C7"}


def claims_figure(summary: pd.DataFrame, out_png: str | os.PathLike) -> Figure:
    """One row per claim: each seed's value (dots), mean +/- standard deviation (bar), and the
    claimed threshold (dashed): every claim on its own axis, since their units differ."""
    seeds = [c for c in summary.columns if c.startswith("seed ")]
    with rc_context(figures.STYLE):
        fig = Figure(figsize=(figures.PAGE_WIDTH_IN, 0.55 * len(summary) + 0.5), layout="constrained")
        axes = fig.subplots(len(summary), 1, squeeze=False)[:, 0]
        for ax, (_, row) in zip(axes, summary.iterrows()):
            colour = _VERDICT_COLOURS[row["verdict"]]
            threshold = float(row["claimed"].split()[1])
            values = row[seeds].to_numpy(dtype=float)
            ax.axvline(threshold, color="0.4", linestyle="--", linewidth=0.8)
            ax.errorbar(row["mean"], 0, xerr=row["std"], fmt="s", color=colour, capsize=3, markersize=4)
            ax.plot(values, np.zeros_like(values), "o", color=colour, alpha=0.45, markersize=3.5)
            low = min(values.min(), threshold, row["mean"] - row["std"])
            high = max(values.max(), threshold, row["mean"] + row["std"])
            pad = 0.15 * (high - low) or 0.1 * max(abs(threshold), 1.0)
            ax.set_xlim(low - pad, high + pad)
            ax.set_yticks([])
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.set_ylim(-1, 1)
            ax.set_title(
                f"{row['claim']}: {row['verdict']}   [{row['quantity']}, claimed {row['claimed']}]",
                loc="left", fontsize=8, pad=2,
            )
        fig.suptitle(f"The demo's claims over {len(seeds)} seeds: seeds (dots), mean ± std (square), claimed threshold (dashed)")
        figures.save(fig, out_png)
    return fig


def claims_markdown(summary: pd.DataFrame) -> str:
    """The claims table as Markdown: claim, quantity and claimed side, mean +/- std, each seed, verdict."""
    seeds = [c for c in summary.columns if c.startswith("seed ")]
    head = ["claim", "quantity (claimed)", "mean ± std", ", ".join(seeds), "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in summary.iterrows():
        values = ", ".join(f"{row[s]:.3g}" for s in seeds)
        lines.append(
            f"| {row['claim']} | {row['quantity']} ({row['claimed']}) | {row['mean']:.3g} ± {row['std']:.2g} "
            f"| {values} | **{row['verdict']}** |"
        )
    return "\n".join(lines) + "\n"
