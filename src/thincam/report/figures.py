"""Paper figures: PNG (200 dpi) and PDF beside it, each written to a temp name and renamed.

matplotlib only (through ``Figure``, not pyplot, so no global backend state), no torch. Sizes are
those of a printed column or page, with no text below 8 pt at the saved size, so the figures go
into a paper without rescaling. Figures take the metric they show from the data: the best
available perceptual metric (see :func:`thincam.report.tables.best_perceptual`), named on the axis.
"""

from __future__ import annotations

import logging
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure

from thincam.data.atomic import atomic_file
from thincam.data.h5io import read_h5
from thincam.errors import BadInputError
from thincam.metrics.fidelity import psnr
from thincam.registry import METRICS
from thincam.report.tables import (
    METHOD_LABELS,
    best_perceptual,
    check_metrics,
    dataset_rows,
    param_values,
)

log = logging.getLogger(__name__)

STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 9,
    "pdf.fonttype": 42,  # editable text in the PDF, as journals ask
}
COLUMN_WIDTH_IN = 3.4
PAGE_WIDTH_IN = 7.0
_METHOD_ORDER = list(METHOD_LABELS)
_MARKERS = "osD^vP*Xh"


def _save(fig: Figure, out_png: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out_png`` and the PDF beside it atomically; the PDF has no date, so reruns match."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    targets = ((out_png, "png", {}), (out_png.with_suffix(".pdf"), "pdf", {"CreationDate": None}))
    for path, fmt, metadata in targets:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=200, bbox_inches="tight", metadata=metadata)
    return out_png, out_png.with_suffix(".pdf")


def _axis_label(metric: str) -> str:
    label, lower_better = METRICS[metric].label, METRICS[metric].lower_is_better
    unit = " (dB)" if metric == "psnr" else ""
    return f"{label}{unit}, {'lower' if lower_better else 'higher'} is better"


def _method_style(method: str) -> dict:
    key = method.lower()
    rank = _METHOD_ORDER.index(key) if key in _METHOD_ORDER else len(_METHOD_ORDER)
    return {"color": f"C{rank % 10}", "marker": _MARKERS[rank % len(_MARKERS)]}


def _rows(metrics_csv: str | os.PathLike, dataset: str) -> pd.DataFrame:
    try:
        metrics = check_metrics(pd.read_csv(metrics_csv, keep_default_na=False, na_values=[""]), str(metrics_csv))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{metrics_csv}: not a readable metrics table ({err})") from err
    try:
        return dataset_rows(metrics, dataset)
    except BadInputError as err:
        raise BadInputError(f"{metrics_csv}: {err}") from err


def quality_vs_time(
    metrics_csv: str | os.PathLike, dataset: str, out_png: str | os.PathLike
) -> str:
    """Perceptual quality against median latency (log scale), one labelled point per run.

    Returns the metric plotted: LPIPS where it has values, else DISTS, else a weight-free one,
    else PSNR, else a no-reference one (captures without ground truth).
    """
    rows = _rows(metrics_csv, dataset)
    metric = best_perceptual(rows)
    usable = rows[(rows["latency_s"] > 0) & rows[metric].notna()]
    if usable.empty:
        raise BadInputError(
            f"{metrics_csv}: no {dataset} run has both a positive latency and {metric}"
        )
    if len(usable) < len(rows):
        log.warning(
            "%s: %d run(s) lack latency or %s and are not plotted",
            dataset,
            len(rows) - len(usable),
            metric,
        )
    with rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 2.6))
        ax = fig.add_subplot()
        for method, group in usable.groupby("method", sort=False):
            ax.scatter(
                group["latency_s"],
                group[metric],
                s=22,
                label=METHOD_LABELS.get(method.lower(), method),
                **_method_style(method),
            )
        ax.set_xscale("log")
        ax.set_xlabel("median latency per image (s)")
        ax.set_ylabel(_axis_label(metric))
        ax.set_title(dataset)
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(x=0.15, y=0.12)
        _label_points(
            ax,
            usable[["latency_s", metric]].to_numpy(float),
            usable["variant"].astype(str).tolist(),
        )
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
        _save(fig, out_png)
    return metric


