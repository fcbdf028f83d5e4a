"""Pretraining of the tiny DMDiff base on clean images, in two phases: VAE, then UNet.

The UNet learns a one-step x0 prediction at t=999 that maps a noisy latent to the latent of what
its prompt describes (:func:`described_views`), so the base starts near an autoencoder passthrough
whose prompts mean something, with a latent denoising prior (what SD-Turbo's prior provides at
paper scale), and DMDiff's paths start apart. Trained on one meaning for every prompt, the base
ignored its prompts and so did DMDiff. DMDiff never feeds pure noise, so a noise-to-image
generator, which minutes of CPU could not train, is not needed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
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

PRETRAIN_MARKER = "pretrain.json"
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
    return {key: cfg[key] for key in PRETRAIN_KEYS}


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
    images: np.ndarray, out_dir: str | os.PathLike, cfg: dict, seed: int
) -> None:
    """Pretrain a tiny base on clean square ``images`` [N,3,H,W]; save it in the diffusers layout.

    The folder appears complete (renamed from a temporary name) or not at all.
    """
    import torch

    cfg = check_pretrain_cfg(cfg)
    images = _check_pretraining_images(images)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir) as tmp:
        torch.manual_seed(seed)
        base = build_tiny_base(cfg, image_size=images.shape[-1], tokenizer_dir=tmp / "tokenizer")
        x_all = torch.from_numpy(images)
        gen = torch.Generator().manual_seed(seed)
        start = time.perf_counter()
        vae_losses = _train_vae(base.vae, x_all, cfg, gen)
        vae_s = time.perf_counter() - start
        latents = _fit_latent_scaling(base.vae, x_all)
        unet_losses = _train_unet(base, x_all, latents, cfg, gen)
        total_s = time.perf_counter() - start
        losses = {"vae": vae_losses, "unet": unet_losses}
        _save_base(base, tmp, losses)
        summary = {
            "seed": seed,
            "cfg": cfg,
            "n_images": len(images),
            "image_size": int(images.shape[-1]),
            "vae_scaling_factor": base.vae.config.scaling_factor,
            "params": count_parameters(base),
            "seconds": {"vae": round(vae_s, 2), "total": round(total_s, 2)},
            "final_loss": {
                stage: values[-1] if values else None for stage, values in losses.items()
            },
        }
        (tmp / PRETRAIN_MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True))
    log.info("dmdiff base pretrained in %.1f s -> %s", total_s, out_dir)


def _check_pretraining_images(images: np.ndarray) -> np.ndarray:
    images = check_images(images, "pretraining images")
    if images.shape[-1] != images.shape[-2]:
        raise BadInputError(f"pretraining images must be square, got {images.shape[-2:]}")
    return images


def _train_vae(vae, x_all, cfg: dict, gen) -> list[float]:
    """Reconstruction + a small KL term: the latent space every later phase works in."""
    import torch
    import torch.nn.functional as F
    from thincam.logs import progress

    batch = int(cfg["batch_size"])
    vae.train().requires_grad_(True)
    opt = torch.optim.Adam(vae.parameters(), lr=float(cfg["lr"]))
    losses = []
    for _ in progress(range(int(cfg["vae_steps"])), "dmdiff base: vae"):
        x = x_all[torch.randint(len(x_all), (batch,), generator=gen)]
        flip = torch.rand(batch, 1, 1, 1, generator=gen) < 0.5  # cheap augmentation
        x = torch.where(flip, x.flip(-1), x)
        posterior = vae.encode(2 * x - 1).latent_dist
        recon = (vae.decode(posterior.sample(generator=gen)).sample + 1) / 2
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = F.mse_loss(recon, x) + float(cfg["kl_weight"]) * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    vae.eval().requires_grad_(False)
    return losses


def _fit_latent_scaling(vae, x_all):
    """Set the VAE's ``scaling_factor`` to 1/std of the latents, as Stable Diffusion did, and
    return the scaled latents of ``x_all``: the UNet's inputs."""
    import torch

    with torch.no_grad():
        latents = torch.cat([vae.encode(2 * x - 1).latent_dist.mode() for x in x_all.split(64)])
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    return latents * scaling


def _train_unet(base: BaseComponents, x_all, latents, cfg: dict, gen) -> list[float]:
    """One-step x0 at t=999 from ``z + sigma n`` (sigma ~ U[0, unet_noise_max]) to the latent of
    what a random prompt describes: prompts that mean something, and a denoising prior."""
    import torch
    import torch.nn.functional as F
    from thincam.logs import progress

    vae, scaling = base.vae, base.vae.config.scaling_factor
    batch = int(cfg["batch_size"])
    embeds = prompt_embeddings(base, [cfg["prompts"][p] for p in PROMPT_ORDER])
    timestep = base.scheduler.config.num_train_timesteps - 1
    unet = base.unet.train().requires_grad_(True)
    opt = torch.optim.Adam(unet.parameters(), lr=float(cfg["lr"]))
    batch_rows = torch.arange(batch)
    losses = []
    for _ in progress(range(int(cfg["unet_steps"])), "dmdiff base: unet"):
        idx = torch.randint(len(latents), (batch,), generator=gen)
        sigma = torch.rand(batch, 1, 1, 1, generator=gen) * float(cfg["unet_noise_max"])
        z = latents[idx]
        z_in = z + sigma * torch.randn(z.shape, generator=gen)
        which = torch.randint(len(embeds), (batch,), generator=gen)
        with torch.no_grad():
            described = described_views(x_all[idx], gen)[which, batch_rows]
            target = vae.encode(2 * described - 1).latent_dist.mode() * scaling
        eps = unet(z_in, timestep, encoder_hidden_states=embeds[which]).sample
        loss = F.mse_loss(one_step_x0(base.scheduler, z_in, eps, timestep), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    unet.eval().requires_grad_(False)
    return losses


def _save_base(base: BaseComponents, folder: Path, losses: dict[str, list[float]]) -> None:
    """The diffusers layout :func:`load_dmdiff_base` reads, and the per-step loss table."""
    base.vae.save_pretrained(folder / "vae")
    base.unet.save_pretrained(folder / "unet")
    base.text_encoder.save_pretrained(folder / "text_encoder")
    base.tokenizer.save_pretrained(folder / "tokenizer")
    base.scheduler.save_pretrained(folder / "scheduler")
    with open(folder / "pretrain_loss.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["stage", "step", "loss"])
        for stage, values in losses.items():
            writer.writerows((stage, step, f"{value:.6g}") for step, value in enumerate(values))
