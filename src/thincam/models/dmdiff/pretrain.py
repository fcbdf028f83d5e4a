"""Pretraining of the tiny DMDiff base on clean images, in two phases: VAE, then UNet.

The UNet learns a one-step x0 prediction at t=999 that maps a noisy latent to the latent of what
its prompt describes (:func:`described_views`), so the base starts near an autoencoder passthrough
whose prompts mean something, with a latent denoising prior (what SD-Turbo's prior provides at
paper scale), and DMDiff's paths start apart. Trained on one meaning for every prompt, the base
ignored its prompts and so did DMDiff. DMDiff never feeds pure noise, so a noise-to-image
generator, which minutes of CPU could not train, is not needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.errors import BadInputError
from thincam.models.dmdiff.architecture import (
    TINY_BASE_DEFAULTS,
    BaseComponents,
    build_tiny_base,
    check_images,
    count_parameters,
    gaussian_lowpass,
    one_step_x0,
    prompt_embeddings,
)

log = logging.getLogger(__name__)

PRETRAIN_KEYS = (
    "vae_channels",
    "latent_channels",
    "unet_channels",
    "text_dim",
    "text_layers",
    "max_prompt_tokens",
    "prompts",
    "vae_steps",
    "unet_steps",
    "batch_size",
    "lr",
    "kl_weight",
    "unet_noise_max",
)
PRETRAIN_DEFAULTS: dict[str, Any] = {
    **TINY_BASE_DEFAULTS,
    "vae_steps": 1000,
    "unet_steps": 300,
    "batch_size": 16,
    "lr": 0.001,
    "kl_weight": 1.0e-6,
    "unet_noise_max": 0.5,
}
# What the base's prompts mean (pretraining): the neutral and negative views of a clean image.
NEUTRAL_SIGMA = (0.5, 2.0)  # Gaussian low-pass std, px
NEGATIVE_NOISE = (0.02, 0.1)  # read-noise std added to a low-passed image
PROMPT_ORDER = ("positive", "neutral", "negative")  # the order of described_views


def check_pretrain_cfg(cfg: dict) -> dict:
    missing = [key for key in PRETRAIN_KEYS if key not in cfg]
    if missing:
        raise BadInputError(f"dmdiff base config is missing keys {missing}")
    for key in ("vae_steps", "unet_steps", "batch_size"):
        if int(cfg[key]) < 0 or (key == "batch_size" and int(cfg[key]) < 1):
            raise BadInputError(f"dmdiff base config {key} must be positive, got {cfg[key]}")
    missing_prompts = {"positive", "neutral", "negative"} - set(cfg["prompts"])
    if missing_prompts:
        raise BadInputError(f"dmdiff base config prompts lack {sorted(missing_prompts)}")
    from thincam.models.training import with_schedule_keys

    return with_schedule_keys(cfg, PRETRAIN_KEYS)


def described_views(x, generator):
    """[3,B,C,H,W]: what the positive, neutral and negative prompts describe for clean ``x``.

    Positive is ``x`` itself; neutral a Gaussian low-pass (one sigma per batch, drawn from
    NEUTRAL_SIGMA); negative the same low-pass plus Gaussian noise. Camera-agnostic on purpose:
    the base learns what "sharp", "low pass" and "blurry noisy" mean, as SD-Turbo knows from its
    captions, and DMDiff's LoRA learns the metalens degradation.
    """
    import torch

    lo, hi = NEUTRAL_SIGMA
    sigma = lo + (hi - lo) * float(torch.rand((), generator=generator))
    smooth = gaussian_lowpass(x, sigma)
    lo, hi = NEGATIVE_NOISE
    std = lo + (hi - lo) * torch.rand(len(x), 1, 1, 1, generator=generator)
    noisy = (smooth + std * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    return torch.stack([x, smooth, noisy])


def pretrain_dmdiff_base(
    images: np.ndarray,
    out_dir: str | os.PathLike,
    cfg: dict,
    seed: int,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> None:
    """Pretrain a tiny base on clean square ``images`` [N,3,H,W]; save it in the diffusers layout.

    The folder appears complete (renamed from a temporary name) or not at all. Each phase
    checkpoints to ``checkpoint_dir``/{vae,unet}; a run killed in the UNet phase resumes there
    with the finished VAE loaded from its last checkpoint.
    """
    import torch

    from thincam.models import training

    cfg = check_pretrain_cfg(cfg)
    images = _check_pretraining_images(images)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    with atomic_directory(out_dir) as tmp:
        torch.manual_seed(seed)
        base = build_tiny_base(cfg, image_size=images.shape[-1], tokenizer_dir=tmp / "tokenizer")
        base.to(device)
        x_all = torch.from_numpy(images).to(device)
        run_id = training.fingerprint(images=images, cfg=cfg, seed=seed, bf16=bf16)
        phases = []

        def schedule(phase):
            steps = int(cfg[f"{phase}_steps"])
            return training.schedule_from(cfg, "dmdiff.base.pretrain", steps=steps, bf16=bf16) if steps else None

        def checkpoint(phase):
            return None if folder is None else folder / phase

        if schedule("vae"):
            phases.append(_train_vae(base, x_all, cfg, schedule("vae"), seed, f"{run_id}:vae", checkpoint("vae"), device))
        latents = _fit_latent_scaling(base.vae, x_all)
        if schedule("unet"):
            phases.append(
                _train_unet(base, x_all, latents, cfg, schedule("unet"), seed, f"{run_id}:unet", checkpoint("unet"), device)
            )
        _save_base(base, tmp)
        facts = {
            "seed": seed,
            "cfg": cfg,
            "n_images": len(images),
            "image_size": int(images.shape[-1]),
            "vae_scaling_factor": base.vae.config.scaling_factor,
            "params": count_parameters(base),
        }
        if phases:
            training.write_training_files(tmp, phases, facts, "DMDiff base pretraining")
    if folder is not None:
        for phase in ("vae", "unet"):
            training.remove_checkpoint(folder / phase)
    log.info("dmdiff base pretrained -> %s", out_dir)


def _check_pretraining_images(images: np.ndarray) -> np.ndarray:
    images = check_images(images, "pretraining images")
    if images.shape[-1] != images.shape[-2]:
        raise BadInputError(f"pretraining images must be square, got {images.shape[-2:]}")
    return images


def _train_vae(base: BaseComponents, x_all, cfg: dict, schedule, seed, run_id, checkpoint, device):
    """Reconstruction + a small KL term: the latent space every later phase works in."""
    import torch
    import torch.nn.functional as F

    from thincam.models import training

    class Reconstruction(torch.nn.Module):
        """The VAE's encode -> sample -> decode as one forward (what several processes synchronise)."""

        def __init__(self, vae):
            super().__init__()
            self.vae = vae

        def forward(self, x, generator):
            posterior = self.vae.encode(2 * x - 1).latent_dist
            recon = (self.vae.decode(posterior.sample(generator=generator)).sample + 1) / 2
            return recon, posterior.kl().mean() / posterior.mean[0].numel()

    batch = int(cfg["batch_size"])
    kl_weight = float(cfg["kl_weight"])

    def step(model, generator):
        x = x_all[torch.randint(len(x_all), (batch,), generator=generator).to(device)]
        flip = (torch.rand(batch, 1, 1, 1, generator=generator) < 0.5).to(device)  # cheap augmentation
        x = torch.where(flip, x.flip(-1), x)
        recon, kl = model(x, generator)
        l2 = F.mse_loss(recon, x)
        return training.Losses(l2 + kl_weight * kl, l2)

    base.vae.requires_grad_(True)
    trained = training.train(
        Reconstruction(base.vae), step, schedule, phase="vae", seed=seed, run_id=run_id,
        checkpoint_dir=checkpoint, device=device, keep_checkpoint=True,
    )  # fmt: skip
    base.vae.eval().requires_grad_(False)
    return trained


