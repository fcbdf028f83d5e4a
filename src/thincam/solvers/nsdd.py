"""NSDD's reconstruct entry (methods ``nsdd`` and ``nsdd_full``): the distilled student, one UNet
pass per image, checked to have been distilled for this camera's operator (``models.nsdd``)."""

from __future__ import annotations

from pathlib import Path

from thincam.errors import BadInputError
from thincam.models.nsdd import load_student, nsdd_reconstruct
from thincam.physics.operators import check_same_operator
from thincam.solvers import check_params


def make_solver(physics, params, context):
    """The distilled student of ``context["models"]["student"]`` (its folder's marker is the input)."""
    check_params("nsdd", nsdd_reconstruct, params, skip=3)
    folder = Path(context["models"]["student"]).parent
    student = load_student(folder).to(context["device"])
    if student.config.operator_identity is None:
        raise BadInputError(f"{folder}: the student records no operator; distil it again")
    check_same_operator(student.config.operator_identity, physics.identity(), where=f"NSDD student {folder}")
    student.bf16 = context.get("bf16", False)
    return lambda y, index: nsdd_reconstruct(student, physics, y, **params)
