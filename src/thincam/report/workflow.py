"""Entry points of the table and figure rules: gather many result files into one output.

Kept free of torch (h5py, pandas, matplotlib only): these jobs are cheap and re-run often.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from thincam.report import figures, tables


def aggregate_runs(
    metric_csvs: Sequence[str],
    recon_paths: Sequence[str],
    data_paths: Sequence[str],
    out_csv: str,
    paper_tables: Mapping[str, tuple[str, str]],
) -> None:
    """metrics.csv from every run, then each paper table {name: (kind, dataset)} beside it."""
    meta = [tables.read_recon_meta(r, d) for r, d in zip(recon_paths, data_paths)]
    metrics = tables.aggregate(metric_csvs, meta, out_csv)
    builders = {
        "nsdd_main": tables.nsdd_main_table,
        "dmdiff_main": tables.dmdiff_main_table,
        "alpha_sweep": tables.alpha_sweep_table,
        "dmdiff_ablation": tables.dmdiff_ablation_table,
    }
    for path, (kind, dataset) in paper_tables.items():
        builders[kind](metrics, dataset, path)


def qualitative_figure(data_path: str, recon_paths: Sequence[str], out_png: str, n_images: int) -> None:
    """Measurement | each method/variant | reference, labels taken from the file layout."""
    labels = ["/".join(path.split("/")[-2:]).removesuffix(".h5") for path in recon_paths]
    figures.qualitative(data_path, list(recon_paths), labels, out_png, n_images=n_images)
