"""The table and figure rules: gather many result files into tables (CSV) and figures.

Kept free of torch (h5py, pandas, matplotlib only): these jobs are cheap and re-run often.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from thincam.data.atomic import write_csv_atomic
from thincam.data.h5io import json_attr, read_h5
from thincam.errors import BadInputError
from thincam.report import figures, tables

PAPER_TABLES = {
    "nsdd_main": tables.nsdd_main_table,
    "nsdd_ablation": tables.nsdd_ablation_table,
    "dmdiff_main": tables.dmdiff_main_table,
    "alpha_sweep": tables.alpha_sweep_table,
    "dmdiff_ablation": tables.dmdiff_ablation_table,
}


def read_recon_meta(recon_path: str | os.PathLike, data_path: str | os.PathLike) -> dict:
    """The :func:`thincam.report.tables.aggregate` metadata of one reconstruction, from its recon and dataset attributes."""
    _, recon = read_h5(recon_path, names=[], contract="recon")
    _, data = read_h5(data_path, names=[], contract="dataset")
    for path, attrs, keys in (
        (recon_path, recon, ("dataset", "split", "method", "variant", "peak_mem_mb", "device")),
        (data_path, data, ("dataset", "split", "camera")),
    ):
        missing = [key for key in keys if key not in attrs]
        if missing:
            raise BadInputError(f"{path}: attribute(s) {missing} missing")
    if (recon["dataset"], recon["split"]) != (data["dataset"], data["split"]):
        raise BadInputError(
            f"{recon_path} reconstructs dataset {recon['dataset']!r} ({recon['split']}) but "
            f"{data_path} is {data['dataset']!r} ({data['split']})"
        )
    return {
        "dataset": recon["dataset"],
        "split": recon["split"],
        "camera": data["camera"],
        "method": recon["method"],
        "variant": recon["variant"],
        "peak_mem_mb": float(recon["peak_mem_mb"]),
        "device": recon["device"],
        "params": tables.params_json(recon.get("params", {})),
    }


def read_split_metrics(path: str | os.PathLike) -> dict[tuple[str, ...], pd.DataFrame]:
    """One evaluate CSV (every run of a dataset split) as {(dataset, split, method, variant):
    that run's per-image table}, each checked."""
    try:
        df = pd.read_csv(path, dtype={key: str for key in tables.RUN_KEYS})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{path}: not a readable metrics CSV ({err})") from err
    missing = [key for key in tables.RUN_KEYS if key not in df.columns]
    if missing:
        raise BadInputError(f"{path}: column(s) {missing} missing")
    return {
        tuple(key): tables.check_per_image(
            group.drop(columns=tables.RUN_KEYS).reset_index(drop=True), f"{path} ({'/'.join(key)})"
        )
        for key, group in df.groupby(tables.RUN_KEYS, sort=False)
    }


def _runs_of(metric_csvs: Sequence[str]) -> dict[tuple[str, ...], tuple[str, pd.DataFrame]]:
    """{run: (source name, per-image table)} over evaluate CSVs; a run in two files is an error."""
    runs: dict[tuple[str, ...], tuple[str, pd.DataFrame]] = {}
    origin: dict[tuple[str, ...], str] = {}
    for path in metric_csvs:
        for key, table in read_split_metrics(path).items():
            if key in runs:
                raise BadInputError(f"run {list(key)} is in both {origin[key]} and {path}")
            runs[key], origin[key] = (f"{path} ({'/'.join(key)})", table), str(path)
    return runs


def read_metrics(metrics_csv: str | os.PathLike) -> pd.DataFrame:
    """results/tables/metrics.csv, checked for the columns the tables and figures rely on."""
    return tables.check_metrics(read_table(metrics_csv), str(metrics_csv))


def read_pseudo_quality(pseudo_h5: str | os.PathLike) -> dict:
    """The quality record the pseudo_pairs rule stored (PSNR against the true captures)."""
    _, attrs = read_h5(pseudo_h5, names=[], contract="pseudo_pairs")
    if "quality" not in attrs:
        raise BadInputError(f"{pseudo_h5}: attribute 'quality' missing (made before the quality rule?)")
    return json_attr(attrs, "quality")


def aggregate(
    metric_csvs: Sequence[str],
    recon_paths: Sequence[str],
    data_paths: Sequence[str],
    out_csv: str,
    paper_tables: Mapping[str, tuple[str, str]],
    pseudo: Mapping[str, Mapping] | None = None,
    capture_tables: Mapping[str, tuple[str, Sequence[str]]] | None = None,
    lpips_net: str = "alex",
) -> None:
    """metrics.csv from every run, then each paper table {path: (kind, dataset)} beside it,
    reporting the LPIPS of ``lpips_net`` (the convention of the paper it reproduces).

    ``pseudo``: {dataset: {"file": pseudo_pairs.h5, "asks": {dmdiff variant: bool}}}, for the
    DMDiff ablation table's pseudo-pair columns. ``capture_tables``: {path: (dataset,
    ["method/variant", ...])}, the reconstructions of a capture without ground truth.
    """
    meta = [read_recon_meta(r, d) for r, d in zip(recon_paths, data_paths)]
    runs = _runs_of(metric_csvs)
    per_image = []
    for recon_path, run in zip(recon_paths, meta):
        key = tuple(run[k] for k in tables.RUN_KEYS)
        if key not in runs:
            raise BadInputError(f"{recon_path}: no metrics of run {list(key)} in {list(metric_csvs)}")
        per_image.append(runs.pop(key))
    if runs:
        raise BadInputError(f"metrics of runs {sorted(runs)} but no recon file of them")
    metrics = tables.aggregate(per_image, meta)
    write_csv_atomic(metrics, out_csv)
    for path, (kind, dataset) in paper_tables.items():
        extra = {}
        if kind == "dmdiff_ablation" and dataset in (pseudo or {}):
            report = pseudo[dataset]
            extra["pseudo"] = {"quality": read_pseudo_quality(report["file"]), "asks": report["asks"]}
        write_csv_atomic(PAPER_TABLES[kind](metrics, dataset, lpips_net=lpips_net, **extra), path)
    for path, (dataset, runs) in (capture_tables or {}).items():
        write_csv_atomic(tables.capture_table(metrics, dataset, runs), path)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table CSV with empty cells as NaN (a missing metric), never the text 'NaN'."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{path}: not a readable table ({err})") from err


