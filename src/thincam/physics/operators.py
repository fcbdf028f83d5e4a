"""Forward models of thin cameras as deepinv ``LinearPhysics``: A, A^T and a range anchor A+.

A+ is chosen by the config's ``pinv`` dict (``PseudoInverse``). Only the truncated-SVD A+ of the
circular operator makes ``P = I - A+A`` an exact orthogonal projector onto the null space; the
Tikhonov A+ (closed form or CG) gives ``P = lam (A^T A + lam I)^-1``, which shrinks rather than
removes measured frequencies. ``projector_error`` and ``null_leakage`` measure the difference.

We subclass deepinv's ``LinearPhysics`` so any deepinv solver runs on a thincam camera, but
implement the convolutions ourselves with real FFTs: deepinv's ``Blur`` pads to the image size
(circular or valid only) and its ``SpaceVaryingBlur`` convolves patch by patch in the spatial
domain, which is far slower for PSFs as large as the sensor. Products in Fourier are summed over
the PSF grid *before* the single inverse FFT, so the metalens forward costs K + 1 FFTs, not 2K.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import scipy.fft
import torch
from deepinv.physics import LinearPhysics

from thincam.errors import BadInputError
from thincam.physics.geometry import centred_start


def _fft_shape(n: int) -> int:
    return scipy.fft.next_fast_len(n, real=True)


@dataclass(frozen=True)
class CropGeometry:
    """Where the sensor window sits inside the full linear convolution (index = scene + psf)."""

    full: tuple[int, int]
    offset: tuple[int, int]
    sensor: tuple[int, int]


def _crop_geometry(scene, psf, sensor) -> CropGeometry:
    """Put the scene centre, shifted by the PSF centre, at the sensor centre."""
    full, offset = [], []
    for n_scene, n_psf, n_sensor in zip(scene, psf, sensor):
        # the full convolution's centre for this placement is the scene centre shifted by the PSF's
        start = centred_start(n_scene, n_sensor, centre=n_scene // 2 + n_psf // 2)
        if start < 0 or start + n_sensor > n_scene + n_psf - 1:
            raise ValueError(
                f"sensor {tuple(sensor)} does not fit the convolution of scene {tuple(scene)} "
                f"with PSF {tuple(psf)}"
            )
        full.append(_fft_shape(n_scene + n_psf - 1))
        offset.append(start)
    return CropGeometry(tuple(full), tuple(offset), tuple(sensor))


def conjugate_gradient(normal_op, rhs: torch.Tensor, n_iter: int, tol: float = 1e-7):
    """Batched CG on a symmetric positive definite operator, from zero, fixed iteration count.

    A fixed count (not a data-dependent stop per batch) keeps results identical whatever the
    batch composition, which the sharded teacher targets rely on.
    """
    dims = tuple(range(1, rhs.ndim))
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rs = (r * r).sum(dims, keepdim=True)
    rhs_norm = rs.clamp_min(1e-30)
    for _ in range(n_iter):
        ap = normal_op(p)
        alpha = rs / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = (r * r).sum(dims, keepdim=True)
        if bool((rs_new / rhs_norm).max() < tol**2):
            break
        p = r + (rs_new / rs.clamp_min(1e-30)) * p
        rs = rs_new
    return x


@dataclass(frozen=True)
class PseudoInverse:
    """How an operator forms A+, from the config's ``pinv`` dict.

    ``{kind: tikhonov, lam, iters}``: ``A+ y = argmin ||A x - y||^2 + lam ||x||^2``, closed form
    where A is diagonal in Fourier, else ``iters`` CG steps from zero on the normal equations
    (lam 0 is least squares; CG from zero stays in the row space, so it tends to the minimum-norm
    solution, but after ``iters`` steps it is a Krylov approximation).
    ``{kind: tsvd, threshold}``: ``A+ = V diag(1/s if s > threshold * s_max else 0) U^T``, exact
    only where the SVD is known in closed form: the circular convolution (s = |H|, s_max per
    channel, which is |H(0)| = 1 for a non-negative unit-sum PSF).
    """

    kind: str
    lam: float = 0.0
    threshold: float = 0.0
    iters: int = 50

    KEYS = {"tikhonov": ("kind", "lam", "iters"), "tsvd": ("kind", "threshold")}

    @classmethod
    def from_config(cls, spec: Mapping[str, Any] | PseudoInverse) -> PseudoInverse:
        if isinstance(spec, PseudoInverse):
            return spec
        kind = spec.get("kind")
        if kind not in cls.KEYS:
            raise ValueError(f"pinv.kind must be one of {sorted(cls.KEYS)}, got {kind!r}")
        unknown = set(spec) - set(cls.KEYS[kind])
        if unknown:
            raise ValueError(f"pinv of kind {kind!r} takes {list(cls.KEYS[kind])}, not {sorted(unknown)}")
        if kind == "tikhonov":
            lam, iters = float(spec.get("lam", -1.0)), int(spec.get("iters", 50))
            if lam < 0 or iters < 1:
                raise ValueError(f"pinv tikhonov needs lam >= 0 and iters >= 1, got {dict(spec)}")
            return cls(kind, lam=lam, iters=iters)
        threshold = float(spec.get("threshold", -1.0))
        if not 0 < threshold < 1:
            raise ValueError(f"pinv tsvd needs 0 < threshold < 1 (relative to the largest |H|), got {dict(spec)}")
        return cls(kind, threshold=threshold)

    def as_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.KEYS[self.kind]}


DEFAULT_PINV = PseudoInverse("tikhonov", lam=1e-2, iters=50)


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Checksum of a PSF's float32 values, so a float64 copy of the same PSF has the same identity."""
    values = np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=np.float32)
    return hashlib.sha256(values.tobytes()).hexdigest()


