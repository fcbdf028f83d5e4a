"""DMDiff's reconstruct entry (method ``dmdiff``): a trained variant with its decoder mix ``alpha``
(``models.dmdiff.restore``)."""

from __future__ import annotations

from thincam.models.dmdiff.model import load_dmdiff
from thincam.models.dmdiff.restore import restore
from thincam.solvers import check_params


def make_solver(physics, params, context):
    """``model`` names the trained variant; the workflow has already turned it into the models input."""
    params = {key: value for key, value in params.items() if key != "model"}
    check_params("dmdiff", restore, params, skip=3)
    models = context["models"]
    model = load_dmdiff(models["dmdiff"], context["device"], base_dir=models["dmdiff_base"])
    model.bf16 = context.get("bf16", False)
    fwhm_grid = context["psf"]["fwhm"]
    return lambda y, index: restore(model, y, fwhm_grid, **params)
