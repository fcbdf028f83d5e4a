"""One entry point for every reconstruction method: batched outputs, then timed single images.

A method is a factory ``make(physics, params, context) -> solve(y, index) -> xhat`` so heavy
state (a UNet, a student, a LoRA model) is loaded once per job, not once per batch.
"""

from __future__ import annotations

import contextlib
import inspect
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from thincam.errors import BadInputError

Solve = Callable[["torch.Tensor", np.ndarray], "torch.Tensor"]  # noqa: F821


def _check_params(method: str, fn: Callable, params: Mapping[str, Any], skip: int) -> None:
    """Reject a variant parameter the solver does not take, naming it (before any work)."""
    accepted = list(inspect.signature(fn).parameters)[skip:]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise BadInputError(f"method {method!r} does not take parameter(s) {unknown}; it takes {accepted}")


def _wiener(physics, params, context) -> Solve:
    from thincam.solvers.wiener import wiener

    _check_params("wiener", wiener, params, skip=2)
    return lambda y, index: wiener(physics, y, **params)


def _admm(physics, params, context) -> Solve:
    from thincam.solvers.admm import admm_tv

    _check_params("admm", admm_tv, params, skip=2)
    return lambda y, index: admm_tv(physics, y, **params)


def _image_seeds(context, index: np.ndarray) -> list[int]:
    """Per-image seeds: a reconstruction does not depend on which images share its batch."""
    from thincam.data.shards import image_seed

    return [image_seed(context["seed"], context["dataset"], int(i)) for i in index]


def _diffusion(sampler_name: str):
    def make(physics, params, context) -> Solve:
        from thincam.models.prior import load_prior
        from thincam.solvers import ddnm, dps

        sampler = {"dps": dps.dps, "ddnm": ddnm.ddnm_plus}[sampler_name]
        _check_params(sampler_name, sampler, params, skip=4)
        unet, scheduler = load_prior(context["models"]["prior"], device=context["device"])
        shape = (physics.scene_shape[0], physics.scene_shape[1])

        def solve(y, index):
            seeds = _image_seeds(context, index)
            x_T = ddnm.initial_noise((len(seeds), unet.config.in_channels, *shape), seeds, y.device)
            return sampler(
                physics, y, unet, scheduler, x_T=x_T, generator=ddnm.step_generators(seeds), **params
            )

        return solve

    return make


def _nsdd(physics, params, context) -> Solve:
    from thincam.models.nsdd import load_student, nsdd_reconstruct

    _check_params("nsdd", nsdd_reconstruct, params, skip=3)
    # The student input is its output folder's completion marker: load the folder.
    student = load_student(Path(context["models"]["student"]).parent).to(context["device"])
    return lambda y, index: nsdd_reconstruct(student, physics, y, **params)


def _dmdiff(physics, params, context) -> Solve:
    from thincam.models.dmdiff.model import load_dmdiff
    from thincam.models.dmdiff.restore import restore
    from thincam.models.dmdiff.stages import read_fwhm

    # ``model`` names the trained DMDiff variant; the workflow turns it into the models input.
    params = {key: value for key, value in params.items() if key != "model"}
    _check_params("dmdiff", restore, params, skip=3)
    models = context["models"]
    model = load_dmdiff(models["dmdiff"], context["device"], base_dir=models["dmdiff_base"])
    fwhm_grid = read_fwhm(context["psf_path"])
    return lambda y, index: restore(model, y, fwhm_grid, **params)


METHODS: dict[str, Callable] = {
    "wiener": _wiener,
    "admm": _admm,
    "dps": _diffusion("dps"),
    "ddnm": _diffusion("ddnm"),
    "nsdd": _nsdd,
    "nsdd_full": _nsdd,
    "dmdiff": _dmdiff,
}
# DPS needs autograd through the UNet; every other method runs without it.
GRADIENT_FREE = set(METHODS) - {"dps"}


def run_reconstruction(
    data_path: str,
    psf_path: str,
    out_path: str,
    *,
    dataset: str,
    method: str,
    variant: str,
    params: Mapping[str, Any],
    timing: Mapping[str, Any],
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 16,
    models: Mapping[str, str] | None = None,
) -> None:
    """Reconstruct every image of a dataset file and time ``timing['n_images']`` of them alone.

    ``latency_s`` is the median of ``repeats`` timed runs (after ``warmup``) at batch size 1;
    images beyond ``n_images`` are not timed and hold NaN.
    """
    import torch
    from tqdm import tqdm

    from thincam.data.h5io import atomic_write_h5, json_attr, read_h5
    from thincam.metrics.timing import measure_latency
    from thincam.physics import build_operator

    if method not in METHODS:
        raise BadInputError(f"unknown reconstruction method {method!r}; known: {sorted(METHODS)}")
    arrays, attrs = read_h5(data_path, names=["y", "index"], contract="dataset")
    if attrs["dataset"] != dataset:
        raise BadInputError(f"{data_path}: holds dataset {attrs['dataset']!r}, not {dataset!r}")
    physics = build_operator(psf_path, json_attr(attrs, "operator"), device=device)
    context = {
        "dataset": dataset,
        "seed": seed,
        "device": device,
        "models": dict(models or {}),
        "psf_path": psf_path,
    }
    solve = METHODS[method](physics, dict(params), context)
    y_all, index = arrays["y"], arrays["index"]
    outputs = []
    grad_mode = torch.no_grad if method in GRADIENT_FREE else contextlib.nullcontext
    with grad_mode():
        for start in tqdm(range(0, len(y_all), batch_size), desc=f"{method}/{variant}"):
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
                warmup=timing["warmup"],
                repeats=timing["repeats"],
                device=device,
            )
        peak_mb = max(peak_mb, peak)
    atomic_write_h5(
        out_path,
        {"xhat": xhat.astype(np.float32), "latency_s": latency, "index": index},
        attrs={
            "dataset": dataset,
            "method": method,
            "variant": variant,
            "params": dict(params),
            "peak_mem_mb": float(peak_mb),
            "device": device if device == "cpu" else torch.cuda.get_device_name(),
            "n_timed": n_timed,
        },
        contract="recon",
    )
