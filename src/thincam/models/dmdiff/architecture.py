"""DMDiff base model: VAE, one-step UNet, CLIP text encoder, tokenizer and scheduler.

Paper scale loads a local SD-Turbo directory; the embedded default builds the same diffusers and
transformers classes at a tiny size (pretrained by :mod:`thincam.models.dmdiff.pretrain`). Both
are the same diffusers ``save_pretrained`` layout, read by :func:`load_dmdiff_base`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thincam.errors import BadInputError, MissingWeightsError
from thincam.models.diffusion import prediction_to_x0
from thincam.models.dmdiff.tokenizer import PROBE_PROMPTS, build_tiny_tokenizer, check_tokenizer

SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
TINY_BASE_DEFAULTS: dict[str, Any] = {
    # Two levels, latents at 1/2 of the side: a 1/4 latent capped the VAE's reconstruction at 32 px
    # below the quality of the captures it must encode.
    "vae_channels": [16, 32],
    "latent_channels": 4,
    "unet_channels": [32, 64],
    "text_dim": 32,
    "text_layers": 2,
    "max_prompt_tokens": 16,
    "prompts": {
        "positive": "a sharp clean high quality photo",
        "neutral": "a smooth soft low pass filtered photo",
        "negative": "a blurry noisy metalens capture",
    },
}


@dataclass
class BaseComponents:
    """The frozen parts DMDiff adapts: the same classes at tiny and SD-Turbo scale."""

    vae: Any  # diffusers AutoencoderKL
    unet: Any  # diffusers UNet2DConditionModel
    text_encoder: Any  # transformers CLIPTextModel
    tokenizer: Any  # transformers CLIPTokenizer
    scheduler: Any  # diffusers DDPMScheduler (only alphas_cumprod and prediction_type are used)

    def to(self, device) -> "BaseComponents":
        for module in (self.vae, self.unet, self.text_encoder):
            module.to(device)
        return self

    @property
    def downsampling(self) -> int:
        """Image side / smallest UNet feature side: inputs must be multiples of it."""
        vae = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return vae * 2 ** (len(self.unet.config.block_out_channels) - 1)


def build_tiny_base(
    cfg: dict, image_size: int = 32, tokenizer_dir: str | os.PathLike | None = None
):
    """Randomly initialised tiny components with the SD-Turbo classes and a one-step scheduler.

    The tokenizer files are written to ``tokenizer_dir`` (a temporary folder when None) from the
    prompt words plus the tokenizer's base words.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = {**TINY_BASE_DEFAULTS, **cfg}
    vae_ch, unet_ch = list(cfg["vae_channels"]), list(cfg["unet_channels"])
    factor = 2 ** (len(vae_ch) - 1)
    if image_size % (factor * 2 ** (len(unet_ch) - 1)):
        raise BadInputError(
            f"image size {image_size} is not a multiple of the base's downsampling "
            f"{factor * 2 ** (len(unet_ch) - 1)}"
        )
    tokenizer = build_tiny_tokenizer(cfg["prompts"], cfg["max_prompt_tokens"], tokenizer_dir)

    groups = min(8, vae_ch[0], unet_ch[0])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_ch),
        up_block_types=("UpDecoderBlock2D",) * len(vae_ch),
        block_out_channels=tuple(vae_ch),
        layers_per_block=1,
        latent_channels=int(cfg["latent_channels"]),
        norm_num_groups=groups,
        sample_size=image_size,
    )
    text_dim = int(cfg["text_dim"])
    unet = UNet2DConditionModel(
        sample_size=image_size // factor,
        in_channels=int(cfg["latent_channels"]),
        out_channels=int(cfg["latent_channels"]),
        block_out_channels=tuple(unet_ch),
        layers_per_block=1,
        # Cross-attention at the coarsest level only (and the mid block): far cheaper than
        # attention at the finest level, and the prompt still reaches every path.
        down_block_types=("DownBlock2D",) * (len(unet_ch) - 1) + ("CrossAttnDownBlock2D",),
        up_block_types=("CrossAttnUpBlock2D",) + ("UpBlock2D",) * (len(unet_ch) - 1),
        cross_attention_dim=text_dim,
        attention_head_dim=8,
        norm_num_groups=groups,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_dim,
            intermediate_size=2 * text_dim,
            projection_dim=text_dim,
            num_hidden_layers=int(cfg["text_layers"]),
            num_attention_heads=2,
            max_position_embeddings=int(cfg["max_prompt_tokens"]),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    # SD-Turbo's betas; the one step is taken at the last timestep, where abar = 0.0047. There an
    # epsilon prediction reaches x0 amplified by 1/sqrt(abar) = 14.6, v-prediction unamplified,
    # so the tiny UNet learns its passthrough far better with v.
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        clip_sample=False,
    )
    for module in (vae, unet, text_encoder):
        module.eval().requires_grad_(False)
    return BaseComponents(vae, unet, text_encoder, tokenizer, scheduler)


