"""Aggregation of per-image metric CSVs into results/tables/metrics.csv, and the paper tables.

pandas and h5py only: these run as their own Snakemake jobs, where importing torch would cost more
than the work. A missing metric stays NaN, written as an empty cell, never 0.

Metadata comes in as one dict per reconstruction (see :func:`read_recon_meta`, which reads it from
the recon and dataset HDF5 attributes), because the camera lives in the dataset file, not in the
recon file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from thincam.errors import BadInputError
from thincam.registry import (
    CHOICE_SPLIT,
    LPIPS_COLUMNS,
    METHODS,
    METRICS,
    NSDD_ABLATION_ROWS,
    PAPER_TABLE_ROWS,
    PERCEPTUAL_PREFERENCE,
    REPORT_SPLIT,
    WEIGHT_FREE,
)

log = logging.getLogger(__name__)

CORE_COLUMNS = [
    "dataset",
    "split",
    "camera",
    "method",
    "variant",
    "n_images",
    "psnr",
    "ssim",
    "lpips",
    "lpips_vgg",
    "dists",
    "musiq",
    "clipiqa",
    "consistency",
    "latency_s",
    "peak_mem_mb",
    "device",
]
META_KEYS = ("dataset", "split", "camera", "method", "variant", "peak_mem_mb", "device")
# The columns of an evaluate CSV (one dataset split) that name the run a per-image row belongs to.
RUN_KEYS = ["dataset", "split", "method", "variant"]
PER_IMAGE_REQUIRED = [
    "index",
    "psnr",
    "ssim",
    "lpips",
    "lpips_vgg",
    "dists",
    "musiq",
    "clipiqa",
    "consistency",
    "latency_s",
]

METHOD_LABELS = {name: method.label for name, method in METHODS.items()}
WEIGHT_FREE_EXTRAS = WEIGHT_FREE
# The methods the qualitative grid leaves out (registry.Method.qualitative).
QUALITATIVE_OMITS = tuple(name for name, method in METHODS.items() if not method.qualitative)
# Ablation row label -> dmdiff variant name in the config.
ABLATION_VARIANTS = {
    "no SVDA": "no_svda",
    "SVDA w/o FWHM": "svda_no_fwhm",
    "w/o negative path": "no_negative",
    "full": "full",
}
# The pseudo captures' PSNR against the simulator's true captures, and the identity baseline's.
PSEUDO_PSNR = "pseudo capture PSNR (dB)"
CLEAN_PSNR = "clean-as-capture PSNR (dB)"
_DECIMALS = {"psnr": 2, "musiq": 2, "piqe": 2, "peak_mem_mb": 1}
# What a capture without ground truth can be scored by: how well each reconstruction explains
# the capture, then the no-reference image metrics (registry order).
CAPTURE_METRICS = ("consistency",) + tuple(
    name for name, metric in METRICS.items() if not metric.reference and name != "consistency"
)


def params_json(params: Any) -> str:
    """Canonical JSON of a variant's parameters, so equal parameters compare equal as text."""
    if isinstance(params, str):
        params = json.loads(params) if params else {}
    return json.dumps(params or {}, sort_keys=True)