class ThinCamPhysics(LinearPhysics):
    """Common A+ for thincam operators: Tikhonov-regularised least squares by CG.

    ``A_dagger(y) = argmin ||A x - y||^2 + lam ||x||^2`` solved by ``pinv.iters`` CG steps on the
    normal equations. Subclasses that are diagonal in Fourier override it with the closed form.
    """

    def __init__(self, pinv: Mapping[str, Any] | PseudoInverse, **kwargs):
        super().__init__(**kwargs)
        self.pinv = PseudoInverse.from_config(pinv)

    def _require_cg_pinv(self, why: str) -> None:
        if self.pinv.kind != "tikhonov":
            raise ValueError(f"pinv kind {self.pinv.kind!r} needs an operator diagonal in Fourier; {why}: use kind 'tikhonov'")

    def A_dagger(self, y, **kwargs):
        rhs = self.A_adjoint(y)
        lam = self.pinv.lam
        return conjugate_gradient(lambda v: self.A_adjoint(self.A(v)) + lam * v, rhs, self.pinv.iters)

    def null_project(self, r: torch.Tensor) -> torch.Tensor:
        """(I - A+ A) r: the part of r the measurement cannot see."""
        return r - self.A_dagger(self.A(r))

    def identity(self) -> dict[str, Any]:
        """What a model trained on this operator depends on: PSF checksum, geometry, A+ (JSON-native).

        Subclasses set ``KIND``, ``boundary``, ``psf_sha256``, ``psf_shape``, ``scene_shape`` and
        ``sensor_shape``.
        """
        return {
            "kind": self.KIND,
            "psf_sha256": self.psf_sha256,
            "psf_shape": list(self.psf_shape),
            "scene_shape": list(self.scene_shape),
            "sensor_shape": list(self.sensor_shape),
            "boundary": self.boundary,
            "pinv": self.pinv.as_dict(),
        }


