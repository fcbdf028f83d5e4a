"""From a configured camera to its PSF arrays: calibrated from a capture or simulated.

Whatever the camera (a captured point-source frame or a simulation), downstream sees the same
arrays: ``psf`` float32 [C,H,W] with unit sum per channel, plus ``psf_grid`` and ``fwhm`` for a
metalens, and attributes saying where they came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from thincam.errors import BadInputError
from thincam.optics.capture import MAX_SATURATED_SHARE, calibrate_capture_psf, check_capture_psf
from thincam.optics.masks import phase_contour_psf, random_diffuser_psf, sparse_dots_psf
from thincam.optics.metalens import fwhm_map, metalens_psf_grid

COMMON_KEYS = ("kind", "channels", "size", "pixel_pitch_um", "seed")
KIND_KEYS = {
    "capture": (
        "path",
        "dark_path",
        "bit_depth",
        "background",
        "downsample",
        "hot_pixel_sigma",
        "center",
    ),
    "sparse_dots": ("n_dots", "blur_px"),
    "phase_contour": ("wavelengths_nm", "distance_mm"),
    "random_diffuser": ("wavelengths_nm", "distance_mm", "correlation_px", "phase_strength"),
    "metalens": (
        "wavelengths_nm",
        "design_wavelength_nm",
        "focal_mm",
        "aperture_um",
        "grid",
        "psf_size",
        "max_field_deg",
    ),
}


def _match_channels(psf: np.ndarray, channels: int, where: str) -> np.ndarray:
    """Fit [...,C,H,W] to the configured channel count.

    Gray -> colour replicates (a monochrome PSF is the same in every channel); several wavelengths
    -> one channel averages them (a monochrome sensor integrates all of them).
    """
    have = psf.shape[-3]
    if have == channels:
        return psf
    if have == 1:
        return np.repeat(psf, channels, axis=-3)
    if channels == 1:
        return psf.mean(axis=-3, keepdims=True)
    raise BadInputError(f"{where}: PSF has {have} channels but the camera asks for {channels}")


def _simulate(camera: Mapping[str, Any], size: tuple[int, int], where: str) -> dict[str, Any]:
    kind = camera["kind"]
    pitch = float(camera["pixel_pitch_um"])
    seed = int(camera["seed"])
    if kind == "sparse_dots":
        psf = sparse_dots_psf(
            size,
            n_dots=int(camera["n_dots"]),
            blur_px=float(camera["blur_px"]),
            seed=seed,
            channels=int(camera["channels"]),
        )
        return {"psf": psf}
    if kind == "phase_contour":
        psf = phase_contour_psf(
            size,
            wavelengths_nm=camera["wavelengths_nm"],
            pixel_pitch_um=pitch,
            distance_mm=float(camera["distance_mm"]),
            seed=seed,
        )
        return {"psf": _match_channels(psf, int(camera["channels"]), where)}
    if kind == "random_diffuser":
        psf = random_diffuser_psf(
            size,
            wavelengths_nm=camera["wavelengths_nm"],
            pixel_pitch_um=pitch,
            distance_mm=float(camera["distance_mm"]),
            seed=seed,
            correlation_px=float(camera["correlation_px"]),
            phase_strength=float(camera["phase_strength"]),
        )
        return {"psf": _match_channels(psf, int(camera["channels"]), where)}
    psf_size = tuple(int(v) for v in camera["psf_size"])
    if psf_size != size:
        raise BadInputError(
            f"{where}: metalens 'size' {list(size)} must equal 'psf_size' {list(psf_size)} "
            "(the written psf is the centre patch of the grid)"
        )
    grid = tuple(int(v) for v in camera["grid"])
    psf_grid = metalens_psf_grid(
        psf_size=psf_size,
        grid=grid,
        wavelengths_nm=camera["wavelengths_nm"],
        design_wavelength_nm=float(camera["design_wavelength_nm"]),
        focal_mm=float(camera["focal_mm"]),
        aperture_um=float(camera["aperture_um"]),
        pixel_pitch_um=pitch,
        max_field_deg=float(camera["max_field_deg"]),
    )
    psf_grid = _match_channels(psf_grid, int(camera["channels"]), where)
    # odd grids (the default 3x3) have an on-axis centre cell; even ones take the one below/right
    return {
        "psf": psf_grid[grid[0] // 2, grid[1] // 2],
        "psf_grid": psf_grid,
        "fwhm": fwhm_map(psf_grid),
    }


def _capture_args(camera: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The arguments a capture camera's config entry gives both the calibration and its check."""
    return {
        "dark_path": camera["dark_path"],
        "bit_depth": camera["bit_depth"],
        "background": camera["background"],
        "downsample": camera["downsample"],
        "size": tuple(int(v) for v in camera["size"]),
        "center": bool(camera["center"]),
        "max_saturated": float(camera.get("max_saturated", MAX_SATURATED_SHARE)),
        "key": key,
        "fmt": camera.get("format"),
        "window": camera.get("window"),
    }


