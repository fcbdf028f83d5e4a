"""Paper figures from tables and arrays: PNG (200 dpi) and PDF beside it, written atomically.

matplotlib only (through ``Figure``, not pyplot, so no global backend state), no torch, no file
reading: the report stage loads metrics tables and reconstructions and passes DataFrames and
arrays. Sizes are those of a printed column or page, with no text below 8 pt at the saved size, so
the figures go into a paper without rescaling. Each function returns its Figure, so tests can
check where its text landed. The perceptual metric shown is the best one with values (see
:func:`thincam.report.tables.best_perceptual`), named on the axis.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from thincam.data.atomic import atomic_file
from thincam.errors import BadInputError
from thincam.registry import METRICS, WEIGHT_FREE
from thincam.report.tables import (
    METHOD_LABELS,
    best_perceptual,
    best_variants,
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
    "figure.labelsize": 8,
    "pdf.fonttype": 42,  # editable text in the PDF, as journals ask
}
COLUMN_WIDTH_IN = 3.4
PAGE_WIDTH_IN = 7.0
_METHOD_ORDER = list(METHOD_LABELS)
_MARKERS = "osD^vPhX*"
# How a swept parameter reads on an axis.
PARAM_LABELS = {
    "K": "Wiener regulariser K",
    "zeta": "guidance step ζ",
    "steps": "sampling steps",
    "alpha": "decoder mix α",
    "n_iter": "iterations",
}


def save(fig: Figure, out_png: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out_png`` and the PDF beside it atomically; the PDF has no date, so reruns match."""
    out_png = Path(out_png)
    targets = ((out_png, "png", {}), (out_png.with_suffix(".pdf"), "pdf", {"CreationDate": None}))
    for path, fmt, metadata in targets:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=200, bbox_inches="tight", metadata=metadata)
    return out_png, out_png.with_suffix(".pdf")


def _metric_name(metric: str) -> str:
    """A metric as an axis names it: weight-free ones say so, since LPIPS is what a reader expects."""
    label = METRICS[metric].label + (" (dB)" if metric == "psnr" else "")
    return f"{label} (weight-free)" if metric in WEIGHT_FREE else label


def _axis_label(metric: str) -> str:
    """The name and an arrow for the better direction (down: lower is better)."""
    return f"{_metric_name(metric)} {'↓' if METRICS[metric].lower_is_better else '↑'}"


def _method_label(method: str) -> str:
    return METHOD_LABELS.get(method.lower(), method)


def _methods_in_order(rows: pd.DataFrame) -> list[str]:
    """The methods of a dataset's rows in registry order (unregistered ones last, by name)."""
    return sorted(
        set(rows["method_key"]),
        key=lambda m: (_METHOD_ORDER.index(m) if m in _METHOD_ORDER else len(_METHOD_ORDER), m),
    )


def _method_style(method: str, rows: pd.DataFrame) -> dict:
    """A colour and marker per method, ranked among the methods of the dataset (``rows``) in
    registry order: the same in every figure of a dataset, and distinct for up to nine methods
    however many the registry holds."""
    rank = _methods_in_order(rows).index(method.lower())
    return {"color": f"C{rank % 10}", "marker": _MARKERS[rank % len(_MARKERS)]}


def _freeze_layout(fig: Figure):
    """Draw once so constrained layout settles, then fix it; returns the renderer.

    Labels placed afterwards by their drawn extents then stay where they were checked.
    """
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    fig.set_layout_engine("none")
    return fig.canvas.get_renderer()


def _fitting_legend(fig: Figure, handles, names, rows_planned: int = 3) -> None:
    """A legend below the axes in as many columns (3 at most) as the figure's width holds; the
    figure grows by each legend row beyond ``rows_planned``, so the axes keep their height."""
    for ncol in (3, 2, 1):
        legend = fig.legend(
            handles, names, loc="outside lower center", ncol=ncol, frameon=False, handletextpad=0.2
        )
        FigureCanvasAgg(fig)
        fig.canvas.draw()
        if ncol == 1 or legend.get_window_extent().width <= fig.bbox.width:
            break
        legend.remove()
    extra_rows = -(-len(names) // ncol) - rows_planned
    if extra_rows > 0:
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + extra_rows * 0.16)


def _label_candidates() -> list[tuple[float, float, str, str]]:
    """Offsets (points) and alignments to try around a point, nearest first."""
    candidates = []
    for distance in (4.0, 9.0, 15.0, 22.0):
        for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0, 1), (0, -1)):
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top"
            candidates.append((dx * distance, dy * distance, ha, va))
    return candidates