def _label_points(ax, points: np.ndarray, labels: list[str], gap_pt: float = 9.0) -> None:
    """Label each point, pushing a label up (with a leader line) where it would overprint another.

    Runs of one method share a latency, so their labels would otherwise stack on each other.
    """
    to_pt = 72.0 / ax.figure.dpi
    where = ax.transData.transform(points) * to_pt
    placed: list[tuple[float, float, int]] = []
    for i in np.argsort(where[:, 1], kind="stable"):
        x, y = where[i]
        label_y = y
        for px, py, width in sorted(placed, key=lambda t: t[1]):
            if abs(px - x) < 5.0 * max(width, len(labels[i])) and abs(py - label_y) < gap_pt:
                label_y = py + gap_pt
        placed.append((x, label_y, len(labels[i])))
        moved = label_y - y > 0.5
        ax.annotate(
            labels[i],
            points[i],
            xytext=(4, 2 + label_y - y),
            textcoords="offset points",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"} if moved else None,
        )


def sweep(
    metrics_csv: str | os.PathLike,
    dataset: str,
    out_png: str | os.PathLike,
    sweeps: Mapping[str, str],
) -> str:
    """One panel per swept method: the perceptual metric (and PSNR, dashed) against its parameter."""
    rows = _rows(metrics_csv, dataset)
    metric = best_perceptual(rows)
    if not sweeps:
        raise BadInputError("sweep: no methods to plot")
    with rc_context(STYLE):
        width = min(PAGE_WIDTH_IN, 2.4 * len(sweeps))
        fig = Figure(figsize=(width, 2.3), layout="constrained")
        axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
        for ax, (method, param) in zip(axes, sweeps.items()):
            runs = rows[rows["method_key"] == method.lower()]
            runs = runs.assign(value=param_values(runs, param))
            runs = runs[runs["value"].notna()]
            if runs.empty:
                raise BadInputError(
                    f"{metrics_csv}: no {dataset} {method} run has parameter {param!r}"
                )
            try:
                runs = runs.assign(value=runs["value"].astype(float)).sort_values("value")
            except (TypeError, ValueError) as err:
                raise BadInputError(
                    f"{metrics_csv}: {method} parameter {param!r} is not numeric ({err})"
                ) from err
            style = _method_style(method)
            lines = ax.plot(
                runs["value"],
                runs[metric],
                marker=style["marker"],
                color=style["color"],
                label=METRICS[metric].label,
            )
            if metric != "psnr" and runs["psnr"].notna().any():
                twin = ax.twinx()
                lines += twin.plot(
                    runs["value"],
                    runs["psnr"],
                    marker=".",
                    linestyle="--",
                    color="0.4",
                    label="PSNR",
                )
                twin.set_ylabel(_axis_label("psnr"))
            values = runs["value"].to_numpy()
            if values.min() > 0 and values.max() / values.min() >= 20:
                ax.set_xscale("log")
            ax.set_xlabel(param)
            ax.set_ylabel(_axis_label(metric))
            ax.set_title(METHOD_LABELS.get(method.lower(), method))
            ax.grid(True, alpha=0.3)
            ax.legend(
                handles=lines,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.25),
                ncol=2,
                frameon=False,
            )
        _save(fig, out_png)
    return metric


def _read_xhat(
    recon_path: str | os.PathLike, data_path: str | os.PathLike, data: dict, data_attrs: dict
) -> np.ndarray:
    """A recon's xhat, after checking that it reconstructs the dataset read from ``data_path``."""
    recon, recon_attrs = read_h5(recon_path, names=["xhat", "index"], contract="recon")
    if recon_attrs.get("dataset") != data_attrs.get("dataset") or not np.array_equal(
        recon["index"], data["index"]
    ):
        raise BadInputError(
            f"{recon_path} is not a reconstruction of {data_path} (dataset or image indices differ)"
        )
    return recon["xhat"]


def _display(image: np.ndarray, stretch: bool = False) -> tuple[np.ndarray, str | None]:
    """[C,H,W] to what imshow takes. ``stretch`` maps the 0.5-99.5 percentiles to black and white:
    a raw measurement (or a capture's reconstruction, whose scale is arbitrary) is otherwise dim
    or clipped, and a few hot pixels would set the whole range."""
    image = np.asarray(image, dtype=np.float64)
    if stretch:
        lo, hi = np.percentile(image, [0.5, 99.5])
        image = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    image = np.clip(image, 0.0, 1.0)
    if image.shape[0] == 1:
        return image[0], "gray"
    return np.moveaxis(image, 0, -1), None


