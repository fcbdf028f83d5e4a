"""The supervised UNet baseline's reconstruct entry (method ``unet``): the trained restorer of
``models.restorer`` applied to each capture."""

from __future__ import annotations

from thincam.models.restorer import load_restorer, restore
from thincam.solvers import check_params


def make_solver(physics, params, context):
    """The restorer of ``context["models"]["restorer"]``; ``params`` are :func:`restore`'s."""
    check_params("unet", restore, params, skip=2)
    unet = load_restorer(context["models"]["restorer"], context["device"])
    return lambda y, index: restore(unet, y, **params)
