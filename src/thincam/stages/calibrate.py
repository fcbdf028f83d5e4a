"""The ``calibrate_psf`` rule: a configured camera to results/psf/{camera}.h5 (contract "psf")."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from thincam.data.h5io import atomic_write_h5
from thincam.optics.calibrate import camera_psf
from thincam.optics.condition import psf_spectrum_spread

log = logging.getLogger(__name__)


def calibrate_psf(camera: Mapping[str, Any], out_path: str | os.PathLike) -> None:
    """Calibrate or simulate the PSF of ``camera`` and write it atomically to ``out_path``
    (results/psf/{camera}.h5, so its stem is the camera's name in config keys)."""
    key = f"cameras.{Path(out_path).stem}"
    datasets, attrs = camera_psf(camera, where=f"camera for {out_path}", key=key)
    attrs["spectrum"] = psf_spectrum_spread(datasets["psf"])
    log.info("%s: |H| spread %s", out_path, json.dumps(attrs["spectrum"]))
    if "n_saturated" in attrs:  # a captured PSF: say what the frame cost, a warning if clipped
        (log.warning if attrs["n_saturated"] else log.info)(
            "%s: %d pixel values of %s at full scale (limit: %s.max_saturated); the crop keeps "
            "%.1f%% of the PSF's energy",
            out_path, attrs["n_saturated"], attrs["source"], key, 100 * attrs["energy_kept"],
        )
    atomic_write_h5(out_path, datasets, attrs, contract="psf")
