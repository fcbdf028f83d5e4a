"""The one conversion from a diffusion network's output to its clean estimate x0|t.

x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, so for each prediction type:
epsilon: x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar); v_prediction (v = sqrt(abar) eps -
sqrt(1 - abar) x0): x0 = sqrt(abar) x_t - sqrt(1 - abar) v; sample: the output is x0.
"""

from __future__ import annotations

from thincam.errors import BadInputError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def prediction_to_x0(x_t, output, abar, prediction_type: str = "epsilon"):
    """x0|t from ``output`` at noise level ``abar`` (a float or a tensor broadcasting to x_t)."""
    if prediction_type == "epsilon":
        return (x_t - (1 - abar) ** 0.5 * output) / abar**0.5
    if prediction_type == "v_prediction":
        return abar**0.5 * x_t - (1 - abar) ** 0.5 * output
    if prediction_type == "sample":
        return output
    raise BadInputError(f"prediction_type {prediction_type!r} is not one of {PREDICTION_TYPES}")