def _place_labels(ax, points: np.ndarray, labels: Sequence[str], renderer) -> None:
    """Label each point where its text covers no marker and no other label and stays in the axes;
    farther places get a leader line. A label with no free place is left out, with a warning."""
    frame = ax.get_window_extent(renderer)
    radius = 4.0 * ax.figure.dpi / 72  # a marker of s=22 is about 5 pt across
    occupied = [
        Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
        for x, y in ax.transData.transform(points)
    ]
    for point, label in zip(points, labels):
        for dx, dy, ha, va in _label_candidates():
            place = {"xytext": (dx, dy), "textcoords": "offset points", "ha": ha, "va": va}
            note = ax.annotate(label, point, **place)
            box = note.get_window_extent(renderer)  # the text alone, before any leader line
            inside = (
                frame.x0 <= box.x0
                and box.x1 <= frame.x1
                and frame.y0 <= box.y0
                and box.y1 <= frame.y1
            )
            if inside and not any(box.overlaps(other) for other in occupied):
                occupied.append(box)
                if abs(dx) + abs(dy) > 10:
                    note.remove()
                    ax.annotate(
                        label,
                        point,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.5"},
                        **place,
                    )
                break
            note.remove()
        else:
            log.warning("no free place for the label %r at %s; left out", label, point)


def quality_vs_time(
    metrics: pd.DataFrame,
    dataset: str,
    out_png: str | os.PathLike,
    reported: Collection[tuple[str, str]] = (),
    lpips_net: str | None = None,
) -> Figure:
    """NSDD Fig. 1: perceptual quality against median latency (log x).

    The runs a paper table reports (``reported``: (method, variant) pairs; for a method not
    among them, :func:`~thincam.report.tables.best_variants`) are filled points, named in the
    legend; the variants not chosen are hollow. Where a method's variants trade time for
    quality (DDNM+ steps) a line joins them and each is labelled. The metric is LPIPS where it
    has values, else DISTS, else a weight-free one (said on the axis), else PSNR, else a
    no-reference one (captures without ground truth). ``lpips_net`` (``metrics.lpips``) names the LPIPS network the tables report, so the figure
    shows the same one.
    """
    rows = dataset_rows(metrics, dataset)
    metric = best_perceptual(rows, lpips_net=lpips_net)
    listed = {method for method, _ in reported}
    reported = set(reported) | {
        pair for pair in best_variants(metrics, dataset) if pair[0] not in listed
    }
    usable = rows[(rows["latency_s"] > 0) & rows[metric].notna()]
    if usable.empty:
        raise BadInputError(f"no {dataset} run has both a positive latency and {metric}")
    if len(usable) < len(rows):
        log.warning(
            "%s: %d run(s) lack latency or %s and are not plotted",
            dataset,
            len(rows) - len(usable),
            metric,
        )
    with rc_context(STYLE):
        fig = Figure(figsize=(COLUMN_WIDTH_IN, 3.0), layout="constrained")
        ax = fig.add_subplot()
        points, labels, others = [], [], False
        for method in _methods_in_order(usable):
            group = usable[usable["method_key"] == method]
            style = _method_style(method, rows)
            picked = group["variant"].astype(str).isin({v for m, v in reported if m == method})
            latency = group["latency_s"]
            if latency.max() > 1.1 * latency.min():  # variants trading time for quality: a curve
                ordered = group.sort_values("latency_s")
                ax.plot(
                    ordered["latency_s"], ordered[metric], lw=0.8, color=style["color"], zorder=1
                )
                points += ordered[["latency_s", metric]].to_numpy(float).tolist()
                labels += ordered["variant"].astype(str).tolist()
            ax.scatter(
                group.loc[~picked, "latency_s"],
                group.loc[~picked, metric],
                s=22,
                facecolors="white",
                edgecolors=style["color"],
                marker=style["marker"],
                zorder=2,
            )
            others |= bool((~picked).any())
            ax.scatter(
                group.loc[picked, "latency_s"],
                group.loc[picked, metric],
                s=26,
                label=_method_label(method),
                zorder=3,
                **style,
            )
        handles, names = ax.get_legend_handles_labels()
        if others:
            handles.append(Line2D([], [], ls="none", marker="o", mfc="white", mec="0.4"))
            names.append("other variants")
        ax.set_xscale("log")
        ax.set_xlabel("median latency per image (s)")
        ax.set_ylabel(_axis_label(metric))
        ax.grid(True, which="major", alpha=0.3)
        ax.margins(x=0.25, y=0.15)
        _fitting_legend(fig, handles, names)
        renderer = _freeze_layout(fig)
        _place_labels(ax, np.array(points).reshape(-1, 2), labels, renderer)
        save(fig, out_png)
    return fig