def check_per_image(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """The per-image table of one run with numeric columns; ``source`` names it in errors."""
    missing = [c for c in PER_IMAGE_REQUIRED if c not in df.columns]
    if missing:
        raise BadInputError(f"{source}: column(s) {missing} missing")
    if df.empty:
        raise BadInputError(f"{source}: no images")
    df = df.copy()
    for column in df.columns:
        try:
            df[column] = pd.to_numeric(df[column]).astype(float)
        except (ValueError, TypeError) as err:
            raise BadInputError(f"{source}: column {column!r} is not numeric ({err})") from err
    return df


def check_metrics(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """results/tables/metrics.csv as a DataFrame, checked for the columns tables and figures use."""
    missing = [c for c in CORE_COLUMNS + ["params"] if c not in df.columns]
    if missing:
        raise BadInputError(f"{source}: column(s) {missing} missing")
    return df


def aggregate(
    per_image: Sequence[tuple[str, pd.DataFrame]],
    recon_meta: Sequence[Mapping[str, Any]],
) -> pd.DataFrame:
    """One row per (dataset, method, variant): means over images, median latency.

    ``per_image`` holds (source name, per-image table) pairs; the source names errors.

    A metric missing for any image of a run stays NaN rather than becoming the mean of the rest.
    Columns: :data:`CORE_COLUMNS`, then extra metrics in per-image CSV order, then ``params``.
    """
    if len(per_image) != len(recon_meta):
        raise BadInputError(f"{len(per_image)} metric tables but {len(recon_meta)} recon metadata entries")
    rows, extras = [], []
    for (path, table), meta in zip(per_image, recon_meta):
        missing = [key for key in META_KEYS if key not in meta]
        if missing:
            raise BadInputError(f"metadata for {path} lacks {missing}")
        per_image_table = check_per_image(table, path)
        row = {key: meta[key] for key in META_KEYS}
        row["n_images"] = len(per_image_table)
        for column in per_image_table.columns.drop("index"):
            if column == "latency_s":
                row[column] = per_image_table[column].median()
            else:
                row[column] = per_image_table[column].mean(skipna=False)
            if column not in CORE_COLUMNS and column not in extras:
                extras.append(column)
        row["params"] = params_json(meta.get("params", {}))
        rows.append(row)
    df = pd.DataFrame(rows, columns=CORE_COLUMNS + extras + ["params"])
    key = ["dataset", "split", "method", "variant"]
    duplicated = df.duplicated(key, keep=False)
    if duplicated.any():
        sources = [str(p) for (p, _), dup in zip(per_image, duplicated) if dup]
        raise BadInputError(
            f"runs {df.loc[duplicated, key].drop_duplicates().values.tolist()} appear more than once,"
            f" in {sources}"
        )
    return df.sort_values(["dataset", "split", "method", "variant"], kind="stable").reset_index(drop=True)


def best_perceptual(
    df: pd.DataFrame, exclude: Sequence[str] = (), lpips_net: str | None = None
) -> str:
    """The first metric of :data:`PERCEPTUAL_PREFERENCE` (less ``exclude``) with any value in ``df``.

    With ``lpips_net`` only that network's LPIPS column counts: a table reproducing a paper reports
    the LPIPS of that paper or none, never the other one in its place. psnr when none has a value,
    so the caller's message names the metric it found missing.
    """
    others = [column for net, column in LPIPS_COLUMNS.items() if lpips_net not in (None, net)]
    for name in PERCEPTUAL_PREFERENCE:
        if name not in (*exclude, *others) and name in df.columns and df[name].notna().any():
            return name
    return "psnr"


def dataset_rows(df: pd.DataFrame, dataset: str, split: str = REPORT_SPLIT) -> pd.DataFrame:
    """The rows of one dataset and split, with a lower-case ``method_key`` to match methods on."""
    rows = df[(df["dataset"] == dataset) & (df["split"] == split)]
    if rows.empty:
        have = sorted({(d, s) for d, s in zip(df["dataset"], df["split"])})
        raise BadInputError(f"no {split} results for dataset {dataset!r}; have {have}")
    return rows.assign(method_key=rows["method"].str.lower())


def choose_on_val(
    metrics_df: pd.DataFrame, dataset: str, method: str, metric: str, lpips_net: str | None = None
) -> str | None:
    """The variant of ``method`` with the best ``metric`` on the validation split.

    None when the method has one variant on the reported split (nothing to choose). Several
    variants without validation results is an error: choosing on the reported split would
    flatter the method.
    """
    reported = metrics_df[
        (metrics_df["dataset"] == dataset)
        & (metrics_df["split"] == REPORT_SPLIT)
        & (metrics_df["method"].str.lower() == method)
    ]
    if reported["variant"].nunique() <= 1:
        return None
    val = metrics_df[
        (metrics_df["dataset"] == dataset)
        & (metrics_df["split"] == CHOICE_SPLIT)
        & (metrics_df["method"].str.lower() == method)
    ]
    if val.empty:
        raise BadInputError(
            f"{dataset}: {method} has {reported['variant'].nunique()} variants but no {CHOICE_SPLIT} "
            f"results to choose among them"
        )
    if metric not in val.columns or val[metric].isna().all():
        metric = best_perceptual(val, lpips_net=lpips_net)
    return str(_best_row(val.assign(method_key=method), metric)["variant"])


def param_values(rows: pd.DataFrame, name: str) -> pd.Series:
    """Each run's value of parameter ``name`` from its ``params`` JSON; None where it has none."""
    return rows["params"].map(
        lambda p: json.loads(p).get(name) if isinstance(p, str) and p else None
    )


def _best_row(rows: pd.DataFrame, metric: str) -> pd.Series:
    """The row with the best value of ``metric`` (NaN last); the only row if there is one."""
    lower_better = METRICS[metric].lower_is_better
    ranked = rows.sort_values(metric, ascending=lower_better, na_position="last", kind="stable")
    return ranked.iloc[0]


def table_variants(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, variant) of each row of a paper table, in its order: what its figures show."""
    if not {"Method", "Variant"} <= set(table.columns):
        raise BadInputError(
            f"a paper table needs Method and Variant columns; has {list(table.columns)}"
        )
    method_of = {label: method for method, label in METHOD_LABELS.items()}
    return [(method_of.get(m, m), str(v)) for m, v in zip(table["Method"], table["Variant"])]


def best_variants(metrics_df: pd.DataFrame, dataset: str) -> list[tuple[str, str]]:
    """(method, variant) a table would report for each method, in table order: the variant
    chosen on val (:func:`choose_on_val`), or all of them for a method that reports every one.
    The choice for a dataset no paper table covers."""
    rows = dataset_rows(metrics_df, dataset)
    metric = best_perceptual(rows)
    order = {method: rank for rank, method in enumerate(METHOD_LABELS)}
    chosen = []
    for method in sorted(rows["method_key"].unique(), key=lambda m: (order.get(m, len(order)), m)):
        variants = sorted(rows.loc[rows["method_key"] == method, "variant"].astype(str))
        if method in METHODS and METHODS[method].every_variant_reported:
            chosen += [(method, variant) for variant in variants]
        else:
            variant = choose_on_val(metrics_df, dataset, method, metric) or variants[0]
            chosen.append((method, variant))
    return chosen


def _table(rows: pd.DataFrame, columns: Mapping[str, str]) -> pd.DataFrame:
    """Method and Variant, then ``columns`` (metric name -> header), rounded for print."""
    table = pd.DataFrame(
        {
            "Method": [METHOD_LABELS.get(m, m) for m in rows["method_key"]],
            "Variant": list(rows["variant"]),
        }
    )
    for name, header in columns.items():
        values = rows[name].to_numpy(dtype=float)
        if name == "latency_s":  # spans 1e-4 to 10 s: significant digits, not decimals
            table[header] = [float(f"{v:.3g}") for v in values]
        else:
            table[header] = values.round(_DECIMALS.get(name, 4))
    return table


def nsdd_main_table(
    metrics_df: pd.DataFrame,
    dataset: str,
    variants: Mapping[str, str] | None = None,
    methods: Sequence[str] = PAPER_TABLE_ROWS["nsdd_main"],
    lpips_net: str = "alex",
) -> pd.DataFrame:
    """Method | Variant | PSNR | SSIM | <perceptual> | consistency | time (s) | memory (MB).

    Rows Wiener, ADMM, DPS, DDNM+, DeepInverse's DPS, DiffPIR and DDRM, NSDD (those present),
    on the test split. A method's row is the variant named in ``variants`` (method -> variant),
    else the one with the best perceptual metric on the validation split (:func:`choose_on_val`).
    """
    rows = dataset_rows(metrics_df, dataset)
    metric = best_perceptual(rows, lpips_net=lpips_net)
    chosen = []
    for method in methods:
        candidates = rows[rows["method_key"] == method]
        if candidates.empty:
            log.warning("%s: no %s results; its row is left out of the NSDD table", dataset, method)
            continue
        variant = (variants or {}).get(method) or choose_on_val(
            metrics_df, dataset, method, metric, lpips_net
        )
        if variant is not None:
            candidates = candidates[candidates["variant"] == variant]
            if candidates.empty:
                raise BadInputError(f"{dataset}: no {method} variant {variant!r} in the metrics table")
        chosen.append(candidates.iloc[0])
    if not chosen:
        raise BadInputError(f"{dataset}: none of {list(methods)} in the metrics table")
    names = ["psnr", "ssim"] + ([metric] if metric != "psnr" else []) + ["consistency"]
    columns = {n: METRICS[n].label for n in names} | {
        "latency_s": "time (s)",
        "peak_mem_mb": "memory (MB)",
    }
    return _table(pd.DataFrame(chosen), columns)


def nsdd_ablation_table(metrics_df: pd.DataFrame, dataset: str, lpips_net: str = "alex") -> pd.DataFrame:
    """The teacher beside the null-space and the full-image student (trained on the same targets)."""
    rows = dataset_rows(metrics_df, dataset)
    present = {label: m for label, m in NSDD_ABLATION_ROWS.items() if (rows["method_key"] == m).any()}
    if not {"nsdd", "nsdd_full"} <= set(present.values()):
        raise BadInputError(f"{dataset}: the NSDD ablation needs nsdd and nsdd_full results")
    table = nsdd_main_table(metrics_df, dataset, methods=tuple(present.values()), lpips_net=lpips_net)
    table.insert(0, "Ablation", list(present))
    return table.drop(columns="Method")


def _dmdiff_columns(rows: pd.DataFrame, lpips_net: str) -> dict[str, str]:
    """PSNR, SSIM, the four learned metrics (LPIPS of ``lpips_net``; empty when absent), and the
    weight-free ones present."""
    names = ["psnr", "ssim", LPIPS_COLUMNS[lpips_net], "dists", "musiq", "clipiqa"]
    names += [n for n in WEIGHT_FREE_EXTRAS if n in rows.columns and rows[n].notna().any()]
    return {n: METRICS[n].label for n in names}


def dmdiff_main_table(
    metrics_df: pd.DataFrame,
    dataset: str,
    variants: Sequence[str] | None = None,
    lpips_net: str = "alex",
) -> pd.DataFrame:
    """The baselines (each chosen on val) and the DMDiff variants (all, or ``variants`` in that
    order): Wiener, the supervised UNet (SwinIR's place in the paper: what the diffusion prior
    adds), DDNM+ and NSDD (zero-shot and distilled, trained without pairs), then DMDiff. After
    the image metrics, consistency and time: what NSDD trades against DMDiff."""
    rows, dmdiff = _dmdiff_rows(metrics_df, dataset, variants)
    if dmdiff.empty:
        raise BadInputError(f"{dataset}: no dmdiff results in the metrics table")
    metric = best_perceptual(rows, lpips_net=lpips_net)
    selected = []
    for method in PAPER_TABLE_ROWS["dmdiff_main"]:
        candidates = rows[rows["method_key"] == method]
        if candidates.empty:
            continue
        variant = choose_on_val(metrics_df, dataset, method, metric, lpips_net)
        if variant is not None:
            candidates = candidates[candidates["variant"] == variant]
        selected.append(candidates.iloc[:1])
    columns = _dmdiff_columns(rows, lpips_net) | {"consistency": METRICS["consistency"].label, "latency_s": "time (s)"}
    return _table(pd.concat([*selected, dmdiff]), columns)


def _dmdiff_rows(
    metrics_df: pd.DataFrame, dataset: str, variants: Sequence[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A dataset's rows, and its DMDiff rows (all, or ``variants`` in that order)."""
    rows = dataset_rows(metrics_df, dataset)
    dmdiff = rows[rows["method_key"] == "dmdiff"]
    if variants is not None:
        dmdiff = _pick_variants(dmdiff, variants, dataset)
    return rows, dmdiff


def _pick_variants(rows: pd.DataFrame, variants: Sequence[str], dataset: str) -> pd.DataFrame:
    missing = [v for v in variants if v not in set(rows["variant"])]
    if missing:
        raise BadInputError(
            f"{dataset}: dmdiff variant(s) {missing} not in the metrics table; have {sorted(rows['variant'])}"
        )
    return rows.set_index("variant", drop=False).loc[list(variants)]


def alpha_sweep_table(
    metrics_df: pd.DataFrame,
    dataset: str,
    variants: Sequence[str] | None = None,
    lpips_net: str = "alex",
) -> pd.DataFrame:
    """The DMDiff runs whose params set the decoder mix ``alpha`` (or just ``variants``), by alpha."""
    rows, dmdiff = _dmdiff_rows(metrics_df, dataset, variants)
    alphas = param_values(dmdiff, "alpha")
    swept = dmdiff.assign(alpha=alphas)[alphas.notna()]
    if swept.empty:
        raise BadInputError(f"{dataset}: no dmdiff run has an 'alpha' parameter")
    swept = swept.assign(alpha=swept["alpha"].astype(float)).sort_values("alpha", kind="stable")
    table = _table(swept, _dmdiff_columns(rows, lpips_net))
    table.insert(2, "alpha", swept["alpha"].to_numpy())
    return table


def dmdiff_ablation_table(
    metrics_df: pd.DataFrame,
    dataset: str,
    variants: Mapping[str, str] = ABLATION_VARIANTS,
    pseudo: Mapping[str, Any] | None = None,
    lpips_net: str = "alex",
) -> pd.DataFrame:
    """One row per ablation (label -> dmdiff variant), in the order given; every one must exist.

    ``pseudo``: {"quality": the pseudo_pairs file's quality record, "asks": {variant: whether its
    model asks for pseudo pairs}}. Adds whether each row's model trained on them ("used",
    "rejected" by the quality rule, or "no") and, where asked, the pseudo captures' PSNR against
    the true captures beside the clean-image baseline.
    """
    rows = dataset_rows(metrics_df, dataset)
    picked = _pick_variants(rows[rows["method_key"] == "dmdiff"], list(variants.values()), dataset)
    table = _table(picked, _dmdiff_columns(rows, lpips_net))
    table.insert(0, "Ablation", list(variants))
    table = table.drop(columns="Method")
    if pseudo is not None:
        quality, asks = pseudo["quality"], pseudo["asks"]
        missing = [v for v in variants.values() if v not in asks]
        if missing:
            raise BadInputError(f"{dataset}: no pseudo-pair request recorded for dmdiff variant(s) {missing}")
        asked = [bool(asks[v]) for v in variants.values()]
        verdict = "used" if quality["good_enough"] else "rejected"
        table["pseudo pairs"] = [verdict if a else "no" for a in asked]
        for key, header in (("pseudo_psnr_db", PSEUDO_PSNR), ("clean_psnr_db", CLEAN_PSNR)):
            table[header] = [round(float(quality[key]), 2) if a else float("nan") for a in asked]
    return table


def capture_table(metrics_df: pd.DataFrame, dataset: str, runs: Sequence[str]) -> pd.DataFrame:
    """Method | Variant | consistency | the no-reference metrics | time (s) | memory (MB), one row
    per "method/variant" of ``runs`` (a capture figure's panels), on the reported split.

    A metric whose weights are absent stays empty (never computed with random weights); it is
    named once in the log.
    """
    rows = dataset_rows(metrics_df, dataset)
    chosen = []
    for run in runs:
        method, _, variant = run.partition("/")
        match = rows[(rows["method_key"] == method) & (rows["variant"].astype(str) == variant)]
        if match.empty:
            raise BadInputError(f"{dataset}: no {run} reconstruction in the metrics table")
        chosen.append(match.iloc[0])
    chosen = pd.DataFrame(chosen)
    for name in CAPTURE_METRICS:
        if name not in chosen.columns:
            chosen[name] = float("nan")
    for name in CAPTURE_METRICS:
        if chosen[name].isna().all():
            why = "no weights under metrics.weights_dir" if METRICS[name].needs_weights else "see the evaluate logs"
            log.warning("%s: %s left empty in the capture table (%s)", dataset, METRICS[name].label, why)
    columns = {n: METRICS[n].label for n in CAPTURE_METRICS} | {
        "latency_s": "time (s)",
        "peak_mem_mb": "memory (MB)",
    }
    return _table(chosen, columns)
