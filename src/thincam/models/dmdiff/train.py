"""Multipath DMDiff training: each batch draws a path from Cat(p_pos, p_neu, p_neg).

positive: capture -> clean; neutral: capture -> Gaussian low-pass clean; negative: clean ->
capture. Pseudo pairs (from :mod:`thincam.models.dmdiff.pseudo`) join the positive and neutral
paths only: the negative path learning to reproduce its own outputs would teach it nothing.
Same config, seed, machine and thread count -> the same bits.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.errors import BadInputError
from thincam.models.dmdiff.architecture import check_images, gaussian_lowpass
from thincam.models.dmdiff.pseudo import PSEUDO_CONTRACT
from thincam.models.losses import PerceptualTerm, training_term

log = logging.getLogger(__name__)

TRAIN_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "rank_vae",
    "rank_unet",
    "p_pos",
    "p_neu",
    "p_neg",
    "svda",
    "use_fwhm",
    "map_size",
    "prompts",
    "lowpass_sigma",
    "lpips_weights_dir",
    "musiq_weights_dir",
)
# Keys with a paper value that a config may still override.
# weight_free_weight: the weight-free perceptual term (models.losses), used when LPIPS weights are
# absent; chosen on the validation split of the demo (docs/results.md: the weight-free term choice).
TRAIN_OPTIONAL = {"lpips_weight": 2.5, "weight_free_weight": 0.5, "svda_hidden": 64}
TRAIN_DEFAULTS = {
    "steps": 600,  # with lr 1e-3: minutes on one CPU thread at 32 px
    "batch_size": 8,
    "lr": 0.001,
    "rank_vae": 4,
    "rank_unet": 4,
    "p_pos": 0.6,
    "p_neu": 0.2,
    "p_neg": 0.2,
    "svda": True,
    "use_fwhm": True,
    "map_size": 4,
    "prompts": {
        "positive": "a sharp clean high quality photo",
        "neutral": "a smooth soft low pass filtered photo",
        "negative": "a blurry noisy metalens capture",
    },
    "lowpass_sigma": 1.0,
    "lpips_weights_dir": None,
    "musiq_weights_dir": None,
    **TRAIN_OPTIONAL,
}


def check_train_cfg(cfg: dict) -> dict:
    missing = [key for key in TRAIN_KEYS if key not in cfg]
    if missing:
        raise BadInputError(f"dmdiff config is missing keys {missing}")
    from thincam.models.training import with_schedule_keys

    cfg = {**TRAIN_OPTIONAL, **with_schedule_keys(cfg, (*TRAIN_KEYS, *TRAIN_OPTIONAL))}
    for key in ("steps", "batch_size", "rank_vae", "rank_unet", "map_size"):
        if int(cfg[key]) < 1:
            raise BadInputError(f"dmdiff config {key} must be >= 1, got {cfg[key]}")
    probs = [float(cfg[k]) for k in ("p_pos", "p_neu", "p_neg")]
    if min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
        raise BadInputError(
            f"dmdiff config p_pos, p_neu, p_neg must be >= 0 and sum to 1, got {probs}"
        )
    if float(cfg["lowpass_sigma"]) <= 0:
        raise BadInputError(f"dmdiff config lowpass_sigma must be > 0, got {cfg['lowpass_sigma']}")
    for key in ("lpips_weight", "weight_free_weight"):
        if float(cfg[key]) < 0:
            raise BadInputError(f"dmdiff config {key} must be >= 0, got {cfg[key]}")
    return cfg


def train_dmdiff(
    base_dir: str | os.PathLike,
    train_pairs: tuple[np.ndarray, np.ndarray],
    fwhm_grid: np.ndarray,
    out_dir: str | os.PathLike,
    cfg: dict,
    seed: int,
    pseudo_pairs: tuple[np.ndarray, np.ndarray] | str | os.PathLike | None = None,
    device: str = "cpu",
    pseudo_record: dict | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> None:
    """Fine-tune LoRA + SVDA on (captures y, clean x) [N,3,H,W] and save a loadable model.

    ``pseudo_pairs``: (y_pseudo, x_clean) arrays or a pseudo_pairs HDF5 file. ``pseudo_record``:
    the caller's account of the pseudo pairs (quality, whether used), kept in ``training.json``.
    Writes ``out_dir`` atomically: peft adapters, SVDA weights, ``dmdiff_config.json`` and the
    training files (thincam.models.training); resumes from ``checkpoint_dir`` after a kill.
    """
    from thincam.models import training

    cfg = check_train_cfg(cfg)
    schedule = training.schedule_from(cfg, "dmdiff.train", bf16=bf16)
    y_all, x_all, n_real = _assemble_pairs(train_pairs, pseudo_pairs)
    model = _build_model(base_dir, cfg, seed, device)
    term = training_term(
        cfg["lpips_weights_dir"], cfg["lpips_weight"], cfg["weight_free_weight"], device
    )
    loss_name = "l2" if term is None else term.describe()
    if cfg["lpips_weights_dir"] is None:
        log.warning("LPIPS weights absent (lpips_weights_dir null): loss %s", loss_name)
    else:
        log.info("loss: %s, LPIPS trunk from %s", loss_name, cfg["lpips_weights_dir"])
    pools = _path_pools(model, y_all, x_all, n_real, fwhm_grid, cfg)
    run_id = training.fingerprint(
        y=y_all, x=x_all, n_real=n_real, fwhm=np.asarray(fwhm_grid), cfg=cfg, seed=seed, bf16=bf16,
        base=_base_identity(base_dir),
    )  # fmt: skip
    trained = training.train(
        _translation(model), _path_step(pools, cfg, term), schedule, phase="dmdiff", seed=seed,
        run_id=run_id, checkpoint_dir=checkpoint_dir, parameters=model.trainable_parameters(), device=device,
    )  # fmt: skip
    counts = {path: sum(row[6] == path for row in trained.rows) for path in pools}
    facts = {
        "seed": seed,
        "cfg": cfg,
        "loss": loss_name,
        "n_real": n_real,
        "n_pseudo": len(y_all) - n_real,
        "pseudo_pairs": pseudo_record,
        "path_counts": counts,
        "svda_params": (
            0 if model.svda is None else sum(p.numel() for p in model.svda.parameters())
        ),
    }
    if not trained.main_process:
        return
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out_dir) as tmp:
        model.save(tmp)
        training.write_training_files(tmp, [trained], facts, f"DMDiff multipath training ({loss_name})")
    log.info("dmdiff trained %d steps (%s) -> %s", trained.record["steps"], json.dumps(counts), out_dir)


def _base_identity(base_dir) -> dict:
    """The base's weight files by size and time: a checkpoint on another base is not resumed."""
    files = sorted(Path(base_dir).rglob("*.safetensors"))
    return {str(f.relative_to(base_dir)): [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def _translation(model):
    """DMDiff's trained parts as one torch module whose forward is a path's translation: what
    the training engine prepares, checkpoints and, with several processes, synchronises."""
    import torch

    class Translation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.unet, self.svda = model.base.vae.encoder, model.base.unet, model.svda

        def forward(self, inputs, dmap, path):
            return model.translate(inputs, dmap, path)

    return Translation()


def _pairs(pairs, what: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pairs, (str, os.PathLike)):
        from thincam.data.h5io import read_h5

        arrays, _ = read_h5(pairs, ["y_pseudo", "x_clean"], contract=PSEUDO_CONTRACT)
        pairs = (arrays["y_pseudo"], arrays["x_clean"])
    y, x = (check_images(a, f"{what} {name}") for a, name in zip(pairs, ("y", "x"), strict=True))
    if y.shape != x.shape or len(y) == 0:
        raise BadInputError(f"{what}: y {y.shape} and x {x.shape} must be equal, non-empty shapes")
    return y, x


def _assemble_pairs(train_pairs, pseudo_pairs) -> tuple[np.ndarray, np.ndarray, int]:
    """(y, x, number of real pairs): real pairs first, so the negative path can take only them."""
    y_real, x_real = _pairs(train_pairs, "training pairs")
    if pseudo_pairs is None:
        return y_real, x_real, len(y_real)
    y_ps, x_ps = _pairs(pseudo_pairs, "pseudo pairs")
    if y_ps.shape[1:] != y_real.shape[1:]:
        raise BadInputError(
            f"pseudo pairs {y_ps.shape} and training pairs {y_real.shape} differ in size"
        )
    return np.concatenate([y_real, y_ps]), np.concatenate([x_real, x_ps]), len(y_real)


def _build_model(base_dir, cfg: dict, seed: int, device: str):
    """A fresh DMDiff (LoRA B = 0, SVDA Q = I) on the frozen base, seeded."""
    import torch

    from thincam.models.dmdiff.architecture import load_dmdiff_base
    from thincam.models.dmdiff.model import DMDiff
    from thincam.models.dmdiff.svda import make_quality

    torch.manual_seed(seed)
    base = load_dmdiff_base(base_dir, device)
    quality = make_quality(cfg["musiq_weights_dir"])
    config = {
        # As given, not resolved: a workflow's relative path keeps the model folder the same
        # bytes in every working directory (callers may pass base_dir to load_dmdiff instead).
        "base_dir": str(base_dir),
        **{k: cfg[k] for k in ("rank_vae", "rank_unet", "svda", "use_fwhm", "map_size", "prompts")},
        "svda_hidden": cfg["svda_hidden"],
        "score": quality.name,
        "musiq_weights_dir": cfg["musiq_weights_dir"],
    }
    return DMDiff(base, config).to(device)


def _path_pools(model, y_all, x_all, n_real: int, fwhm_grid, cfg: dict) -> dict:
    """path -> (inputs, their degradation maps, targets, pool size), on the model's device.

    The negative path's pool is the real pairs only (see the module docstring).
    """
    import torch

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(model.device)

    y_t, x_t = tensor(y_all), tensor(x_all)
    with torch.no_grad():
        lowpass = gaussian_lowpass(x_t, float(cfg["lowpass_sigma"]))
        dmap_y = torch.cat([model.degradation(b, fwhm_grid) for b in y_t.split(64)])
        dmap_x = torch.cat([model.degradation(b, fwhm_grid) for b in x_t[:n_real].split(64)])
    return {
        "positive": (y_t, dmap_y, x_t, len(y_t)),
        "neutral": (y_t, dmap_y, lowpass, len(y_t)),
        "negative": (x_t, dmap_x, y_t, n_real),
    }


def _path_step(pools: dict, cfg: dict, term: PerceptualTerm | None):
    """The step: a path drawn from Cat(p_pos, p_neu, p_neg), then a batch from its pool."""
    import torch
    import torch.nn.functional as F

    from thincam.models.dmdiff.model import PATHS
    from thincam.models.training import Losses

    probs = torch.tensor([float(cfg[k]) for k in ("p_pos", "p_neu", "p_neg")], dtype=torch.float64)
    batch = int(cfg["batch_size"])

    def step(model, generator):
        path = PATHS[int(torch.multinomial(probs, 1, generator=generator))]
        inputs, dmap, target, pool = pools[path]
        idx = torch.randint(pool, (batch,), generator=generator).to(inputs.device)
        out = model(inputs[idx], dmap[idx], path)
        l2 = F.mse_loss(out, target[idx])
        perceptual = None if term is None else term.fn(out, target[idx])
        loss = l2 if term is None else l2 + term.weight * perceptual
        return Losses(loss, l2, perceptual, path)

    return step
