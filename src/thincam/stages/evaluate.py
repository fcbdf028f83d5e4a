"""The ``evaluate`` rule: per-image metrics of every reconstruction of one dataset split.

One job per split, not per run: the metric backbones (pyiqa, torchvision) take seconds to import
and build, the metrics of 16 small images a fraction of that (the demo's 35 evaluate jobs were
mostly start-up). Its CSV has one row per (method, variant, image).

Image metrics see the reconstruction clipped to [0,1] (what is displayed and what the perceptual
metrics accept), after the configured per-image scaling of it and of its reference
(:func:`thincam.metrics.fidelity.scale_per_image`: a published table's convention);
consistency ||A xhat - y|| / ||y|| sees it unscaled and unclipped, as the solver produced it.
A dataset without ground truth (captures) gets the no-reference metrics and consistency only; the
full-reference columns stay in the CSV, empty.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from thincam.data.atomic import write_csv_atomic
from thincam.data.h5io import BLOCK_ROWS, dataset_names, n_rows, read_h5, read_rows
from thincam.errors import BadInputError
from thincam.logs import progress
from thincam.metrics import fidelity
from thincam.metrics.perceptual import COLUMNS as PERCEPTUAL_COLUMNS
from thincam.metrics.perceptual import PerceptualMetrics
from thincam.report.tables import RUN_KEYS
from thincam.stages.common import dataset_operator, load_operator

log = logging.getLogger(__name__)

COLUMNS = ["index", "psnr", "ssim", *PERCEPTUAL_COLUMNS, "consistency", "latency_s"]
_BATCH = 16


def _check_match(
    recon: dict, recon_attrs: dict, data: dict, data_attrs: dict, recon_path, data_path, first_row: int = 0
) -> None:
    """Reject a recon file that is not a reconstruction of exactly this dataset file (checked on
    the block of rows starting at ``first_row``)."""
    pair = f"{recon_path} does not match {data_path}"
    for name in ("y", "index"):
        if name not in data:
            raise BadInputError(f"{data_path}: dataset {name!r} missing")
    if recon_attrs.get("dataset") != data_attrs.get("dataset"):
        raise BadInputError(
            f"{pair}: dataset attribute {recon_attrs.get('dataset')!r} vs {data_attrs.get('dataset')!r}"
        )
    xhat = recon["xhat"]
    if xhat.ndim != 4:
        raise BadInputError(f"{recon_path}: xhat must be [N,C,H,W], has shape {xhat.shape}")
    n = len(data["index"])
    if xhat.shape[0] != n or recon["latency_s"].shape != (n,) or len(recon["index"]) != n:
        raise BadInputError(
            f"{pair}: {xhat.shape[0]} reconstructions, {recon['latency_s'].shape} latencies, "
            f"{len(recon['index'])} indices for {n} images"
        )
    if not np.array_equal(recon["index"], data["index"]):
        raise BadInputError(f"{pair}: image indices differ")
    if "x" in data and data["x"].shape != xhat.shape:
        raise BadInputError(
            f"{pair}: xhat has shape {xhat.shape}, ground truth x {data['x'].shape}"
        )
    bad = np.flatnonzero(~np.isfinite(xhat).all(axis=(1, 2, 3)))
    if bad.size:
        raise BadInputError(f"{recon_path}: xhat has non-finite values in images {(bad + first_row).tolist()}")


def _apply(
    forward: Callable[[torch.Tensor], torch.Tensor], xhat: np.ndarray, device: str
) -> np.ndarray:
    """A(xhat) in batches, on ``device``."""
    out = []
    with torch.no_grad():
        for lo in range(0, len(xhat), _BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(xhat[lo : lo + _BATCH])).to(device)
            out.append(forward(batch).detach().cpu().numpy())
    return np.concatenate(out)


def evaluate_reconstruction(
    recon_path: str | os.PathLike,
    data_path: str | os.PathLike,
    *,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    metrics: PerceptualMetrics | None = None,
    scaling: str = "none",
) -> pd.DataFrame:
    """One row per image (:data:`COLUMNS`) of one reconstruction file.

    ``forward`` maps xhat [B,C,H,W] to the measurement grid (the camera's A); without it
    consistency is left empty. ``metrics`` lets one job evaluate many files with one loaded set.
    ``scaling`` (:data:`thincam.registry.SCALINGS`) applies to xhat and x before the image
    metrics. Both files are read one block of rows at a time (:func:`thincam.data.h5io.read_rows`):
    every metric is per image, and a split need not fit in memory.
    """
    _, recon_attrs = read_h5(recon_path, names=[], contract="recon")
    _, data_attrs = read_h5(data_path, names=[], contract="dataset")
    data_names = [name for name in ("x", "y", "index") if name in dataset_names(data_path)]
    for name in ("y", "index"):
        if name not in data_names:
            raise BadInputError(f"{data_path}: dataset {name!r} missing")
    n_data = n_rows(data_path, "index")
    lengths = [n_rows(recon_path, name) for name in ("xhat", "latency_s", "index")]
    if lengths != [n_data] * 3:
        raise BadInputError(
            f"{recon_path} does not match {data_path}: {lengths[0]} reconstructions, ({lengths[1]},) latencies, "
            f"{lengths[2]} indices for {n_data} images"
        )
    if forward is None:
        log.warning("%s: no forward operator given; consistency left empty", recon_path)
    metrics = metrics if metrics is not None else PerceptualMetrics(weights_dir, device=device)
    tables, lo, hi = [], np.inf, -np.inf
    for block in range(0, n_data, BLOCK_ROWS):
        rows = np.arange(block, min(block + BLOCK_ROWS, n_data))
        recon, _ = read_rows(recon_path, ["xhat", "latency_s", "index"], rows, contract="recon")
        data, _ = read_rows(data_path, data_names, rows, contract="dataset")
        _check_match(recon, recon_attrs, data, data_attrs, recon_path, data_path, first_row=block)
        table, block_lo, block_hi = _block_table(recon, data, forward, metrics, scaling, device, recon_path, data_path)
        tables.append(table)
        lo, hi = min(lo, block_lo), max(hi, block_hi)
    if lo < -0.01 or hi > 1.01:
        log.warning(
            "%s: xhat (scaling %s) spans [%.3g, %.3g], not [0,1]; metrics see it clipped",
            recon_path, scaling, lo, hi,
        )  # fmt: skip
    if not tables:
        return pd.DataFrame({name: [] for name in COLUMNS}, columns=COLUMNS)
    return pd.concat(tables, ignore_index=True)


def _block_table(
    recon, data, forward, metrics, scaling, device, recon_path, data_path
) -> tuple[pd.DataFrame, float, float]:
    """The metric rows of one block of images, and the block's range of scaled xhat."""
    xhat = recon["xhat"].astype(np.float32)
    n = len(xhat)
    nan = np.full(n, np.nan)
    # Consistency first: a wrong operator should fail before the slow metrics run.
    consistency = nan
    if forward is not None:
        a_xhat = _apply(forward, xhat, device)
        if a_xhat.shape != data["y"].shape:
            raise BadInputError(
                f"{recon_path} vs {data_path}: A(xhat) has shape {a_xhat.shape},"
                f" measurement y {data['y'].shape}"
            )
        try:
            consistency = fidelity.consistency(a_xhat, data["y"])
        except BadInputError as err:
            raise BadInputError(f"{data_path}: {err}") from err
    scaled = fidelity.scale_per_image(xhat, scaling)
    shown = np.clip(scaled, 0.0, 1.0)
    x = fidelity.scale_per_image(data["x"], scaling) if "x" in data else None
    table: dict[str, Any] = {"index": data["index"].astype(np.int64)}
    table["psnr"] = fidelity.psnr(shown, x) if x is not None else nan
    table["ssim"] = fidelity.ssim(shown, x) if x is not None else nan
    table.update(metrics(shown, x))
    table["consistency"] = consistency
    table["latency_s"] = recon["latency_s"].astype(np.float64)
    return pd.DataFrame(table, columns=COLUMNS), float(scaled.min()), float(scaled.max())


def evaluate(
    recon_paths: Sequence[str | os.PathLike],
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    out_csv: str | os.PathLike,
    weights_dir: str | os.PathLike | None = None,
    device: str = "cpu",
    scaling: str = "none",
) -> pd.DataFrame:
    """Every reconstruction of one dataset split against it, with the operator the dataset was
    made with and one loaded set of metrics; one CSV (:data:`RUN_KEYS` + :data:`COLUMNS`).
    ``scaling``: the per-image scaling before the image metrics (:func:`evaluate_reconstruction`)."""
    physics = load_operator(psf_path, dataset_operator(data_path), device=device)
    metrics = PerceptualMetrics(weights_dir, device=device)
    runs = []
    for recon_path in progress(list(recon_paths), "evaluate"):
        _, attrs = read_h5(recon_path, names=[], contract="recon")
        missing = [key for key in RUN_KEYS if key not in attrs]
        if missing:
            raise BadInputError(f"{recon_path}: attribute(s) {missing} missing")
        df = evaluate_reconstruction(
            recon_path, data_path, forward=physics.A, device=device, metrics=metrics,
            scaling=scaling,
        )
        for key in reversed(RUN_KEYS):
            df.insert(0, key, attrs[key])
        runs.append(df)
    if not runs:
        raise BadInputError(f"{data_path}: no reconstructions to evaluate")
    table = pd.concat(runs, ignore_index=True)
    repeated = table.duplicated(["method", "variant", "index"])
    if repeated.any():
        raise BadInputError(
            f"{out_csv}: runs {table.loc[repeated, ['method', 'variant']].drop_duplicates().values.tolist()}"
            " are given more than once"
        )
    write_csv_atomic(table, out_csv)
    return table
