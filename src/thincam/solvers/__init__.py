"""Reconstruction methods: the library's one front door to them.

Every method (``registry.METHODS``) has its module here with ``make_solver(physics, params,
context)``, which loads what the method needs once per job (a UNet, a student, a LoRA model) and
returns ``solve(y, index) -> xhat``; ``context`` holds the job's dataset, seed, device, the PSF
file's arrays and the paths of the trained models the method reads (``registry.Method.needs``).
:func:`method_solver` finds a method's module by its registry name. From a PSF file (written by
``thincam calibrate tests/data/diffusercam/psf_ds4.tif --downsample 20 -o psf.h5``) to an image::

    import torch
    from thincam.data.images import area_downsample, load_image
    from thincam.solvers import method_solver
    from thincam.stages.common import load_operator

    pinv = {"kind": "tikhonov", "lam": 1e-4, "iters": 30}
    operator = {"kind": "lensless", "scene_shape": [15, 20], "sensor_shape": [15, 20], "pinv": pinv}
    physics = load_operator("psf.h5", operator)  # y = A x, the camera's forward model
    solve = method_solver("wiener", physics, {"K": 0.01}, context={})
    y = area_downsample(load_image("tests/data/diffusercam/hand_ds4.tif"), 20)  # on the PSF's grid
    xhat = solve(torch.from_numpy(y[None]), index=[0])  # [1, 1, 15, 20] in [0, 1]
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Callable, Mapping

from thincam.errors import BadInputError
from thincam.registry import METHODS


def check_params(method: str, fn: Callable, params: Mapping[str, Any], skip: int) -> None:
    """Reject a variant parameter the solver does not take, or lacks one it needs, naming them
    (before any work)."""
    taken = list(inspect.signature(fn).parameters.values())[skip:]
    accepted = [p.name for p in taken]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise BadInputError(f"method {method!r} does not take parameter(s) {unknown}; it takes {accepted}")
    missing = [p.name for p in taken if p.default is inspect.Parameter.empty and p.name not in params]
    if missing:
        raise BadInputError(f"method {method!r} needs parameter(s) {missing}")


def image_seeds(context: Mapping[str, Any], index) -> list[int]:
    """Per-image seeds: a reconstruction does not depend on which images share its batch."""
    from thincam.data.shards import image_seed

    return [image_seed(context["seed"], context["dataset"], int(i)) for i in index]


def method_solver(method: str, physics, params: Mapping[str, Any], context: Mapping[str, Any]):
    """``solve(y, index)`` of a registered method, built by its module's ``make_solver``.

    The module is imported by name, so a Wiener job imports no diffusion code."""
    if method not in METHODS:
        raise BadInputError(f"unknown reconstruction method {method!r}; known: {sorted(METHODS)}")
    module = importlib.import_module(f"thincam.{METHODS[method].module}")
    return module.make_solver(physics, dict(params), context)
