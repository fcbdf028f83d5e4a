"""A perceptual training term that needs no downloaded weights.

LPIPS needs pretrained AlexNet weights. Without them a restorer trained on L2 alone learns the
posterior mean, which is blurred: DMDiff's tunable decoder then has nothing to trade (its positive
path is already the PSNR optimum, and alpha > 1 only extrapolates towards more of the same), and
NSDD's student has no term asking for the teacher's detail. ``WeightFreePerceptualLoss`` is the
offline stand-in, for DMDiff (and NSDD) to add to L2 when LPIPS weights are absent. It compares
structure rather than values, and a blurred estimate costs more than its L2 error says:

- GMSD (Xue et al. 2014, pyiqa's differentiable implementation, fixed Prewitt filters): the
  spread of the gradient-magnitude similarity map, a full-reference quality index that correlates
  with human scores about as well as SSIM at a fraction of the cost;
- a multi-scale gradient-magnitude L1: the Sobel gradient magnitudes of prediction and target
  compared pixel by pixel on a dyadic pyramid, so missing edges (blur) cost at every scale.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

WEIGHT_FREE_NAME = "weight_free(gmsd + gradient)"
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def gradient_magnitude(images: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude of [B,C,H,W] (replicate border), in intensity per pixel:
    the Sobel kernels are divided by 8, so a ramp of slope 1 reads 1. ``eps`` keeps sqrt
    differentiable where the gradient is 0."""
    channels = images.shape[1]
    kernel_x = _SOBEL_X.to(images)
    kernels = torch.stack([kernel_x, kernel_x.T])[:, None].repeat(channels, 1, 1, 1)  # [2C,1,3,3]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    gradients = F.conv2d(padded, kernels, groups=channels).unflatten(1, (channels, 2))
    return torch.sqrt((gradients**2).sum(dim=2) + eps)


def multiscale_gradient_loss(prediction: torch.Tensor, target: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean over ``scales`` dyadic levels of the L1 distance between gradient magnitudes."""
    total = prediction.new_zeros(())
    for level in range(scales):
        if level:
            prediction, target = F.avg_pool2d(prediction, 2), F.avg_pool2d(target, 2)
        total = total + (gradient_magnitude(prediction) - gradient_magnitude(target)).abs().mean()
    return total / scales


class WeightFreePerceptualLoss(torch.nn.Module):
    """``gmsd_weight * GMSD + gradient_weight * multi-scale gradient L1`` of RGB images in [0, 1].

    Zero for identical images, differentiable everywhere, batch mean. The GMSD term pools over
    each image's luminance at half resolution; ``scales`` must leave the coarsest level at least
    3 px wide.
    """

    def __init__(self, gmsd_weight: float = 1.0, gradient_weight: float = 1.0, scales: int = 3):
        super().__init__()
        import pyiqa

        self.gmsd = pyiqa.create_metric("gmsd", as_loss=True, device="cpu")
        self.gmsd_weight, self.gradient_weight, self.scales = gmsd_weight, gradient_weight, scales

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape or prediction.ndim != 4 or prediction.shape[1] != 3:
            raise ValueError(f"expected two [B,3,H,W] images, got {tuple(prediction.shape)} and {tuple(target.shape)}")
        smallest = min(prediction.shape[-2:]) >> (self.scales - 1)
        if smallest < 3:
            raise ValueError(f"{tuple(prediction.shape[-2:])} images are too small for {self.scales} scales")
        gmsd = self.gmsd(prediction, target)
        gradient = multiscale_gradient_loss(prediction, target, self.scales)
        return self.gmsd_weight * gmsd + self.gradient_weight * gradient


@dataclass(frozen=True)
class PerceptualTerm:
    """The term a trainer adds to L2: ``weight * fn(prediction, target)``, images in [0, 1]."""

    name: str
    weight: float
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def describe(self) -> str:
        """The loss as logged and recorded, e.g. ``l2 + 0.1 * weight_free(gmsd + gradient)``."""
        return f"l2 + {self.weight} * {self.name}"


def training_term(
    lpips_weights_dir: str | os.PathLike | None,
    lpips_weight: float,
    weight_free_weight: float,
    device: str = "cpu",
) -> PerceptualTerm | None:
    """LPIPS(alex) when its weights are configured and weighted; else the weight-free term when
    weighted; else None (L2 alone). One rule for DMDiff, its UNet baseline and NSDD, so they
    train with the same loss on the same inputs."""
    if lpips_weights_dir is not None and float(lpips_weight) > 0:
        from thincam.models.lpips import load_lpips

        lpips = load_lpips(lpips_weights_dir, device=device)
        return PerceptualTerm("lpips(alex)", float(lpips_weight), lambda p, t: lpips(p, t, normalize=True).mean())
    if float(weight_free_weight) > 0:
        return PerceptualTerm(WEIGHT_FREE_NAME, float(weight_free_weight), WeightFreePerceptualLoss().to(device))
    return None