def _show(ax, image: np.ndarray, stretch: bool = False) -> None:
    picture, cmap = _display(image, stretch)
    ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def qualitative(
    data_path: str | os.PathLike,
    recon_paths: Sequence[str | os.PathLike],
    labels: Sequence[str],
    out_png: str | os.PathLike,
    n_images: int = 4,
) -> Path:
    """Rows of images: measurement (stretched), each method (with its PSNR), reference if any.

    Reconstructions are shown clipped to [0,1], as the metrics see them, not stretched.
    """
    if len(recon_paths) != len(labels):
        raise BadInputError(f"{len(recon_paths)} recon files but {len(labels)} labels")
    data, data_attrs = read_h5(data_path, contract="dataset")
    recons = [_read_xhat(path, data_path, data, data_attrs) for path in recon_paths]
    x = data.get("x")
    rows = min(n_images, len(data["y"]))
    titles = ["measurement", *labels] + (["reference"] if x is not None else [])
    cols = len(titles)
    panel = min(1.2, PAGE_WIDTH_IN / cols)
    with rc_context(STYLE):
        fig = Figure(figsize=(panel * cols, panel * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for i in range(rows):
            _show(axes[i, 0], data["y"][i], stretch=True)
            for j, xhat in enumerate(recons, start=1):
                _show(axes[i, j], xhat[i])
                if x is not None:
                    value = psnr(np.clip(xhat[i : i + 1], 0, 1), x[i : i + 1])[0]
                    axes[i, j].set_xlabel(f"{value:.1f} dB")
            if x is not None:
                _show(axes[i, -1], x[i])
        for ax, title in zip(axes[0], titles):
            ax.set_title(textwrap.fill(title, 14))
        _save(fig, out_png)
    return Path(out_png)


def alpha_sweep(
    alpha_table_csv: str | os.PathLike, dataset: str, out_png: str | os.PathLike
) -> str:
    """PSNR (left, where there is ground truth) and the perceptual metric (right) against alpha.

    Reads :func:`thincam.report.tables.alpha_sweep_table`'s CSV; returns the perceptual metric.
    """
    try:
        table = pd.read_csv(alpha_table_csv)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise BadInputError(f"{alpha_table_csv}: not a readable alpha-sweep table ({err})") from err
    if "alpha" not in table.columns:
        raise BadInputError(f"{alpha_table_csv}: column 'alpha' missing")
    by_name = table.rename(columns={metric.label: name for name, metric in METRICS.items()})
    metric = best_perceptual(by_name, exclude=("psnr",))
    if metric == "psnr":
        raise BadInputError(f"{alpha_table_csv}: no perceptual metric has values")
    by_name = by_name.sort_values("alpha")
    with rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 2.4), layout="constrained")
        ax = fig.add_subplot()
        lines = ax.plot(
            by_name["alpha"],
            by_name[metric],
            marker="s",
            linestyle="--",
            color="C3",
            label=METRICS[metric].label,
        )
        ax.set_ylabel(_axis_label(metric), color="C3")
        if "psnr" in by_name.columns and by_name["psnr"].notna().any():
            twin = ax.twinx()
            lines += twin.plot(
                by_name["alpha"], by_name["psnr"], marker="o", color="C0", label="PSNR"
            )
            twin.set_ylabel(_axis_label("psnr"), color="C0")
        ax.set_xlabel("decoder mix alpha (0 neutral, 1 positive)")
        ax.set_title(f"{dataset}: DMDiff alpha sweep")
        ax.grid(True, alpha=0.3)
        ax.legend(
            handles=lines, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False
        )
        _save(fig, out_png)
    return metric


def capture_figure(
    data_path: str | os.PathLike,
    recon_path: str | os.PathLike,
    out_png: str | os.PathLike,
    title: str,
    image: int = 0,
) -> Path:
    """A real capture beside its reconstruction (e.g. the DiffuserCam hand), both stretched.

    Without ground truth the reconstruction's brightness scale is arbitrary, so it is shown
    stretched like the capture rather than clipped to [0,1].
    """
    data, data_attrs = read_h5(data_path, contract="dataset")
    xhat = _read_xhat(recon_path, data_path, data, data_attrs)
    if not 0 <= image < len(xhat):
        raise BadInputError(f"{recon_path}: image {image} out of range (0..{len(xhat) - 1})")
    with rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 1.9), layout="constrained")
        left, right = fig.subplots(1, 2)
        _show(left, data["y"][image], stretch=True)
        left.set_title("raw capture")
        _show(right, xhat[image], stretch=True)
        right.set_title("reconstruction")
        fig.suptitle(title)
        _save(fig, out_png)
    return Path(out_png)
