"""The table and figure rules: gather many result files into tables (CSV) and figures.

Kept free of torch (h5py, pandas, matplotlib only): these jobs are cheap and re-run often.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from thincam.data.atomic import write_csv_atomic
from thincam.data.h5io import read_h5
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


def read_per_image(path: str | os.PathLike) -> pd.DataFrame:
    """One run's per-image metrics CSV (the evaluate rule's output), checked."""
    try:
        df = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{path}: not a readable metrics CSV ({err})") from err
    return tables.check_per_image(df, str(path))


def read_metrics(metrics_csv: str | os.PathLike) -> pd.DataFrame:
    """results/tables/metrics.csv, checked for the columns the tables and figures rely on."""
    try:
        df = pd.read_csv(metrics_csv, keep_default_na=False, na_values=[""])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{metrics_csv}: not a readable metrics table ({err})") from err
    return tables.check_metrics(df, str(metrics_csv))


def aggregate(
    metric_csvs: Sequence[str],
    recon_paths: Sequence[str],
    data_paths: Sequence[str],
    out_csv: str,
    paper_tables: Mapping[str, tuple[str, str]],
) -> None:
    """metrics.csv from every run, then each paper table {path: (kind, dataset)} beside it."""
    meta = [read_recon_meta(r, d) for r, d in zip(recon_paths, data_paths)]
    metrics = tables.aggregate([(str(p), read_per_image(p)) for p in metric_csvs], meta)
    write_csv_atomic(metrics, out_csv)
    for path, (kind, dataset) in paper_tables.items():
        write_csv_atomic(PAPER_TABLES[kind](metrics, dataset), path)


def quality_vs_time(metrics_csv: str, dataset: str, out_png: str) -> None:
    """NSDD Fig. 1: the best available perceptual metric against latency."""
    figures.quality_vs_time(metrics_csv, dataset, out_png)


def sweep(metrics_csv: str, dataset: str, out_png: str, sweeps: Mapping[str, str]) -> None:
    """NSDD Fig. 3: each method's metric against its swept parameter."""
    figures.sweep(metrics_csv, dataset, out_png, sweeps)


def qualitative(data_path: str, recon_paths: Sequence[str], out_png: str, n_images: int) -> None:
    """Measurement | each method/variant | reference, labels taken from the file layout."""
    labels = ["/".join(path.split("/")[-2:]).removesuffix(".h5") for path in recon_paths]
    figures.qualitative(data_path, list(recon_paths), labels, out_png, n_images=n_images)


def capture_figure(data_path: str, recon_path: str, out_png: str, title: str) -> None:
    """A real capture beside its reconstruction."""
    figures.capture_figure(data_path, recon_path, out_png, title)


def alpha_sweep_figure(alpha_table_csv: str, dataset: str, out_png: str) -> None:
    """DMDiff's PSNR and perceptual metric against the decoder mix alpha."""
    figures.alpha_sweep(alpha_table_csv, dataset, out_png)
