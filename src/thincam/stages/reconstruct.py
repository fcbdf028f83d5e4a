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
from thincam.data.h5io import atomic_write_h5, json_attr, read_h5
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
    arrays, attrs = read_h5(data_path, names=["y", "index"], contract="dataset")
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
            xhat, latency, peak_mb, n_timed = _run_variant(
                solve, arrays, f"{method}/{variant}", method, timing, device, batch_size
            )
            atomic_write_h5(
                f"{tmp}/{variant}.h5",
                {"xhat": xhat, "latency_s": latency, "index": arrays["index"]},
                attrs={
                    "dataset": dataset,
                    "split": attrs["split"],
                    "method": method,
                    "variant": variant,
                    "params": dict(params),
                    "peak_mem_mb": peak_mb,
                    "device": device if device == "cpu" else _cuda_name(),
                    "n_timed": n_timed,
                    "bf16": bool(bf16),
                },
                contract="recon",
            )


def _cuda_name() -> str:
    import torch

    return torch.cuda.get_device_name()


def _run_variant(solve, arrays, name, method, timing, device, batch_size):
    """(xhat, per-image latency, peak MB, images timed) of one solver on every image."""
    import torch
    from thincam.logs import progress

    grad_mode = contextlib.nullcontext if METHODS[method].gradient else torch.no_grad
    y_all, index = arrays["y"], arrays["index"]
    outputs = []
    with grad_mode():
        for start in progress(range(0, len(y_all), batch_size), name):
            y = torch.from_numpy(y_all[start : start + batch_size]).to(device)
            outputs.append(solve(y, index[start : start + batch_size]).detach().float().cpu().numpy())
    xhat = np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
    latency = np.full(len(y_all), np.nan)
    peak_mb = 0.0
    n_timed = min(len(y_all), timing.get("n_images") or len(y_all))
    for i in range(n_timed):
        y = torch.from_numpy(y_all[i : i + 1]).to(device)
        with grad_mode():
            latency[i], peak = measure_latency(
                lambda: solve(y, index[i : i + 1]),
                warmup=timing["warmup"] if i == 0 else 0,
                repeats=timing["repeats"],
                device=device,
                min_timed_s=timing.get("min_timed_s", 0.0),
            )
        peak_mb = max(peak_mb, peak)
    return xhat.astype(np.float32), latency, float(peak_mb), n_timed
