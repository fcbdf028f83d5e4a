"""What several stages share: a camera's operator from its PSF file, a dataset's attrs, and the
launch of a training stage in several processes."""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

from thincam.data.h5io import json_attr, read_h5
from thincam.errors import BadInputError


def load_operator(psf_path: str | os.PathLike, operator: Mapping[str, Any], device: str = "cpu"):
    """The camera's forward model from its calibrated PSF file and the operator parameters."""
    from thincam.physics import PSF_DATASET, build_operator

    name = PSF_DATASET.get(operator["kind"])
    if name is None:
        raise BadInputError(f"operator kind must be one of {sorted(PSF_DATASET)}, got {operator['kind']!r}")
    arrays, _ = read_h5(psf_path, names=[name], contract="psf")
    return build_operator(arrays[name], operator, device=device)


def dataset_operator(data_path: str | os.PathLike) -> dict[str, Any]:
    """The operator parameters a dataset file was made with (its ``operator`` attribute)."""
    _, attrs = read_h5(data_path, names=[], contract="dataset")
    if "operator" not in attrs:
        raise BadInputError(f"{data_path}: attribute 'operator' missing, so A cannot be formed")
    return json_attr(attrs, "operator")


def launched(stage):
    """A training stage that takes ``processes``: above 1 it runs in that many processes of this
    job, one per GPU (accelerate's launcher; thincam.models.training.launch)."""

    @functools.wraps(stage)
    def run(*args, processes: int = 1, **kwargs):
        if processes <= 1:
            return stage(*args, **kwargs)
        from thincam.models.training import launch

        return launch(functools.partial(stage, **kwargs), args, processes)

    return run