def one_step_x0(scheduler, z_t, model_output, timestep: int):
    """The scheduler's clean-latent prediction at ``timestep`` (SD-Turbo's single step)."""
    abar = scheduler.alphas_cumprod[timestep].to(z_t.device, z_t.dtype)
    return prediction_to_x0(z_t, model_output, abar, scheduler.config.prediction_type)


def prompt_embeddings(base: BaseComponents, prompts: list[str]):
    """Frozen text-encoder states [P, L, D] for ``prompts``, padded to the tokenizer's length."""
    import torch

    tokens = base.tokenizer(
        list(prompts),
        padding="max_length",
        max_length=base.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    device = next(base.text_encoder.parameters()).device
    with torch.no_grad():
        return base.text_encoder(tokens.input_ids.to(device)).last_hidden_state


def check_images(images: np.ndarray, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise BadInputError(f"{what}: expected [N,3,H,W] images, got shape {images.shape}")
    if not np.all(np.isfinite(images)):
        raise BadInputError(f"{what}: contains NaN or Inf")
    if images.min() < 0 or images.max() > 1:
        raise BadInputError(f"{what}: values outside [0, 1] ({images.min()}, {images.max()})")
    return images.astype(np.float32, copy=False)


def gaussian_lowpass(images, sigma: float):
    """Separable Gaussian blur (reflect padding): the neutral path's target, and the meaning of
    the neutral prompt in base pretraining."""
    import torch
    import torch.nn.functional as F

    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def count_parameters(base: BaseComponents) -> dict[str, int]:
    return {
        "vae_encoder": sum(p.numel() for p in base.vae.encoder.parameters()),
        "vae": sum(p.numel() for p in base.vae.parameters()),
        "unet": sum(p.numel() for p in base.unet.parameters()),
        "text_encoder": sum(p.numel() for p in base.text_encoder.parameters()),
    }


def load_dmdiff_base(path: str | os.PathLike, device: str = "cpu") -> BaseComponents:
    """Frozen base components from a local diffusers folder: the tiny pretrained one or SD-Turbo.

    Only local files are read. A missing folder or subfolder is a MissingWeightsError naming it.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(path)
    hint = (
        "run the DMDiff base pretraining rule, or put a local SD-Turbo directory "
        "(stabilityai/sd-turbo with vae/ unet/ text_encoder/ tokenizer/ scheduler/) there"
    )
    if not path.is_dir():
        raise MissingWeightsError(f"DMDiff base model not found at {path}: {hint}")
    missing = [name for name in SUBFOLDERS if not (path / name).is_dir()]
    if missing:
        raise MissingWeightsError(
            f"DMDiff base model at {path} lacks {', '.join(f'{m}/' for m in missing)}: {hint}"
        )
    root = str(path)  # a str name_or_path: peft writes it into its model card as YAML
    try:
        vae = AutoencoderKL.from_pretrained(root, subfolder="vae", local_files_only=True)
        unet = UNet2DConditionModel.from_pretrained(root, subfolder="unet", local_files_only=True)
        text_encoder = CLIPTextModel.from_pretrained(f"{root}/text_encoder", local_files_only=True)
        tokenizer = CLIPTokenizer.from_pretrained(f"{root}/tokenizer", local_files_only=True)
        # SD-Turbo ships an EulerDiscreteScheduler config: same betas, read as DDPM.
        scheduler = DDPMScheduler.from_pretrained(
            root, subfolder="scheduler", local_files_only=True
        )
    except OSError as err:
        raise MissingWeightsError(f"DMDiff base model at {path} is incomplete: {err}") from err
    check_tokenizer(
        tokenizer, PROBE_PROMPTS, text_encoder.config.vocab_size, where=str(path / "tokenizer")
    )
    for module in (vae, unet, text_encoder):
        module.eval().requires_grad_(False)
    return BaseComponents(vae, unet, text_encoder, tokenizer, scheduler).to(device)