def check_capture_camera(camera: Mapping[str, Any], key: str) -> None:
    """Refuse, before any job, a capture camera whose PSF frame is saturated or does not fit
    ``size`` at its ``downsample`` (``key``: cameras.<name>)."""
    check_capture_psf(camera["path"], **_capture_args(camera, key))


def camera_psf(
    camera: Mapping[str, Any], where: str, key: str = "camera"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(datasets, attrs) of the PSF of ``camera`` (a config entry); ``where`` names it in errors,
    ``key`` (cameras.<name>) in errors about a config value."""
    kind = camera.get("kind")
    if kind not in KIND_KEYS:
        raise BadInputError(f"{where}: unknown kind {kind!r} (expected one of {list(KIND_KEYS)})")
    missing = [k for k in COMMON_KEYS + KIND_KEYS[kind] if k not in camera]
    if missing:
        raise BadInputError(f"{where}: missing key(s) {missing} for kind {kind!r}")
    size = tuple(int(v) for v in camera["size"])
    channels = int(camera["channels"])
    if len(size) != 2 or min(size) < 1 or channels not in (1, 3):
        raise BadInputError(f"{where}: bad size {camera['size']!r} or channels {channels!r}")

    attrs: dict[str, Any] = {
        "kind": kind,
        "pixel_pitch_um": float(camera["pixel_pitch_um"]),
        "provenance": json.dumps(dict(camera), sort_keys=True, default=str),
    }
    if kind == "capture":
        source = str(camera["path"])
        where = f"{where} (capture {source})"
        psf, info = calibrate_capture_psf(
            source, hot_pixel_sigma=float(camera["hot_pixel_sigma"]), **_capture_args(camera, key)
        )
        datasets = {"psf": _match_channels(psf, channels, where)}
        background = info["background"]
        attrs.update(
            source=source,
            downsample=int(info["downsample"]),
            background=json.dumps(background) if background != "none" else "none",
            n_hot_pixels=int(info["n_hot_pixels"]),
            n_saturated=int(info["n_saturated"]),
            energy_kept=float(info["energy_kept"]),
        )
    else:
        try:
            datasets = _simulate(camera, size, where)
        except BadInputError:
            raise
        except ValueError as err:  # a simulator refusing its optical parameters
            raise BadInputError(f"{where}: {err}") from err
        attrs.update(source="simulated", downsample=1, background="none")

    psf = datasets["psf"]
    sums = psf.sum(axis=(-2, -1))
    if psf.shape != (channels, *size):
        raise BadInputError(f"{where}: PSF shape {psf.shape} is not {(channels, *size)}")
    if not np.isfinite(psf).all() or not (sums > 0).all():
        raise BadInputError(f"{where}: PSF is not finite or has an empty channel (sums {sums})")
    datasets = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in datasets.items()}
    return datasets, attrs