def check_same_operator(stored: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
    """Refuse to run a model with an operator other than the one it was trained with."""
    differing = sorted(key for key in set(stored) | set(current) if stored.get(key) != current.get(key))
    if differing:
        raise BadInputError(
            f"{where}: trained with operator {json.dumps(dict(stored), sort_keys=True)} but given "
            f"{json.dumps(dict(current), sort_keys=True)} (they differ in {differing})"
        )


class LenslessConvolution(ThinCamPhysics):
    """y = C (h * P x): zero-pad the scene, linear convolution with the PSF, crop to the sensor.

    ``boundary="circular"`` instead uses a circular convolution on the sensor grid (scene, PSF
    and sensor all the same size). Then A is diagonal in Fourier with singular values |H| (which
    DDNM+'s SVD form uses) and A+ is closed form: Tikhonov ``conj(H) / (|H|^2 + lam)`` or the
    truncated SVD ``conj(H) / |H|^2`` where ``|H| > threshold * max|H|``, else 0. With the linear
    boundary only the Tikhonov A+ (by CG) is available.
    """

    KIND = "lensless"

    def __init__(
        self,
        psf: torch.Tensor,
        scene_shape: tuple[int, int] | None = None,
        sensor_shape: tuple[int, int] | None = None,
        boundary: str = "linear",
        pinv: Mapping[str, Any] | PseudoInverse = DEFAULT_PINV,
        **kwargs,
    ):
        super().__init__(pinv=pinv, **kwargs)
        psf = torch.as_tensor(psf)
        if psf.ndim != 3:
            raise ValueError(f"psf must be [C,H,W], got shape {tuple(psf.shape)}")
        psf_shape = tuple(psf.shape[-2:])
        self.scene_shape = tuple(scene_shape or psf_shape)
        self.sensor_shape = tuple(sensor_shape or psf_shape)
        self.boundary = boundary
        if boundary == "circular":
            if not (self.scene_shape == self.sensor_shape == psf_shape):
                raise ValueError(
                    "circular boundary needs scene, sensor and PSF of one size, got "
                    f"{self.scene_shape}, {self.sensor_shape}, {psf_shape}"
                )
            # Centre the PSF at pixel (0, 0) so a centred PSF does not shift the image.
            kernel = torch.fft.ifftshift(psf, dim=(-2, -1))
            self.register_buffer("H", torch.fft.rfft2(kernel))
            self.register_buffer("pinv_response", self._pinv_response())
            self.geometry = None
        elif boundary == "linear":
            self._require_cg_pinv("the linear boundary is not")
            self.geometry = _crop_geometry(self.scene_shape, psf_shape, self.sensor_shape)
            self.register_buffer("H", torch.fft.rfft2(psf, s=self.geometry.full))
        else:
            raise ValueError(f"boundary must be 'linear' or 'circular', got {boundary!r}")
        self.psf_sha256 = tensor_sha256(psf)
        self.psf_shape = tuple(psf.shape)

    def _pinv_response(self) -> torch.Tensor:
        """A+ of the circular operator as a frequency response on the rfft grid."""
        H = self.H
        power = H.abs() ** 2
        if self.pinv.kind == "tikhonov":
            return H.conj() / (power + self.pinv.lam)
        largest = H.abs().amax(dim=(-2, -1), keepdim=True)
        kept = H.abs() > self.pinv.threshold * largest
        return torch.where(kept, H.conj() / torch.where(kept, power, torch.ones_like(power)), torch.zeros_like(H))


    def _sensor_slices(self):
        (r0, c0), (hs, ws) = self.geometry.offset, self.sensor_shape
        return slice(r0, r0 + hs), slice(c0, c0 + ws)

    def A(self, x, **kwargs):
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(x) * self.H, s=x.shape[-2:])
        full = torch.fft.irfft2(torch.fft.rfft2(x, s=self.geometry.full) * self.H, s=self.geometry.full)
        rows, cols = self._sensor_slices()
        return full[..., rows, cols]

    def A_adjoint(self, y, **kwargs):
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(y) * self.H.conj(), s=y.shape[-2:])
        padded = y.new_zeros(*y.shape[:-2], *self.geometry.full)
        rows, cols = self._sensor_slices()
        padded[..., rows, cols] = y
        full = torch.fft.irfft2(torch.fft.rfft2(padded) * self.H.conj(), s=self.geometry.full)
        return full[..., : self.scene_shape[0], : self.scene_shape[1]]

    def A_dagger(self, y, **kwargs):
        if self.boundary == "circular":
            return torch.fft.irfft2(torch.fft.rfft2(y) * self.pinv_response, s=y.shape[-2:])
        return super().A_dagger(y)

    def singular_values(self) -> torch.Tensor:
        """|H| on the rfft grid: the singular values of the circular operator (SVD form)."""
        if self.boundary != "circular":
            raise ValueError("singular values in Fourier exist only for the circular boundary")
        return self.H.abs()


