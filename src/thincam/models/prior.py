"""The diffusion prior: a small diffusers UNet2DModel trained on clean images, a local
pretrained diffusers model, or a published ADM / guided-diffusion checkpoint (thincam.models.adm).
The first two are stored in the diffusers ``save_pretrained`` layout; an ADM checkpoint is
registered by a small folder (``adm.json``: file, architecture, SHA-256) so every stage still
takes a prior folder, and ``load_prior`` gives the solvers the same (unet, scheduler) either way.

Images are float32 in [0, 1]; the prior sees them mapped to [-1, 1] (the DDPM convention).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.errors import BadInputError, MissingWeightsError

# Sized for the embedded default (docs/default.md): 1.06 M parameters at 32 px, about 0.31 s per
# training step at batch 16 on 1 CPU thread (0.18 s on 2), so 1000 steps is ~5 min on one core.
# A quarter of the parameters ([16, 32, 32]) steps 2.8x faster but lost on val (faces: DDNM+ 20
# steps 29.1 vs 30.8 dB; natural: 24.6 vs 25.0 dB). The schedule (thincam.models.training), chosen
# on val with bench/training_schedules.py: a constant learning rate and an EMA of the weights
# (faces 1000 steps 30.94 dB, natural 25.12) beat warm-up + cosine without one at 1500 steps
# (30.77, 25.04); warmup_steps None means a tenth of the steps, at most 100.
DEFAULT_PRIOR_CFG: dict[str, Any] = {
    "steps": 1000,
    "batch_size": 16,
    "lr": 1e-3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "warmup_steps": 0,
    "lr_decay": "constant",
    "ema_decay": 0.995,
    "clip_grad_norm": 1.0,
    "weight_decay": 0.0,
    "grad_accum": 1,
    "checkpoint_every": 250,
}

# Our names for the beta schedules, mapped to diffusers' names.
BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "squaredcos_cap_v2": "squaredcos_cap_v2"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
ADM_MANIFEST = "adm.json"
# prior_facts of both ADM architectures (thincam.models.adm): RGB and guided-diffusion's 1000
# training timesteps; DeepInverse's DiffUNet pads any image size itself (none to halve).
ADM_FACTS = {"channels": 3, "halvings": 0, "num_train_timesteps": 1000}


def prior_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``cfg``; an unknown key is an error (a typo would silently be ignored)."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULT_PRIOR_CFG))
    if unknown:
        raise BadInputError(f"prior cfg: unknown key(s) {unknown}; known: {sorted(DEFAULT_PRIOR_CFG)}")
    merged = {**DEFAULT_PRIOR_CFG, **cfg}
    if merged["beta_schedule"] not in BETA_SCHEDULES:
        raise BadInputError(
            f"prior cfg: beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {merged['beta_schedule']!r}"
        )
    return merged


def build_unet(image_shape: tuple[int, int, int], cfg: Mapping[str, Any]):
    """A tiny UNet2DModel without attention: attention barely helps at 32 px and doubles CPU time."""
    from diffusers import UNet2DModel

    channels, height, width = image_shape
    levels = len(cfg["block_out_channels"])
    return UNet2DModel(
        sample_size=(height, width),
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        norm_num_groups=min(32, min(cfg["block_out_channels"])),
    )


@dataclass
class TrainedPrior:
    """A freshly trained prior: what :func:`save_prior` writes."""

    unet: Any
    scheduler: Any
    trained: Any  # thincam.models.training.Trained
    facts: dict[str, Any]


def prior_schedule(cfg: Mapping[str, Any], bf16: bool = False):
    """The training schedule of a prior config (:func:`prior_config` applied first)."""
    from thincam.models.training import schedule_from

    warmup = cfg["warmup_steps"]
    if warmup is None:
        warmup = max(1, min(100, int(cfg["steps"]) // 10))
    return schedule_from({**cfg, "warmup_steps": warmup}, "priors.<prior>.train", bf16=bf16)


def train_prior(
    images: np.ndarray,
    cfg: Mapping[str, Any] | None,
    seed: int,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> TrainedPrior:
    """Train an epsilon-prediction DDPM prior on ``images`` [N,C,H,W] in [0,1].

    Everything random (init, batches, flips, noise, timesteps) comes from ``seed`` (drawn on the
    CPU whatever ``device``), so a re-run, or a run resumed from ``checkpoint_dir`` after a kill,
    gives the same weights on the same machine.
    """
    import torch
    from diffusers import DDPMScheduler

    from thincam.models import training

    cfg = prior_config(cfg)
    schedule = prior_schedule(cfg, bf16)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise BadInputError(f"train_prior: images must be a non-empty [N,C,H,W] array, got shape {images.shape}")
    if not np.all(np.isfinite(images)) or images.min() < 0 or images.max() > 1:
        raise BadInputError("train_prior: images must be finite and in [0, 1]")

    torch.manual_seed(seed)
    unet = build_unet(images.shape[1:], cfg).to(device)
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg["num_train_timesteps"],
        beta_schedule=BETA_SCHEDULES[cfg["beta_schedule"]],
        prediction_type="epsilon",
    )
    data = torch.from_numpy(images).to(device) * 2 - 1
    alphas_cumprod = scheduler.alphas_cumprod.to(device)
    batch_size, timesteps = int(cfg["batch_size"]), int(cfg["num_train_timesteps"])

    def step(model, generator):
        batch = data[torch.randint(len(data), (batch_size,), generator=generator).to(device)]
        flip = (torch.rand(len(batch), generator=generator) < 0.5).to(device)
        batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        noise = torch.randn(batch.shape, generator=generator).to(device)
        t = torch.randint(timesteps, (len(batch),), generator=generator).to(device)
        abar = alphas_cumprod[t][:, None, None, None]
        noisy = abar.sqrt() * batch + (1 - abar).sqrt() * noise
        return training.Losses(torch.nn.functional.mse_loss(model(noisy, t).sample, noise))

    run_id = training.fingerprint(images=images, cfg=cfg, seed=seed, bf16=bf16)
    trained = training.train(
        unet, step, schedule, phase="prior", seed=seed, run_id=run_id, checkpoint_dir=checkpoint_dir, device=device
    )
    facts = {
        "cfg": cfg,
        "seed": seed,
        "n_images": len(images),
        "image_shape": list(images.shape[1:]),
        "n_params": int(sum(p.numel() for p in unet.parameters())),
    }
    return TrainedPrior(unet.to("cpu"), scheduler, trained, facts)


def save_prior(prior: TrainedPrior, out_dir: str | os.PathLike) -> None:
    """``out_dir/unet/``, ``out_dir/scheduler/`` (diffusers layout) and the training files
    (``loss.csv``, ``loss.png``, ``training.json``: thincam.models.training)."""
    from thincam.models.training import write_training_files

    with atomic_directory(out_dir) as tmp:
        prior.unet.save_pretrained(tmp / "unet", safe_serialization=True)
        prior.scheduler.save_pretrained(tmp / "scheduler")
        write_training_files(tmp, [prior.trained], prior.facts, "diffusion prior (epsilon MSE)")


def _locate(path: Path) -> tuple[Path, Path, Path]:
    """(unet dir, its weights file, scheduler config) in either diffusers layout, or say what is missing."""
    hint = (
        "train it with the workflow's train_prior rule, or put a diffusers UNet2DModel there "
        "(config.json + diffusion_pytorch_model.safetensors|.bin, at top level or in unet/) "
        "with scheduler_config.json (at top level or in scheduler/)"
    )
    if not path.is_dir():
        raise MissingWeightsError(f"prior {path}: directory does not exist; {hint}")
    unet_dir = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (unet_dir / "config.json").is_file():
        raise MissingWeightsError(f"prior {path}: no UNet config.json in {path} or {path / 'unet'}; {hint}")
    weights = [unet_dir / name for name in WEIGHT_FILES if (unet_dir / name).is_file()]
    if not weights:
        raise MissingWeightsError(f"prior {path}: no UNet weights ({' or '.join(WEIGHT_FILES)}) in {unet_dir}; {hint}")
    schedulers = [p / "scheduler_config.json" for p in (path / "scheduler", path)]
    schedulers = [p for p in schedulers if p.is_file()]
    if not schedulers:
        raise MissingWeightsError(f"prior {path}: no scheduler_config.json in {path / 'scheduler'} or {path}; {hint}")
    return unet_dir, weights[0], schedulers[0]


def prior_facts(path: str | os.PathLike) -> dict[str, int]:
    """Image channels, 2x downsamplings and training timesteps of a local diffusers prior, read
    from its config files (no weights loaded): what a config must agree with before any job."""
    unet_dir, _, scheduler_file = _locate(Path(path))
    unet = json.loads((unet_dir / "config.json").read_text())
    scheduler = json.loads(scheduler_file.read_text())
    return {
        "channels": int(unet.get("in_channels", 3)),  # diffusers' defaults where a key is absent
        "halvings": len(unet.get("down_block_types", [None] * 4)) - 1,
        "num_train_timesteps": int(scheduler.get("num_train_timesteps", 1000)),
    }


def trained_prior_facts(cfg: Mapping[str, Any] | None, channels: int) -> dict[str, int]:
    """:func:`prior_facts` of the prior :func:`train_prior` makes from ``cfg`` on images of
    ``channels`` channels (its last UNet level does not downsample)."""
    cfg = prior_config(cfg)
    return {
        "channels": channels,
        "halvings": len(cfg["block_out_channels"]) - 1,
        "num_train_timesteps": int(cfg["num_train_timesteps"]),
    }


def _adm_manifest(path: Path) -> dict[str, Any] | None:
    manifest = path / ADM_MANIFEST
    return json.loads(manifest.read_text()) if manifest.is_file() else None


def prior_weights_file(path: str | os.PathLike) -> Path:
    """The UNet weights file of a prior directory (what ``prior_id`` hashes)."""
    manifest = _adm_manifest(Path(path))
    if manifest is not None:
        return Path(manifest["checkpoint"])
    return _locate(Path(path))[1]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def prior_id(path: str | os.PathLike) -> str:
    """SHA-256 of the UNet weights file: names the exact prior a teacher target came from.

    An ADM prior's hash is taken once, when it is registered (its files run to 2 GB).
    """
    manifest = _adm_manifest(Path(path))
    if manifest is not None:
        return manifest["sha256"]
    return _sha256(prior_weights_file(path))


def register_adm_prior(checkpoint: str | os.PathLike, architecture: str, out_dir: str | os.PathLike) -> None:
    """The prior folder of a published ADM checkpoint: checked to load, then named by ``adm.json``.

    A wrong or partial file fails here, naming the file and its first mismatching key.
    """
    from thincam.models.adm import load_adm_checkpoint

    checkpoint = Path(checkpoint).resolve()
    unet = load_adm_checkpoint(checkpoint, architecture)
    facts = {
        "checkpoint": str(checkpoint),
        "architecture": architecture,
        "sha256": _sha256(checkpoint),
        "n_params": int(sum(p.numel() for p in unet.parameters())),
    }
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp:
        (tmp / ADM_MANIFEST).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")


def load_prior(path: str | os.PathLike, device: str = "cpu"):
    """(unet, scheduler) from a trained default, a local pretrained diffusers directory or a
    registered ADM checkpoint (an ``adm.json`` folder).

    The UNet is in eval mode with frozen parameters (samplers only need gradients w.r.t. the
    input). Loading is local only: offline a hub id would hang for minutes (docs/traps.md).
    """
    from diffusers import DDPMScheduler, UNet2DModel

    manifest = _adm_manifest(Path(path))
    if manifest is not None:
        from thincam.models.adm import adm_scheduler, load_adm_checkpoint

        return load_adm_checkpoint(manifest["checkpoint"], manifest["architecture"], device), adm_scheduler()
    unet_dir, weights, scheduler_config = _locate(Path(path))
    unet = UNet2DModel.from_pretrained(
        unet_dir, local_files_only=True, use_safetensors=weights.suffix == ".safetensors"
    )
    unet.eval().requires_grad_(False).to(device)
    scheduler = DDPMScheduler.from_pretrained(scheduler_config.parent, local_files_only=True)
    return unet, scheduler

