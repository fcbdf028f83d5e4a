"""Exceptions that name the offending file or key, so a failed job says what to fix."""


class ThincamError(Exception):
    """Base class for thincam errors."""


class BadInputError(ThincamError, ValueError):
    """An input file or array is unusable (NaN, wrong size, wrong bit depth, unknown format)."""


class CorruptFileError(ThincamError, OSError):
    """An HDF5 output failed checksum or contract validation."""


class MissingWeightsError(ThincamError, FileNotFoundError):
    """Pretrained weights are needed but are not on local disk."""