def sweep(
    metrics: pd.DataFrame,
    dataset: str,
    out_png: str | os.PathLike,
    sweeps: Mapping[str, str],
    lpips_net: str | None = None,
) -> Figure:
    """NSDD Fig. 3: each swept method (a column) against its parameter; the perceptual metric
    above, PSNR below, rows sharing their y axis so methods compare across the page.
    ``lpips_net`` (``metrics.lpips``) names the LPIPS network the tables report, so the figure
    shows the same one."""
    if not sweeps:
        raise BadInputError("sweep: no methods to plot")
    rows = dataset_rows(metrics, dataset)
    metric = best_perceptual(rows, lpips_net=lpips_net)
    shown = [metric] + (["psnr"] if metric != "psnr" and rows["psnr"].notna().any() else [])
    with rc_context(STYLE):
        width = min(PAGE_WIDTH_IN, 0.4 + 2.1 * len(sweeps))
        fig = Figure(figsize=(width, 1.1 + 1.35 * len(shown)), layout="constrained")
        axes = fig.subplots(len(shown), len(sweeps), squeeze=False, sharex="col", sharey="row")
        for col, (method, param) in enumerate(sweeps.items()):
            runs = rows[rows["method_key"] == method.lower()]
            runs = runs.assign(value=param_values(runs, param))
            runs = runs[runs["value"].notna()]
            if runs.empty:
                raise BadInputError(f"no {dataset} {method} run has parameter {param!r}")
            try:
                runs = runs.assign(value=runs["value"].astype(float)).sort_values("value")
            except (TypeError, ValueError) as err:
                raise BadInputError(f"{method} parameter {param!r} is not numeric ({err})") from err
            values = runs["value"].to_numpy()
            style = _method_style(method, rows)
            for row, name in enumerate(shown):
                ax = axes[row, col]
                ax.plot(values, runs[name], marker=style["marker"], color=style["color"], ms=4)
                ax.grid(True, alpha=0.3)
                if col == 0:
                    ax.set_ylabel(_axis_label(name))
            if values.min() > 0 and values.max() / values.min() >= 10:
                axes[0, col].set_xscale("log")
            axes[0, col].set_title(_method_label(method))
            axes[-1, col].set_xlabel(PARAM_LABELS.get(param, param))
            axes[-1, col].set_xticks(values, [f"{v:g}" for v in values])
            axes[-1, col].minorticks_off()
        save(fig, out_png)
    return fig


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


def _score_text(row: pd.Series, metric: str | None) -> str:
    parts = [f"{row['psnr']:.2f}"] if pd.notna(row.get("psnr")) else []
    if metric is not None and pd.notna(row.get(metric)):
        parts.append(f"{row[metric]:.3f}")
    return " / ".join(parts)


def qualitative(
    measurement: np.ndarray,
    columns: Mapping[str, np.ndarray],
    out_png: str | os.PathLike,
    reference: np.ndarray | None = None,
    scores: Mapping[str, pd.DataFrame] | None = None,
    n_images: int = 4,
    lpips_net: str | None = None,
) -> Figure:
    """NSDD Fig. 5: a row per test image; measurement (stretched), one column per method
    (``columns``: title -> xhat [N,C,H,W], clipped to [0,1] as the metrics see it), reference.

    ``scores`` (title -> per-image metrics, row i for image i) puts PSNR and the perceptual
    metric under each image; the metric is named once, under the grid. ``lpips_net`` (``metrics.lpips``) names the LPIPS network the tables report, so the figure
    shows the same one.
    """
    if not columns:
        raise BadInputError("qualitative: no reconstructions to show")
    rows = min(n_images, len(measurement))
    for title, xhat in columns.items():
        if len(xhat) < rows:
            raise BadInputError(
                f"qualitative: {title!r} has {len(xhat)} images, the grid shows {rows}"
            )
    scores = dict(scores or {})
    metric = (
        best_perceptual(pd.concat(scores.values()), exclude=("psnr",), lpips_net=lpips_net)
        if scores
        else "psnr"
    )
    metric = None if metric == "psnr" else metric
    titles = ["measurement", *columns] + (["reference"] if reference is not None else [])
    n_cols = len(titles)
    panel = min(1.0, PAGE_WIDTH_IN / n_cols)
    with rc_context(STYLE):
        fig = Figure(figsize=(panel * n_cols, (panel + 0.2) * rows + 0.6), layout="constrained")
        fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.02, hspace=0.02)
        axes = fig.subplots(rows, n_cols, squeeze=False)
        for i in range(rows):
            _show(axes[i, 0], measurement[i], stretch=True)
            for j, (title, xhat) in enumerate(columns.items(), start=1):
                _show(axes[i, j], xhat[i])
                if title in scores:
                    axes[i, j].set_xlabel(_score_text(scores[title].iloc[i], metric))
            if reference is not None:
                _show(axes[i, -1], reference[i])
        for ax, title in zip(axes[0], titles):
            ax.set_title("\n".join(textwrap.fill(line, 12) for line in title.split("\n")))
        if scores:
            named = [_axis_label(name) for name in ("psnr", metric) if name]
            fig.supxlabel("Under each image: " + " / ".join(named))
        save(fig, out_png)
    return fig