def _dataset_metrics(metrics_csv: str, dataset: str) -> pd.DataFrame:
    """metrics.csv, checked to hold ``dataset``; errors name the file."""
    metrics = read_metrics(metrics_csv)
    try:
        tables.dataset_rows(metrics, dataset)
    except BadInputError as err:
        raise BadInputError(f"{metrics_csv}: {err}") from err
    return metrics


def figure_columns(
    metrics_csv: str,
    dataset: str,
    table_csv: str | None = None,
    skip: Sequence[Sequence[str]] = (),
) -> list[tuple[str, str]]:
    """(method, variant) a figure shows: the rows of the dataset's paper table (the variants it
    chose), else what a table would choose; less ``skip`` (e.g. the alpha sweep, shown apart)."""
    if table_csv is not None:
        chosen = tables.table_variants(read_table(table_csv))
    else:
        chosen = tables.best_variants(_dataset_metrics(metrics_csv, dataset), dataset)
    skipped = {tuple(pair) for pair in skip}
    return [pair for pair in chosen if pair not in skipped]


def one_per_method(chosen: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """One (method, variant) per method, in table order: a qualitative grid compares methods.
    Where a paper table reports several variants of a method (DMDiff: its ablation), the grid
    shows the full model (the ablation's "full" row), else the method's first row; so, beside
    Wiener, the UNet, DDNM+ and NSDD, it fits a page."""
    full = tables.ABLATION_VARIANTS["full"]
    variants: dict[str, list[str]] = {}
    for method, variant in chosen:
        variants.setdefault(method, []).append(variant)
    return [(method, full if full in names else names[0]) for method, names in variants.items()]


def quality_vs_time(
    metrics_csv: str,
    dataset: str,
    out_png: str,
    table_csv: str | None = None,
    lpips_net: str | None = None,
) -> None:
    """NSDD Fig. 1: perceptual metric (LPIPS of ``lpips_net``, as the tables) against latency, the
    runs ``table_csv`` reports filled."""
    reported = figure_columns(metrics_csv, dataset, table_csv)
    try:
        figures.quality_vs_time(
            _dataset_metrics(metrics_csv, dataset), dataset, out_png, reported, lpips_net
        )
    except BadInputError as err:
        raise BadInputError(f"{metrics_csv}: {err}") from err


def sweep(
    metrics_csv: str,
    dataset: str,
    out_png: str,
    sweeps: Mapping[str, str],
    lpips_net: str | None = None,
) -> None:
    """NSDD Fig. 3: each method's metrics (LPIPS of ``lpips_net``, as the tables) against its
    swept parameter."""
    try:
        figures.sweep(_dataset_metrics(metrics_csv, dataset), dataset, out_png, sweeps, lpips_net)
    except BadInputError as err:
        raise BadInputError(f"{metrics_csv}: {err}") from err


def _read_recon(
    recon_path: str | os.PathLike, data_path: str | os.PathLike, data: dict, data_attrs: dict
) -> tuple[np.ndarray, dict]:
    """A recon's xhat and attributes, after checking that it reconstructs ``data_path``'s images."""
    recon, recon_attrs = read_h5(recon_path, names=["xhat", "index"], contract="recon")
    if recon_attrs.get("dataset") != data_attrs.get("dataset") or not np.array_equal(
        recon["index"], data["index"]
    ):
        raise BadInputError(
            f"{recon_path} is not a reconstruction of {data_path} (dataset or image indices differ)"
        )
    return recon["xhat"], recon_attrs


def column_titles(chosen: Sequence[tuple[str, str]]) -> list[str]:
    """Method names; the variant beneath where a method has several columns; DDNM+ beside NSDD
    is its teacher."""
    methods = [method for method, _ in chosen]
    variant_names = {variant: label for label, variant in tables.ABLATION_VARIANTS.items()}
    titles = []
    for method, variant in chosen:
        label = tables.METHOD_LABELS.get(method, method)
        if methods.count(method) > 1:
            label += "\n" + variant_names.get(variant, variant)
        elif method == "ddnm" and "nsdd" in methods:
            label += " (teacher)"
        titles.append(label)
    return titles


def qualitative(
    data_path: str,
    recon_paths: Sequence[str],
    metric_csv: str,
    out_png: str,
    n_images: int,
    metrics_csv: str,
    table_csv: str | None = None,
    skip: Sequence[Sequence[str]] = (),
    lpips_net: str | None = None,
) -> None:
    """NSDD Fig. 5: measurement | a (method, variant) per method (:func:`one_per_method` of
    :func:`figure_columns`, less the methods of ``tables.QUALITATIVE_OMITS``) | reference, with
    each image's PSNR and perceptual score (LPIPS of ``lpips_net``, as the tables) from the
    split's evaluate CSV ``metric_csv``."""
    data, data_attrs = read_h5(data_path, contract="dataset")
    chosen = one_per_method(
        [
            pair
            for pair in figure_columns(metrics_csv, data_attrs["dataset"], table_csv, skip)
            if pair[0] not in tables.QUALITATIVE_OMITS
        ]
    )
    recons = {}
    for recon_path in recon_paths:
        _, attrs = read_h5(recon_path, names=[], contract="recon")
        recons[(attrs["method"], attrs["variant"])] = recon_path
    per_run = {
        (method, variant): table
        for (dataset, split, method, variant), table in read_split_metrics(metric_csv).items()
        if (dataset, split) == (data_attrs["dataset"], data_attrs["split"])
    }
    missing = [pair for pair in chosen if tuple(pair) not in recons or tuple(pair) not in per_run]
    if missing:
        raise BadInputError(
            f"{data_path}: no reconstruction or metrics of {missing} among {list(recon_paths)}"
            f" and {metric_csv}"
        )
    columns, scores = {}, {}
    for title, pair in zip(column_titles(chosen), chosen):
        columns[title], _ = _read_recon(recons[tuple(pair)], data_path, data, data_attrs)
        per_image = per_run[tuple(pair)]
        if not np.array_equal(per_image["index"], data["index"]):
            raise BadInputError(f"{metric_csv}: the image indices of {pair} are not those of {data_path}")
        scores[title] = per_image
    figures.qualitative(data["y"], columns, out_png, data.get("x"), scores, n_images, lpips_net)


def capture_figure(
    data_path: str,
    recon_paths: Sequence[str],
    metric_csv: str,
    out_png: str,
    title: str,
    image: int = 0,
) -> None:
    """A real capture beside each reconstruction (``recon_paths``, in panel order), with the
    consistency of each from the split's evaluate CSV ``metric_csv``."""
    data, data_attrs = read_h5(data_path, contract="dataset")
    if not 0 <= image < len(data["y"]):
        raise BadInputError(f"{data_path}: image {image} out of range (0..{len(data['y']) - 1})")
    per_run = read_split_metrics(metric_csv)
    runs = []
    for recon_path in recon_paths:
        xhat, attrs = _read_recon(recon_path, data_path, data, data_attrs)
        key = (data_attrs["dataset"], data_attrs["split"], attrs["method"], attrs["variant"])
        if key not in per_run:
            raise BadInputError(f"{metric_csv}: no metrics of run {list(key)}")
        per_image = per_run[key]
        if not np.array_equal(per_image["index"], data["index"]):
            raise BadInputError(f"{metric_csv}: the image indices of {list(key)} are not those of {data_path}")
        runs.append(((attrs["method"], attrs["variant"]), xhat[image], per_image["consistency"].iloc[image]))
    titles = column_titles([pair for pair, _, _ in runs])
    panels = {title: xhat for title, (_, xhat, _) in zip(titles, runs)}
    consistency = {title: float(value) for title, (_, _, value) in zip(titles, runs)}
    figures.capture_figure(data["y"][image], panels, out_png, title, consistency)


def alpha_sweep_figure(
    alpha_csv: str, data_path: str, recon_paths: Sequence[str], out_png: str
) -> None:
    """DMDiff's decoder mix: the alpha sweep table beside the scene each of its variants makes."""
    table = read_table(alpha_csv)
    if not {"Variant", "alpha"} <= set(table.columns):
        raise BadInputError(f"{alpha_csv}: columns Variant and alpha needed")
    alpha_of = dict(zip(table["Variant"].astype(str), table["alpha"].astype(float)))
    data, data_attrs = read_h5(data_path, contract="dataset")
    images = {}
    for recon_path in recon_paths:
        xhat, attrs = _read_recon(recon_path, data_path, data, data_attrs)
        if attrs["variant"] in alpha_of:
            images[alpha_of[attrs["variant"]]] = xhat
    absent = sorted(v for v, a in alpha_of.items() if a not in images)
    if absent:
        raise BadInputError(
            f"{alpha_csv}: no reconstruction among {list(recon_paths)} for {absent}"
        )
    try:
        figures.alpha_figure(table, images, out_png, data.get("x"))
    except BadInputError as err:
        raise BadInputError(f"{alpha_csv}: {err}") from err