def _fit_latent_scaling(vae, x_all):
    """Set the VAE's ``scaling_factor`` to 1/std of the latents of ``x_all``, as Stable Diffusion did,
    and return the scaled latents: the UNet phase's inputs."""
    import torch

    with torch.no_grad():
        latents = torch.cat([vae.encode(2 * x - 1).latent_dist.mode() for x in x_all.split(64)])
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    return latents * scaling


def _train_unet(base: BaseComponents, x_all, latents, cfg: dict, schedule, seed, run_id, checkpoint, device):
    """One-step x0 at t=999 from ``z + sigma n`` (sigma ~ U[0, unet_noise_max]) to the latent of
    what a random prompt describes: prompts that mean something, and a denoising prior."""
    import torch
    import torch.nn.functional as F

    from thincam.models import training

    vae, scaling = base.vae, base.vae.config.scaling_factor
    batch = int(cfg["batch_size"])
    embeds = prompt_embeddings(base, [cfg["prompts"][p] for p in PROMPT_ORDER])
    timestep = base.scheduler.config.num_train_timesteps - 1
    batch_rows = torch.arange(batch)
    noise_max = float(cfg["unet_noise_max"])

    def step(model, generator):
        idx = torch.randint(len(latents), (batch,), generator=generator)
        sigma = (torch.rand(batch, 1, 1, 1, generator=generator) * noise_max).to(device)
        z = latents[idx.to(device)]
        z_in = z + sigma * torch.randn(z.shape, generator=generator).to(device)
        which = torch.randint(len(embeds), (batch,), generator=generator)
        with torch.no_grad():
            described = described_views(x_all[idx.to(device)].cpu(), generator)[which, batch_rows].to(device)
            target = vae.encode(2 * described - 1).latent_dist.mode() * scaling
        eps = model(z_in, timestep, encoder_hidden_states=embeds[which.to(device)]).sample
        return training.Losses(F.mse_loss(one_step_x0(base.scheduler, z_in, eps, timestep), target))

    base.unet.requires_grad_(True)
    trained = training.train(
        base.unet, step, schedule, phase="unet", seed=seed + 1, run_id=run_id,
        checkpoint_dir=checkpoint, device=device, keep_checkpoint=True,
    )  # fmt: skip
    base.unet.eval().requires_grad_(False)
    return trained


def _save_base(base: BaseComponents, folder: Path) -> None:
    """The diffusers layout :func:`load_dmdiff_base` reads."""
    base.vae.save_pretrained(folder / "vae")
    base.unet.save_pretrained(folder / "unet")
    base.text_encoder.save_pretrained(folder / "text_encoder")
    base.tokenizer.save_pretrained(folder / "tokenizer")
    base.scheduler.save_pretrained(folder / "scheduler")
