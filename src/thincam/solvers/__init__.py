"""Reconstruction methods. Each method module has ``make_solver(physics, params, context)``.

``make_solver`` loads what the method needs once per job (a UNet, a student, a LoRA model) and
returns ``solve(y, index) -> xhat``; ``context`` holds the job's dataset, seed, device, the PSF
file's arrays and the paths of the trained models the method reads (``registry.Method.needs``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from thincam.errors import BadInputError


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