def _alpha_scene(images: Mapping[float, np.ndarray], crop: int) -> tuple[int, int, int]:
    """(image, top, left) where the decoder mix changes the picture most: the test image, then
    the ``crop`` window, with the largest spread across alphas."""
    stack = np.stack([np.clip(x, 0, 1) for x in images.values()])  # [A,N,C,H,W]
    spread = np.abs(stack - stack.mean(axis=0)).mean(axis=(0, 2))  # [N,H,W]
    scene = int(spread.mean(axis=(1, 2)).argmax())
    window = np.lib.stride_tricks.sliding_window_view(spread[scene], (crop, crop)).mean(
        axis=(-2, -1)
    )
    top, left = np.unravel_index(window.argmax(), window.shape)
    return scene, int(top), int(left)


def alpha_figure(
    table: pd.DataFrame,
    images: Mapping[float, np.ndarray],
    out_png: str | os.PathLike,
    reference: np.ndarray | None = None,
) -> Figure:
    """DMDiff's tunable decoder: one scene at each alpha (``images``: alpha -> xhat [N,C,H,W]),
    its crop zoomed below, beside PSNR and the perceptual metric against alpha.

    ``table`` is :func:`thincam.report.tables.alpha_sweep_table`'s (metric labels as columns). The
    scene and crop are where the alphas differ most, so the figure shows what the curve measures.
    """
    if "alpha" not in table.columns:
        raise BadInputError("alpha table: column 'alpha' missing")
    by_name = table.rename(columns={metric.label: name for name, metric in METRICS.items()})
    metric = best_perceptual(by_name, exclude=("psnr",))
    if metric == "psnr":
        raise BadInputError("alpha table: no perceptual metric has values")
    if not images:
        raise BadInputError("alpha figure: no reconstructions")
    by_name = by_name.sort_values("alpha")
    alphas = sorted(images)
    size = next(iter(images.values())).shape[-1]
    crop = max(6, size // 3)
    scene, top, left = _alpha_scene(images, crop)
    pictures = [(f"α = {a:g}", images[a][scene]) for a in alphas]
    if reference is not None:
        pictures.append(("reference", reference[scene]))
    curves = [name for name in ("psnr", metric) if name in by_name and by_name[name].notna().any()]
    with rc_context(STYLE):
        panel = 0.8
        fig = Figure(figsize=(PAGE_WIDTH_IN, 2 * panel + 0.55), layout="constrained")
        left_fig, right_fig = fig.subfigures(1, 2, width_ratios=[len(pictures), 2.4])
        grid = left_fig.subplots(2, len(pictures), squeeze=False)
        for j, (title, picture) in enumerate(pictures):
            _show(grid[0, j], picture)
            grid[0, j].add_patch(
                Rectangle(
                    (left - 0.5, top - 0.5), crop, crop, fill=False, edgecolor="yellow", lw=1.0
                )
            )
            _show(grid[1, j], picture[:, top : top + crop, left : left + crop])
            grid[0, j].set_title(title)
        grid[0, 0].set_ylabel("scene")
        grid[1, 0].set_ylabel(f"zoom ×{size / crop:.1f}")
        axes = right_fig.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
        for ax, name in zip(axes, curves):
            ax.plot(
                by_name["alpha"],
                by_name[name],
                marker="o",
                ms=3.5,
                color="C0" if name == "psnr" else "C3",
            )
            ax.set_title(_axis_label(name), fontsize=STYLE["font.size"])
            ax.grid(True, alpha=0.3)
        axes[-1].set_xlabel("decoder mix α")
        save(fig, out_png)
    return fig


def capture_figure(
    measurement: np.ndarray,
    reconstructions: Mapping[str, np.ndarray],
    out_png: str | os.PathLike,
    title: str,
    consistency: Mapping[str, float] | None = None,
) -> Figure:
    """A real capture [C,Hs,Ws] beside its reconstructions (title -> [C,H,W], one panel each, in
    order), all stretched; each reconstruction's ``consistency`` (||A xhat - y|| / ||y||) beneath.

    Without ground truth a reconstruction's brightness scale is arbitrary, so each is shown
    stretched like the capture rather than clipped to [0,1]; consistency is what can be scored.
    """
    if not reconstructions:
        raise BadInputError("capture figure: no reconstructions to show")
    consistency = dict(consistency or {})
    n_cols = 1 + len(reconstructions)
    panel = min(1.4, PAGE_WIDTH_IN / n_cols)
    height, width = measurement.shape[-2:]
    with rc_context(STYLE):
        fig = Figure(
            figsize=(panel * n_cols, panel * height / width + 0.95), layout="constrained"
        )
        fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.03)
        axes = fig.subplots(1, n_cols, squeeze=False)[0]
        _show(axes[0], measurement, stretch=True)
        axes[0].set_title(f"raw capture\n{height}×{width} px")
        for ax, (label, xhat) in zip(axes[1:], reconstructions.items()):
            _show(ax, xhat, stretch=True)
            h, w = xhat.shape[-2:]
            ax.set_title(f"{label}\n{h}×{w} px")
            if label in consistency:
                ax.set_xlabel(f"{consistency[label]:.3f}")
        if consistency:
            fig.supxlabel("Under each reconstruction: " + _axis_label("consistency"))
        fig.suptitle(f"{title}: real capture, no ground truth (each panel stretched)")
        save(fig, out_png)
    return fig


