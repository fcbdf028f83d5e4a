"""ADM / guided-diffusion priors (Dhariwal & Nichol 2021; the DPS/DDNM FFHQ and ImageNet models).

The community's checkpoints (``ffhq_10m.pt``, ``256x256_diffusion_uncond.pt``) are bare state dicts
of guided-diffusion's ``UNetModel``: no config travels with them, so the architecture is named in
the thincam config and built by DeepInverse's ``DiffUNet`` (``large_model`` picks the variant).
:class:`ADMUNet` makes it answer like a diffusers ``UNet2DModel`` (``unet(x, t).sample`` is epsilon,
``unet.config``), so DDNM+, DPS and the NSDD student take either prior unchanged.

These nets learn their variance: 6 output channels, the first 3 are epsilon (the rest are unused
by the DDIM-type samplers here). Their noise schedule is guided-diffusion's linear betas
1e-4..0.02 over 1000 steps, given as a diffusers ``DDPMScheduler``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import ModelMixin
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.unets.unet_2d import UNet2DOutput

from thincam.errors import BadInputError, MissingWeightsError

# Published architectures -> DiffUNet's switch. ffhq_256: 128 channels, 1 res block per level,
# attention at 16 px (DPS's ffhq_10m.pt); imagenet_256_uncond: 256 channels, 2 blocks, attention at
# 32/16/8 px (guided-diffusion's 256x256_diffusion_uncond.pt).
ARCHITECTURES = {"ffhq_256": {"large_model": False}, "imagenet_256_uncond": {"large_model": True}}
# DiffUNet registers these after loading; the published files do not hold them.
DERIVED_BUFFERS = ("sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def check_architecture(architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise BadInputError(f"ADM architecture {architecture!r} is not one of {sorted(ARCHITECTURES)}")


class ADMUNet(ModelMixin, ConfigMixin):
    """DiffUNet behind the ``UNet2DModel`` calling convention: ``forward(x, t).sample`` = epsilon."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, architecture: str = "ffhq_256", in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        from deepinv.models import DiffUNet

        check_architecture(architecture)
        # pretrained=None: random weights, never a download; loading is ours (load_adm_checkpoint).
        self.net = DiffUNet(
            in_channels=in_channels, out_channels=out_channels, pretrained=None, **ARCHITECTURES[architecture]
        )

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, return_dict: bool = True):
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        out = self.net(sample, timestep, type_t="timestep")
        eps = out[:, : self.config.out_channels]
        return UNet2DOutput(sample=eps) if return_dict else (eps,)


def adm_scheduler():
    """guided-diffusion's training schedule: linear betas 1e-4..0.02, 1000 steps, epsilon."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        prediction_type="epsilon",
        clip_sample=False,
    )


def published_state_dict(unet: ADMUNet) -> dict[str, torch.Tensor]:
    """The state dict in the layout of the published files (DiffUNet's own keys, no derived buffers)."""
    return {k: v for k, v in unet.net.state_dict().items() if k not in DERIVED_BUFFERS}


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A published ADM checkpoint file as a state dict (tensors only: ``weights_only`` loading)."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"ADM checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling failure means the same: not a state dict file
        raise BadInputError(f"ADM checkpoint {path}: not a readable torch state dict ({type(err).__name__}: {err})") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"ADM checkpoint {path}: expected a dict of tensors (a UNetModel state dict)")
    return state


def check_state_dict(state: dict[str, torch.Tensor], unet: ADMUNet, path) -> None:
    """Raise naming the file and the first key that is missing, unexpected or of another shape."""
    expected = published_state_dict(unet)
    architecture = unet.config.architecture
    for key, tensor in expected.items():
        if key not in state:
            raise MissingWeightsError(
                f"ADM checkpoint {path}: key {key!r} of architecture {architecture!r} is missing "
                f"({len(state)} of {len(expected)} keys present: a partial file, or another architecture)"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise BadInputError(
                f"ADM checkpoint {path}: key {key!r} has shape {tuple(state[key].shape)}, architecture "
                f"{architecture!r} needs {tuple(tensor.shape)} (another architecture?)"
            )
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise BadInputError(
            f"ADM checkpoint {path}: unexpected key {unexpected[0]!r} for architecture {architecture!r}"
        )


def load_adm_checkpoint(path: str | os.PathLike, architecture: str, device: str = "cpu") -> ADMUNet:
    """An eval-mode, frozen :class:`ADMUNet` with the weights of a local checkpoint file."""
    check_architecture(architecture)
    state = read_checkpoint(path)
    unet = ADMUNet(architecture=architecture)
    check_state_dict(state, unet, path)
    unet.net.load_state_dict(state, strict=False)  # strict except the derived buffers, checked above
    return unet.eval().requires_grad_(False).to(device)
