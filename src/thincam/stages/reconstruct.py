"""The ``reconstruct`` rule: every variant of a method on a dataset split, with latency and memory.

The method's code is found through the registry (``registry.METHODS[method].module``) and loaded
by name, so a Wiener job imports no diffusion code and the workflow hashes only the method's own
module graph for it.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any, Mapping

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.data.h5io import BLOCK_ROWS, json_attr, n_rows, read_h5, read_rows, streaming_h5
from thincam.errors import BadInputError
from thincam.metrics.timing import measure_latency
from thincam.registry import METHODS
from thincam.stages.common import load_operator


def method_solver(method: str, physics, params: Mapping[str, Any], context: Mapping[str, Any]):
    """``solve(y, index)`` of a registered method, built by its module's ``make_solver``."""
    if method not in METHODS:
        raise BadInputError(f"unknown reconstruction method {method!r}; known: {sorted(METHODS)}")
    module = importlib.import_module(f"thincam.{METHODS[method].module}")
    return module.make_solver(physics, dict(params), context)


def _psf_arrays(psf_path) -> dict[str, np.ndarray]:
    arrays, _ = read_h5(psf_path, contract="psf")
    return arrays


def reconstruct(
    data_path: str,
    psf_path: str,
    out_dir: str,
    *,
    dataset: str,
    method: str,
    variants: Mapping[str, Mapping[str, Any]],
    timing: Mapping[str, Any],
    operator: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    models: Mapping[str, Mapping[str, str]] | None = None,
    bf16: bool = False,
) -> None:
    """Every variant of ``method`` (name -> params) on one dataset split: ``out_dir/<variant>.h5``.

    One job per method rather than per variant: the data, the operator and the method's imports
    load once, and the folder appears only when every variant is written (a killed job leaves none).
    ``models`` maps each variant to the trained models it reads (role -> path).

    ``bf16`` runs the diffusion methods' UNet forwards under bfloat16 autocast.

    ``latency_s`` is the median of up to ``repeats`` timed runs at batch size 1 (fewer once they
    add up to ``min_timed_s``), after ``warmup`` runs on the first timed image only: one warm-up
    serves a variant. Images beyond ``n_images`` are not timed and hold NaN. ``operator`` overrides
    keys of the dataset's operator (a student runs with the A+ it was distilled with).
    """
    if not variants:
        raise BadInputError(f"{dataset}: method {method!r} has no variants to run")
    _, attrs = read_h5(data_path, names=[], contract="dataset")
    if attrs["dataset"] != dataset:
        raise BadInputError(f"{data_path}: holds dataset {attrs['dataset']!r}, not {dataset!r}")
    physics = load_operator(psf_path, {**json_attr(attrs, "operator"), **dict(operator or {})}, device=device)
    psf = _psf_arrays(psf_path)
    with atomic_directory(out_dir) as tmp:
        for variant, params in variants.items():
            context = {
                "dataset": dataset,
                "seed": seed,
                "device": device,
                "models": dict((models or {}).get(variant, {})),
                "psf": psf,
                "bf16": bool(bf16),
            }
            solve = method_solver(method, physics, params, context)
            _run_variant(
                solve,
                data_path,
                f"{tmp}/{variant}.h5",
                f"{method}/{variant}",
                method,
                timing,
                device,
                batch_size,
                attrs={
                    "dataset": dataset,
                    "split": attrs["split"],
                    "method": method,
                    "variant": variant,
                    "params": dict(params),
                    "device": device if device == "cpu" else _cuda_name(),
                    "bf16": bool(bf16),
                },
            )


def _cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def _run_variant(solve, data_path, out_path, name, method, timing, device, batch_size, attrs) -> None:
    """Run one solver on every image of ``data_path`` and write ``xhat``, the per-image
    ``latency_s`` and ``index`` to ``out_path`` (contract "recon", with ``attrs``, the peak memory
    and the number of images timed). Measurements are read and reconstructions written one block
    of rows at a time (:func:`thincam.data.h5io.read_rows`): a split need not fit in memory."""
    import torch
    from thincam.logs import progress

    grad_mode = contextlib.nullcontext if METHODS[method].gradient else torch.no_grad
    n = n_rows(data_path, "y")
    n_timed = min(n, timing.get("n_images") or n)
    with contextlib.ExitStack() as stack:
        writers, out_attrs = None, None

        def open_output(xhat_shape, index_dtype):
            shapes = {
                "xhat": ((n, *xhat_shape), np.float32),
                "latency_s": ((n,), np.float64),
                "index": ((n,), index_dtype),
            }
            return stack.enter_context(streaming_h5(out_path, shapes, contract="recon"))

        bar = progress(total=n, desc=name)
        step = max(1, BLOCK_ROWS // batch_size) * batch_size  # whole batches: the same batches as one read
        for block in range(0, n, step):
            rows = np.arange(block, min(block + step, n))
            data, _ = read_rows(data_path, ["y", "index"], rows, contract="dataset")
            for start in range(0, len(rows), batch_size):
                y = torch.from_numpy(data["y"][start : start + batch_size]).to(device)
                index = data["index"][start : start + batch_size]
                with grad_mode():
                    xhat = solve(y, index).detach().float().cpu().numpy()
                if writers is None:  # the output's shape is the first batch's
                    writers, out_attrs = open_output(xhat.shape[1:], index.dtype)
                writers["xhat"].append(xhat)
                writers["index"].append(index)
                bar.update(len(index))
        bar.close()
        if writers is None:  # an empty split
            writers, out_attrs = open_output((), np.int64)
        timed, _ = read_rows(data_path, ["y", "index"], np.arange(n_timed), contract="dataset")
        latency = np.full(n, np.nan)
        peak_mb = 0.0
        for i in range(n_timed):
            y = torch.from_numpy(timed["y"][i : i + 1]).to(device)
            with grad_mode():
                latency[i], peak = measure_latency(
                    lambda: solve(y, timed["index"][i : i + 1]),
                    warmup=timing["warmup"] if i == 0 else 0,
                    repeats=timing["repeats"],
                    device=device,
                    min_timed_s=timing.get("min_timed_s", 0.0),
                )
            peak_mb = max(peak_mb, peak)
        writers["latency_s"].append(latency)
        out_attrs.update(attrs, peak_mem_mb=float(peak_mb), n_timed=n_timed)