def _background_text(background) -> str:
    """The calibration's background attribute (JSON per-channel levels, or "none") for a reader."""
    if isinstance(background, str) and background.startswith("["):
        levels = ", ".join(f"{level:.3g}" for level in json.loads(background))
        return f"{levels} of full scale per channel"
    return str(background)


def psf_diagnostic(psf: np.ndarray, attrs: Mapping[str, object], out_png: str | os.PathLike) -> Figure:
    """One page on a calibrated PSF [C,H,W]: the PSF (gamma 0.5, so faint caustics show), its
    profiles through the brightest pixel with the half maximum, and the calibration's checks
    (energy kept by the crop, saturated and hot pixels, background, FWHM)."""
    from thincam.optics.metalens import psf_fwhm

    plane = psf.sum(axis=0)
    peak_row, peak_col = np.unravel_index(int(np.argmax(plane)), plane.shape)
    fwhm = psf_fwhm(plane)
    lines = [
        f"source: {Path(str(attrs.get('source', '?'))).name}",
        f"PSF: {psf.shape[0]} channel(s), {psf.shape[1]}×{psf.shape[2]} px, "
        f"downsampled {attrs.get('downsample', 1)}×",
        f"energy kept by the crop: {100 * attrs['energy_kept']:.1f}%" if "energy_kept" in attrs else "simulated PSF",
        f"saturated pixel values: {attrs.get('n_saturated', 'n/a')}",
        f"hot pixels replaced: {attrs.get('n_hot_pixels', 'n/a')}",
        f"background subtracted: {_background_text(attrs.get('background', 'none'))}",
        f"FWHM (area above half maximum, as a disc's diameter): {fwhm:.2f} px",
    ]
    with rc_context(STYLE):
        fig = Figure(figsize=(PAGE_WIDTH_IN, 0.55 * PAGE_WIDTH_IN), layout="constrained")
        grid = fig.add_gridspec(2, 2, height_ratios=[3, 1.3], width_ratios=[1.2, 1])
        image_ax, profile_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        text_ax = fig.add_subplot(grid[1, :])
        image_ax.imshow(np.sqrt(plane / plane.max()), cmap="magma", interpolation="nearest")
        image_ax.plot(peak_col, peak_row, "+", color="cyan", markersize=8)
        image_ax.set_title("PSF (gamma 0.5), + brightest pixel")
        image_ax.set_axis_off()
        profile_ax.plot(plane[peak_row] / plane.max(), label=f"row {peak_row}")
        profile_ax.plot(plane[:, peak_col] / plane.max(), label=f"column {peak_col}")
        profile_ax.axhline(0.5, color="grey", linestyle=":", label="half maximum")
        profile_ax.set_xlabel("pixel")
        profile_ax.set_ylabel("relative intensity")
        profile_ax.set_title("profiles through the brightest pixel")
        profile_ax.set_ylim(0, 1.45)  # room for the legend above the peak
        profile_ax.legend(loc="upper center", ncol=3, fontsize="small", handlelength=1.2, columnspacing=0.8)
        text_ax.set_axis_off()
        text_ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", transform=text_ax.transAxes)
        fig.suptitle("PSF calibration")
        save(fig, out_png)
    return fig
