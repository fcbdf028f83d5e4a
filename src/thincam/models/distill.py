"""The mechanics of distilling DDNM+ into the NSDD student: config, batch order, checks, one step.

Shards are streamed one at a time per epoch, in an order that is a pure function of (seed, epoch),
so a checkpoint needs only the reader's position to resume at the same batch (the training loop and
its checkpoints: thincam.models.training). The files are the stage's business: ``thincam.stages.nsdd``.
"""

from __future__ import annotations

import numpy as np

from thincam.errors import BadInputError

CFG_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "t_fixed",
    "adapter_channels",
    "mode",
    "checkpoint_every",
    "lpips_weight",
    "lpips_weights_dir",
)
# Optional keys and their defaults: 0 keeps NSDD's L2-only default without LPIPS weights.
CFG_OPTIONAL = {"weight_free_weight": 0.0}
# A shard's stored anchor must equal A+y of the student's operator to this relative error, over
# its first rows as a batch: the teacher computed them in batches, and a batch of one takes other
# FFT kernels, whose round-off a 30-step CG A+ with lam 1e-4 amplifies to 1.3e-3 (DiffuserCam).
ANCHOR_RTOL = 1e-3
ANCHOR_CHECK_ROWS = 8


def check_cfg(cfg: dict) -> dict:
    """Exactly the known keys, with positive counts; a missing key or bad value names itself."""
    missing = [key for key in CFG_KEYS if key not in cfg]
    if missing:
        raise BadInputError(f"nsdd config is missing keys {missing}")
    for key in ("steps", "batch_size", "checkpoint_every"):
        if int(cfg[key]) < 1:
            raise BadInputError(f"nsdd config {key} must be >= 1, got {cfg[key]}")
    from thincam.models.training import with_schedule_keys

    cfg = {**CFG_OPTIONAL, **with_schedule_keys(cfg, (*CFG_KEYS, *CFG_OPTIONAL))}
    for key in ("lpips_weight", "weight_free_weight"):
        if float(cfg[key]) < 0:
            raise BadInputError(f"nsdd config {key} must be >= 0, got {cfg[key]}")
    return cfg


def epoch_order(seed: int, epoch: int, *key: int, n: int) -> np.ndarray:
    """The permutation of ``n`` shards (or of a shard's samples, keyed by the shard) in an epoch."""
    return np.random.default_rng([seed, epoch, *key]).permutation(n)


def check_shard(path: str, arrays: dict, physics) -> None:
    """Reject a shard with non-finite values or whose anchor is not A+y for this operator."""
    import torch

    for name in ("y", "anchor", "target"):
        if not np.isfinite(arrays[name]).all():
            raise BadInputError(f"{path}: dataset {name!r} has non-finite values")
    if len(arrays["y"]):
        device = physics.H.device
        y = torch.from_numpy(arrays["y"][:ANCHOR_CHECK_ROWS]).to(device)
        anchor = torch.from_numpy(arrays["anchor"][:ANCHOR_CHECK_ROWS]).to(device)
        if y.shape[-2:] != tuple(physics.sensor_shape):
            raise BadInputError(f"{path}: y is {tuple(y.shape[-2:])}, the operator's sensor {physics.sensor_shape}")
        with torch.no_grad():
            expected = physics.A_dagger(y)
        if expected.shape != anchor.shape:
            raise BadInputError(f"{path}: anchor is {tuple(anchor.shape)}, A+y {tuple(expected.shape)}")
        err = torch.linalg.vector_norm(expected - anchor) / torch.linalg.vector_norm(anchor)
        if float(err) > ANCHOR_RTOL:
            raise BadInputError(f"{path}: anchor differs from A+y of this operator (relative {float(err):.2e})")


def student_losses(student, physics, term, batch):
    """The student's loss on (y, anchor, target): L2 to the teacher's target, plus ``term`` (a
    :class:`thincam.models.losses.PerceptualTerm`, or None) weighted."""
    import torch.nn.functional as F

    from thincam.models.training import Losses

    y, anchor, target = batch
    xhat = student(y, physics, anchor=anchor)
    l2 = F.mse_loss(xhat, target)
    if term is None:
        return Losses(l2, l2)
    perceptual = term.fn(xhat, target)
    return Losses(l2 + term.weight * perceptual, l2, perceptual)
