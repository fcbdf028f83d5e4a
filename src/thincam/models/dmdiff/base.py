"""DMDiff base model: VAE, one-step UNet, CLIP text encoder, tokenizer and scheduler.

Paper scale loads a local SD-Turbo directory; the embedded default builds the same diffusers and
transformers classes at a tiny size and pretrains them for minutes. Both are the same diffusers
``save_pretrained`` layout, read by :func:`load_dmdiff_base`.

The tokenizer is built offline from a ``vocab.json`` + ``merges.txt`` this module writes: offline,
``CLIPTokenizer()`` or a hub id silently gives a placeholder mapping every word to one id
(DESIGN.md section 8), so every tokenizer is checked with :func:`check_tokenizer` after loading.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.errors import BadInputError, MissingWeightsError

log = logging.getLogger(__name__)

SUBFOLDERS = ("vae", "unet", "text_encoder", "tokenizer", "scheduler")
PRETRAIN_MARKER = "pretrain.json"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
# Prompts whose ids must differ under any real CLIP vocabulary: a placeholder tokenizer fails this.
PROBE_PROMPTS = ("a sharp photo", "a blurry photo")
# Words of the tiny vocabulary besides those of the configured prompts; anything else still
# tokenizes, letter by letter, through the byte-level alphabet.
BASE_WORDS = (
    "a an the of with and in on photo photograph image picture capture metalens lens camera "
    "sharp clean clear crisp detailed high quality resolution smooth soft low pass filtered "
    "blurry blurred blur noisy noise haze hazy degraded aberration chromatic dim dark bright "
    "natural scene face object texture"
).split()

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
    # Two levels, latents at 1/2 of the side: at 32 px a 1/4 latent capped the VAE near 22 dB
    # after minutes of CPU training (below the captures' ~27 dB); 1/2 reached 28.7 dB.
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
    "vae_steps": 1000,
    "unet_steps": 300,
    "batch_size": 16,
    "lr": 0.001,
    "kl_weight": 1.0e-6,
    "unet_noise_max": 0.5,
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


def _prompt_words(prompts: dict[str, str]) -> list[str]:
    return [w for text in prompts.values() for w in re.findall(r"[a-z]+", text.lower())]


def write_bpe_vocab(words: list[str], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write a CLIP-format byte-level BPE ``vocab.json`` and ``merges.txt`` covering ``words``.

    Each word gets the left-to-right chain of merges that builds it, so listed words become one
    token (or a few, where merges of other words take precedence) and nothing ever maps to unk.
    """
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    for char in alphabet:
        vocab[char + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    seen = set()
    for word in dict.fromkeys(w.lower() for w in words if w.isascii() and w.isalpha()):
        parts = list(word)
        parts[-1] += "</w>"
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            vocab.setdefault(parts[0], len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab_path, merges_path


def build_tokenizer(tokenizer_dir: str | os.PathLike, max_length: int):
    """A CLIPTokenizer from the vocab.json + merges.txt in ``tokenizer_dir`` (never the hub)."""
    from transformers import CLIPTokenizer

    tokenizer_dir = Path(tokenizer_dir)
    return CLIPTokenizer(
        vocab=str(tokenizer_dir / "vocab.json"),
        merges=str(tokenizer_dir / "merges.txt"),
        model_max_length=int(max_length),
    )


def check_tokenizer(
    tokenizer, prompts, vocab_size: int | None = None, where: str = "tokenizer"
) -> None:
    """Reject a placeholder tokenizer: every prompt word known, distinct prompts distinct ids."""
    if vocab_size is not None and len(tokenizer) != vocab_size:
        raise BadInputError(
            f"{where}: tokenizer has {len(tokenizer)} tokens, the text encoder expects {vocab_size}"
        )
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    ids = {}
    for prompt in dict.fromkeys(prompts):
        content = [i for i in tokenizer(prompt).input_ids if i not in special]
        if prompt.strip() and not content:
            raise BadInputError(f"{where}: prompt {prompt!r} maps to unknown/special tokens only")
        ids.setdefault(tuple(content), []).append(prompt)
    clashes = [group for group in ids.values() if len(group) > 1]
    if clashes:
        raise BadInputError(
            f"{where}: distinct prompts {clashes[0]} get the same token ids "
            "(an offline placeholder tokenizer?)"
        )


def build_tiny_base(
    cfg: dict, image_size: int = 32, tokenizer_dir: str | os.PathLike | None = None
):
    """Randomly initialised tiny components with the SD-Turbo classes and a one-step scheduler.

    The tokenizer files are written to ``tokenizer_dir`` (a temporary folder when None) from the
    prompt words plus :data:`BASE_WORDS`.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = {**PRETRAIN_DEFAULTS, **cfg}
    vae_ch, unet_ch = list(cfg["vae_channels"]), list(cfg["unet_channels"])
    factor = 2 ** (len(vae_ch) - 1)
    if image_size % (factor * 2 ** (len(unet_ch) - 1)):
        raise BadInputError(
            f"image size {image_size} is not a multiple of the base's downsampling "
            f"{factor * 2 ** (len(unet_ch) - 1)}"
        )
    words = BASE_WORDS + _prompt_words(cfg["prompts"])
    if tokenizer_dir is None:
        with tempfile.TemporaryDirectory(prefix="thincam-tokenizer-") as scratch:
            write_bpe_vocab(words, scratch)
            tokenizer = build_tokenizer(scratch, cfg["max_prompt_tokens"])
    else:
        write_bpe_vocab(words, tokenizer_dir)
        tokenizer = build_tokenizer(tokenizer_dir, cfg["max_prompt_tokens"])
    check_tokenizer(tokenizer, [*cfg["prompts"].values(), *PROBE_PROMPTS])

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
        # Cross-attention at the coarsest level only (and the mid block): half the step time of
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
    # epsilon prediction reaches x0 amplified by 1/sqrt(abar) = 14.6, v-prediction unamplified:
    # the tiny UNet's passthrough reached 27.7 dB with v, 18-20 dB with epsilon (300 steps).
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
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (z_t - (1 - abar).sqrt() * model_output) / abar.sqrt()
    if kind == "v_prediction":
        return abar.sqrt() * z_t - (1 - abar).sqrt() * model_output
    if kind == "sample":
        return model_output
    raise BadInputError(f"scheduler prediction_type {kind!r} is not supported")


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


# What the base's prompts mean (pretraining): the neutral and negative views of a clean image.
NEUTRAL_SIGMA = (0.5, 2.0)  # Gaussian low-pass std, px
NEGATIVE_NOISE = (0.02, 0.1)  # read-noise std added to a low-passed image


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
    """Pretrain a tiny base on clean ``images`` [N,3,H,W] and save it in the diffusers layout.

    Stage 1 trains the VAE for reconstruction (+ a small KL term), then sets its
    ``scaling_factor`` to 1/std of the latents, as Stable Diffusion did. Stage 2 trains the UNet
    so that the one-step x0 prediction at t=999 maps ``z + sigma n`` (sigma ~ U[0,
    unet_noise_max]) to the latent of what its prompt describes (:func:`described_views`): the
    clean image under the positive prompt, its low-pass under the neutral one, a blurred noisy
    version under the negative one. So the base starts near an autoencoder passthrough whose
    prompts mean something, the noisy inputs give it a latent denoising prior (what SD-Turbo's
    prior provides at paper scale), and DMDiff's paths start apart. Trained on one meaning for
    every prompt, the base ignored prompts and so did DMDiff: its positive and neutral outputs
    were 45 dB apart after training, and alpha changed nothing. DMDiff never feeds pure noise, so
    a noise-to-image generator, which minutes of CPU could not train, is not needed.
    The folder appears complete (renamed from a temporary name) or not at all.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    cfg = check_pretrain_cfg(cfg)
    images = check_images(images, "pretraining images")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir) as tmp:
        if images.shape[-1] != images.shape[-2]:
            raise BadInputError(f"pretraining images must be square, got {images.shape[-2:]}")
        torch.manual_seed(seed)
        base = build_tiny_base(cfg, image_size=images.shape[-1], tokenizer_dir=tmp / "tokenizer")
        x_all = torch.from_numpy(images)
        gen = torch.Generator().manual_seed(seed)
        batch, lr = int(cfg["batch_size"]), float(cfg["lr"])
        rows: list[tuple[str, int, float]] = []
        start = time.perf_counter()

        vae = base.vae.train().requires_grad_(True)
        opt = torch.optim.Adam(vae.parameters(), lr=lr)
        for step in tqdm(range(int(cfg["vae_steps"])), desc="dmdiff base: vae", mininterval=5):
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
            rows.append(("vae", step, loss.item()))
        vae.eval().requires_grad_(False)
        vae_s = time.perf_counter() - start

        with torch.no_grad():
            latents = torch.cat([vae.encode(2 * x - 1).latent_dist.mode() for x in x_all.split(64)])
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        latents = latents * scaling

        paths = ("positive", "neutral", "negative")  # the order of described_views
        embeds = prompt_embeddings(base, [cfg["prompts"][p] for p in paths])
        timestep = base.scheduler.config.num_train_timesteps - 1
        unet = base.unet.train().requires_grad_(True)
        opt = torch.optim.Adam(unet.parameters(), lr=lr)
        batch_rows = torch.arange(batch)
        for step in tqdm(range(int(cfg["unet_steps"])), desc="dmdiff base: unet", mininterval=5):
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
            rows.append(("unet", step, loss.item()))
        unet.eval().requires_grad_(False)
        total_s = time.perf_counter() - start

        base.vae.save_pretrained(tmp / "vae")
        base.unet.save_pretrained(tmp / "unet")
        base.text_encoder.save_pretrained(tmp / "text_encoder")
        base.tokenizer.save_pretrained(tmp / "tokenizer")
        base.scheduler.save_pretrained(tmp / "scheduler")
        with open(tmp / "pretrain_loss.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["stage", "step", "loss"])
            writer.writerows((s, i, f"{v:.6g}") for s, i, v in rows)
        summary = {
            "seed": seed,
            "cfg": cfg,
            "n_images": len(images),
            "image_size": int(images.shape[-1]),
            "vae_scaling_factor": scaling,
            "params": count_parameters(base),
            "seconds": {"vae": round(vae_s, 2), "total": round(total_s, 2)},
            "final_loss": {
                stage: next((v for s, _, v in reversed(rows) if s == stage), None)
                for stage in ("vae", "unet")
            },
        }
        (tmp / PRETRAIN_MARKER).write_text(json.dumps(summary, indent=2, sort_keys=True))
    log.info("dmdiff base pretrained in %.1f s -> %s", total_s, out_dir)


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
