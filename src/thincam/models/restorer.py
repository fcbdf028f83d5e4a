"""The supervised non-diffusion baseline: a plain UNet from metalens capture to clean image.

A diffusers ``UNet2DModel`` used as a plain network: the timestep is fixed at 0, so its time
embedding is a constant bias, and it predicts a residual added to the capture (its last conv
starts at zero, so training starts from the identity, the capture itself). Chosen over a
hand-written conv UNet because it is the same family of ResNet/GroupNorm blocks as the DMDiff
base UNet and saves and loads in the diffusers convention like every other model here. It is
trained with DMDiff's loss (L2 plus the same perceptual term) on DMDiff's real pairs, so the
DMDiff table shows what the diffusion prior, the prompts and the pseudo pairs add over plain
supervised regression: SwinIR's place in the paper's table.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.errors import BadInputError

log = logging.getLogger(__name__)

RESTORER_KEYS = ("steps", "batch_size", "lr", "block_channels", "layers_per_block")
# The loss keys it shares with DMDiff's training config: the same loss, by construction.
LOSS_KEYS = ("lpips_weight", "lpips_weights_dir", "weight_free_weight")


def check_restorer_cfg(cfg: dict, loss: dict) -> tuple[dict, dict]:
    """(restorer cfg, loss cfg) with exactly the known keys; a missing or bad one names itself."""
    missing = [f"restorer.{k}" for k in RESTORER_KEYS if k not in cfg]
    missing += [f"train.{k}" for k in LOSS_KEYS if k not in loss]
    if missing:
        raise BadInputError(f"dmdiff config is missing keys {missing}")
    for key in ("steps", "batch_size", "layers_per_block"):
        if int(cfg[key]) < 1:
            raise BadInputError(f"dmdiff config restorer.{key} must be >= 1, got {cfg[key]}")
    channels = [int(c) for c in cfg["block_channels"]]
    if not channels or min(channels) < 8 or any(c % 8 for c in channels):
        raise BadInputError(
            f"dmdiff config restorer.block_channels must be multiples of 8 (GroupNorm), got {channels}"
        )
    from thincam.models.training import with_schedule_keys

    return with_schedule_keys(cfg, RESTORER_KEYS), {key: loss[key] for key in LOSS_KEYS}


def build_restorer(cfg: dict, size: int):
    """A fresh UNet2DModel whose output conv is zero: it starts as the identity on the capture."""
    import torch
    from diffusers import UNet2DModel

    channels = tuple(int(c) for c in cfg["block_channels"])
    unet = UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        layers_per_block=int(cfg["layers_per_block"]),
        down_block_types=("DownBlock2D",) * len(channels),
        up_block_types=("UpBlock2D",) * len(channels),
        norm_num_groups=8,
    )
    with torch.no_grad():
        unet.conv_out.weight.zero_()
        unet.conv_out.bias.zero_()
    return unet


def predict(unet, y):
    """The restored images: the capture plus the network's residual (timestep 0, a constant)."""
    return y + unet(y, 0).sample


def train_restorer(
    pairs: tuple[np.ndarray, np.ndarray],
    out_dir: str | os.PathLike,
    cfg: dict,
    loss: dict,
    seed: int,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> dict:
    """Train on (captures y, clean x) [N,3,H,W]; writes ``out_dir`` atomically (the diffusers
    model and the training files of thincam.models.training) and returns ``training.json``'s record.
    A run killed after a checkpoint in ``checkpoint_dir`` resumes there."""
    import torch

    from thincam.models import training
    from thincam.models.losses import training_term

    cfg, loss = check_restorer_cfg(cfg, loss)
    schedule = training.schedule_from(cfg, "dmdiff.restorer", bf16=bf16)
    y, x = (np.ascontiguousarray(a, dtype=np.float32) for a in pairs)
    if y.shape != x.shape or y.ndim != 4 or y.shape[1] != 3 or len(y) == 0:
        raise BadInputError(f"restorer pairs: y {y.shape} and x {x.shape} must be equal, non-empty [N,3,H,W]")
    if y.shape[-1] % 2 ** (len(cfg["block_channels"]) - 1) or y.shape[-2] % 2 ** (len(cfg["block_channels"]) - 1):
        raise BadInputError(
            f"restorer: {y.shape[-2:]} images do not halve {len(cfg['block_channels']) - 1} times "
            f"(dmdiff restorer.block_channels)"
        )
    torch.manual_seed(seed)
    unet = build_restorer(cfg, y.shape[-1]).to(device)
    term = training_term(loss["lpips_weights_dir"], loss["lpips_weight"], loss["weight_free_weight"], device)
    loss_name = "l2" if term is None else term.describe()
    log.info("UNet restorer: %d pairs, loss %s", len(y), loss_name)
    y_t, x_t = torch.from_numpy(y).to(device), torch.from_numpy(x).to(device)
    batch_size = int(cfg["batch_size"])

    def step(model, generator):
        idx = torch.randint(len(y), (batch_size,), generator=generator).to(device)
        out = predict(model, y_t[idx])
        l2 = torch.nn.functional.mse_loss(out, x_t[idx])
        perceptual = None if term is None else term.fn(out, x_t[idx])
        total = l2 if term is None else l2 + term.weight * perceptual
        return training.Losses(total, l2, perceptual)

    run_id = training.fingerprint(y=y, x=x, cfg=cfg, loss=loss, seed=seed, bf16=bf16)
    trained = training.train(
        unet, step, schedule, phase="unet", seed=seed, run_id=run_id, checkpoint_dir=checkpoint_dir, device=device
    )
    record = {"seed": seed, "cfg": cfg, "loss": loss_name, "n_pairs": len(y)}
    if not trained.main_process:
        return {}
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir) as tmp:
        unet.save_pretrained(tmp)
        written = training.write_training_files(tmp, [trained], record, f"UNet baseline ({loss_name})")
    log.info("UNet restorer trained %d steps -> %s", trained.record["steps"], out_dir)
    return written


def load_restorer(model_dir: str | os.PathLike, device: str = "cpu"):
    """The trained UNet2DModel of ``model_dir``, in eval mode."""
    from diffusers import UNet2DModel

    if not (Path(model_dir) / "config.json").is_file():
        raise BadInputError(f"{model_dir}: not a trained restorer (no config.json)")
    return UNet2DModel.from_pretrained(model_dir).to(device).eval()


def restore(unet, y, batch_size: int = 16):
    """Restored images [B,3,H,W] in [0, 1] from captures ``y`` [B,3,H,W], on ``y``'s device."""
    import torch

    with torch.no_grad():
        return torch.cat([predict(unet, chunk).clamp(0, 1) for chunk in y.split(int(batch_size))])