def partition_of_unity(shape: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear (tent) windows centred on the PSF grid cells: smooth, non-negative, sum to 1."""
    weights = []
    for n, g in zip(shape, grid):
        centres = (np.arange(g) + 0.5) * n / g
        pos = np.arange(n) + 0.5
        w = np.zeros((g, n))
        if g == 1:
            w[0] = 1.0
        else:
            idx = np.clip(np.searchsorted(centres, pos) - 1, 0, g - 2)
            t = np.clip((pos - centres[idx]) / (centres[idx + 1] - centres[idx]), 0.0, 1.0)
            w[idx, np.arange(n)] = 1.0 - t
            w[idx + 1, np.arange(n)] += t
        weights.append(w)
    wy, wx = weights
    windows = np.einsum("ai,bj->abij", wy, wx).reshape(grid[0] * grid[1], *shape)
    return torch.from_numpy(windows.astype(np.float32))


class ProductConvolution(ThinCamPhysics):
    """Metalens spatially varying blur: y = sum_k h_k * (w_k . x), 'same' size, zero boundary.

    h_k is the PSF of grid cell k ([gy,gx,C,h,w]) and w_k its tent window; A+ is Tikhonov least
    squares by CG (the operator is not diagonal in any cheap basis).
    """

    KIND = "metalens"
    boundary = "zero"

    def __init__(
        self,
        psf_grid: torch.Tensor,
        image_shape: tuple[int, int],
        pinv: Mapping[str, Any] | PseudoInverse = DEFAULT_PINV,
        **kwargs,
    ):
        super().__init__(pinv=pinv, **kwargs)
        self._require_cg_pinv("the metalens product-convolution is not")
        psf_grid = torch.as_tensor(psf_grid)
        if psf_grid.ndim != 5:
            raise ValueError(f"psf_grid must be [gy,gx,C,h,w], got shape {tuple(psf_grid.shape)}")
        gy, gx, channels, h, w = psf_grid.shape
        self.image_shape = tuple(image_shape)
        self.scene_shape = self.sensor_shape = self.image_shape
        self.geometry = _crop_geometry(self.image_shape, (h, w), self.image_shape)
        kernels = psf_grid.reshape(gy * gx, channels, h, w)
        self.register_buffer("H", torch.fft.rfft2(kernels, s=self.geometry.full))
        self.register_buffer("windows", partition_of_unity(self.image_shape, (gy, gx))[:, None])
        self.psf_sha256 = tensor_sha256(psf_grid)
        self.psf_shape = tuple(psf_grid.shape)

    def _crop(self, full):
        (r0, c0), (hs, ws) = self.geometry.offset, self.sensor_shape
        return full[..., r0 : r0 + hs, c0 : c0 + ws]

    def A(self, x, **kwargs):
        full = self.geometry.full
        spectra = torch.fft.rfft2(x.unsqueeze(1) * self.windows, s=full)  # [B,K,C,...]
        summed = (spectra * self.H).sum(dim=1)
        return self._crop(torch.fft.irfft2(summed, s=full))

    def A_adjoint(self, y, **kwargs):
        full = self.geometry.full
        (r0, c0), (hs, ws) = self.geometry.offset, self.sensor_shape
        padded = y.new_zeros(*y.shape[:-2], *full)
        padded[..., r0 : r0 + hs, c0 : c0 + ws] = y
        spectrum = torch.fft.rfft2(padded).unsqueeze(1)
        per_psf = torch.fft.irfft2(spectrum * self.H.conj(), s=full)
        per_psf = per_psf[..., : self.image_shape[0], : self.image_shape[1]]
        return (per_psf * self.windows).sum(dim=1)


def range_null_residual(physics: ThinCamPhysics, x: torch.Tensor) -> float:
    """||A A+ A x - A x|| / ||A x||: how well A+ inverts A on its range."""
    y = physics.A(x)
    return float(torch.linalg.vector_norm(physics.A(physics.A_dagger(y)) - y) / torch.linalg.vector_norm(y))


def projector_error(physics: ThinCamPhysics, r: torch.Tensor) -> float:
    """||P P r - P r|| / ||r|| with P = I - A+A: 0 for an exact projector (truncated SVD A+)."""
    once = physics.null_project(r)
    twice = physics.null_project(once)
    return float(torch.linalg.vector_norm(twice - once) / torch.linalg.vector_norm(r))


def null_leakage(physics: ThinCamPhysics, r: torch.Tensor) -> float:
    """||A P r|| / ||A r||: how much of what the measurement sees survives the null projection."""
    return float(torch.linalg.vector_norm(physics.A(physics.null_project(r))) / torch.linalg.vector_norm(physics.A(r)))
