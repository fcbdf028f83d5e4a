"""The singular value decomposition of the circular lensless operator, as DeepInverse's
``DecomposablePhysics``: what DDRM (and any deepinv solver that needs ``U``, ``V`` and ``mask``)
runs on.

The circular convolution is diagonal in Fourier, ``A = F^-1 diag(H) F`` with ``H`` complex. A
singular value decomposition needs real, non-negative singular values, so the phase of
``H = |H| e^{i phi}`` goes into U:

    V^T x = F x                (unitary real FFT: rfft2, norm "ortho", viewed as real pairs)
    s     = |H|                (the same value on the real and the imaginary part)
    U z   = F^-1 (e^{i phi} z)

so ``U diag(s) V^T = F^-1 diag(|H| e^{i phi}) F = A`` and ``V diag(s) U^T = A^T``. This is the
layout of deepinv's own ``BlurFFT`` (half spectrum, ``view_as_real``), whose DDRM noise scaling
(a real part and an imaginary part of variance 1/2 each) assumes it. Only the circular boundary
has it: the cropped (linear) convolution and the metalens product convolution are not diagonal
in any cheap basis.
"""

from __future__ import annotations

import torch
from deepinv.physics import DecomposablePhysics, GaussianNoise


def has_fourier_svd(physics) -> bool:
    """True for the thincam operators that are Fourier multipliers (circular lensless)."""
    return getattr(physics, "KIND", None) == "lensless" and getattr(physics, "boundary", None) == "circular"


def operator_description(physics) -> str:
    """How an error names an operator: its kind and boundary (e.g. "lensless operator (linear boundary)")."""
    kind = getattr(physics, "KIND", type(physics).__name__)
    boundary = getattr(physics, "boundary", None)
    return f"{kind} operator" + (f" ({boundary} boundary)" if boundary else "")


class FourierSVD(DecomposablePhysics):
    """``A = U diag(|H|) V^T`` of a circular convolution with transfer function ``H`` [C,H,W//2+1].

    ``noise_sigma`` is the measurement noise std on y's scale; deepinv solvers read it from
    ``noise_model.sigma`` (DDRM splits frequencies into measured and unmeasured with it).
    """

    def __init__(self, transfer: torch.Tensor, image_shape: tuple[int, int], noise_sigma: float = 0.0):
        magnitude = transfer.abs()
        phase = torch.where(magnitude > 0, transfer / magnitude.clamp_min(1e-30), torch.ones_like(transfer))
        super().__init__(
            mask=torch.stack([magnitude, magnitude], dim=-1).unsqueeze(0),
            noise_model=GaussianNoise(sigma=float(noise_sigma)),
            device=transfer.device,
        )
        self.image_shape = tuple(image_shape)
        self.register_buffer("phase", phase)

    @classmethod
    def of(cls, physics, noise_sigma: float = 0.0) -> FourierSVD:
        """The decomposition of a circular ``LenslessConvolution`` (the same ``H`` buffer)."""
        if not has_fourier_svd(physics):
            raise ValueError(
                f"the {operator_description(physics)} has no singular value decomposition: "
                "only the circular lensless convolution is diagonal in Fourier"
            )
        return cls(physics.H, physics.scene_shape, noise_sigma)

    def V_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(torch.fft.rfft2(x, norm="ortho"))

    def V(self, z: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.view_as_complex(z.contiguous()), s=self.image_shape, norm="ortho")

    def U(self, z: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(torch.view_as_complex(z.contiguous()) * self.phase, s=self.image_shape, norm="ortho")

    def U_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(torch.fft.rfft2(y, norm="ortho") * self.phase.conj())
