"""Distil DDNM+ into the NSDD student from the teacher's target shards alone (no ground truth).

Shards are streamed one at a time per epoch, in an order that is a pure function of (seed, epoch),
so a run killed after a checkpoint resumes at the same batch and ends bit-identical (on the same
machine and thread count) to an uninterrupted one. The output folder is complete only when its
marker (``distill.json``) exists; it is written last, atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from thincam.errors import BadInputError, MissingWeightsError

log = logging.getLogger(__name__)

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
MARKER = "distill.json"
CHECKPOINT = "checkpoint.pt"
ANCHOR_RTOL = 1e-3
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def _check_cfg(cfg: dict) -> dict:
    missing = [key for key in CFG_KEYS if key not in cfg]
    if missing:
        raise BadInputError(f"nsdd config is missing keys {missing}")
    for key in ("steps", "batch_size", "checkpoint_every"):
        if int(cfg[key]) < 1:
            raise BadInputError(f"nsdd config {key} must be >= 1, got {cfg[key]}")
    if float(cfg["lpips_weight"]) < 0:
        raise BadInputError(f"nsdd config lpips_weight must be >= 0, got {cfg['lpips_weight']}")
    return {key: cfg[key] for key in CFG_KEYS}


def alexnet_lpips(weights_dir: str | os.PathLike, device: str = "cpu"):
    """LPIPS(alex) with its trunk from ``weights_dir`` ($TORCH_HOME layout: hub/checkpoints/<file>).

    The same folder as ``metrics.weights_dir``, so one weights folder serves metrics and losses.

    Loading the trunk ourselves, instead of letting torchvision download it, keeps the run offline
    and fails at once, naming the file, when the weights are not there.
    """
    import lpips
    import torch

    path = Path(weights_dir) / "hub" / "checkpoints" / ALEXNET_FILE
    if not path.is_file():
        raise MissingWeightsError(f"LPIPS trunk weights not found: {path}")
    with warnings.catch_warnings():  # lpips calls torchvision's deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        metric = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    trunk = {}
    for name, slice_ in metric.net.named_children():
        for idx, _ in slice_.named_children():
            for param in ("weight", "bias"):
                key = f"features.{idx}.{param}"
                if key in state:
                    trunk[f"{name}.{idx}.{param}"] = state[key]
    metric.net.load_state_dict(trunk, strict=True)
    metric.requires_grad_(False)
    return metric.eval().to(device)


def _fingerprint(shard_paths, operator, prior_hash, cfg, seed) -> str:
    """Identity of a run: a checkpoint from other inputs must not be resumed."""
    blob = json.dumps(
        {
            "shards": [str(Path(p).resolve()) for p in shard_paths],
            "operator": operator,
            "prior": prior_hash,
            "cfg": cfg,
            "seed": seed,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _order(seed: int, epoch: int, *key: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, *key]).permutation(n)


def _atomic_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_bytes(path, buffer.getvalue())


def _load_checkpoint(path: Path, fingerprint: str):
    import torch

    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:  # only a cache: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to a run with other inputs", path)
        return None
    return state


def _check_shard(path: str, arrays: dict, physics) -> None:
    """Reject a shard with non-finite values or whose anchor is not A+y for this operator."""
    import torch

    for name in ("y", "anchor", "target"):
        if not np.isfinite(arrays[name]).all():
            raise BadInputError(f"{path}: dataset {name!r} has non-finite values")
    if len(arrays["y"]):
        device = physics.H.device
        y = torch.from_numpy(arrays["y"][:1]).to(device)
        anchor = torch.from_numpy(arrays["anchor"][:1]).to(device)
        if y.shape[-2:] != tuple(physics.sensor_shape):
            raise BadInputError(f"{path}: y is {tuple(y.shape[-2:])}, the operator's sensor {physics.sensor_shape}")
        with torch.no_grad():
            expected = physics.A_dagger(y)
        if expected.shape != anchor.shape:
            raise BadInputError(f"{path}: anchor is {tuple(anchor.shape)}, A+y {tuple(expected.shape)}")
        err = torch.linalg.vector_norm(expected - anchor) / torch.linalg.vector_norm(anchor)
        if float(err) > ANCHOR_RTOL:
            raise BadInputError(f"{path}: anchor differs from A+y of this operator (relative {float(err):.2e})")


def _write_curve(out: Path, rows: list[tuple]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", "loss", "l2", "lpips"])
    for step, loss, l2, perceptual in rows:
        writer.writerow([step, repr(loss), repr(l2), "" if perceptual is None else repr(perceptual)])
    _atomic_bytes(out / "training_curve.csv", text.getvalue().encode())

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps = [row[0] for row in rows]
    ax.plot(steps, [row[1] for row in rows], lw=0.8, label="loss")
    if rows and rows[0][3] is not None:
        ax.plot(steps, [row[2] for row in rows], lw=0.8, label="L2")
        ax.legend()
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("NSDD distillation")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    _atomic_bytes(out / "training_curve.png", png.getvalue())


def _save_model(student, out: Path) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=".model.", dir=out))
    try:
        student.save_pretrained(tmp)
        if (out / "model").exists():
            shutil.rmtree(out / "model")
        os.replace(tmp, out / "model")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _train_step(student, physics, optimizer, perceptual, lpips_weight, batch):
    """One AdamW step; returns (loss, l2, lpips or None) as Python floats."""
    import torch.nn.functional as F

    y, anchor, target = batch
    xhat = student(y, physics, anchor=anchor)
    l2 = F.mse_loss(xhat, target)
    loss = l2
    lp = None
    if perceptual is not None:
        lp = perceptual(2.0 * xhat - 1.0, 2.0 * target - 1.0).mean()
        loss = l2 + lpips_weight * lp
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), float(l2.detach()), None if lp is None else float(lp.detach())


def distill_nsdd(
    shard_paths: list[str],
    psf_path: str,
    operator: dict,
    prior_path: str,
    out_dir: str,
    cfg: dict,
    seed: int,
    device: str = "cpu",
    checkpoint_path: str | None = None,
) -> None:
    """Train the student on the DDNM+ targets; writes model/, training_curve.{csv,png}, then distill.json.

    Shards are read by ``read_target_shards`` (checksums, and that they were made with this prior).
    ``checkpoint_path`` defaults to out_dir/checkpoint.pt (removed once the run is complete); keep
    it out of a workflow rule's declared outputs so a failed job's clean-up does not delete it.
    """
    import torch
    from tqdm import tqdm

    from thincam.data.h5io import json_attr, read_h5
    from thincam.data.shards import read_target_shards
    from thincam.models.nsdd import build_student
    from thincam.models.prior import load_prior, prior_id
    from thincam.physics import build_operator

    cfg = _check_cfg(cfg)
    shard_paths = [str(p) for p in shard_paths]
    if not shard_paths:
        raise BadInputError("distill_nsdd needs at least one target shard")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    ckpt_path = Path(checkpoint_path) if checkpoint_path else out / CHECKPOINT
    ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(seed)
    # The teacher recorded its full operator in every shard; ``operator`` may override keys.
    _, shard_attrs = read_h5(shard_paths[0], names=[], contract="targets")
    operator = {**json_attr(shard_attrs, "operator"), **dict(operator)}
    physics = build_operator(psf_path, operator, device=device)
    prior_unet, scheduler = load_prior(prior_path)
    prior_hash = prior_id(prior_path)
    student = build_student(prior_unet, scheduler, cfg).to(device)
    del prior_unet
    optimizer = torch.optim.AdamW(student.parameters(), lr=float(cfg["lr"]))
    lpips_weight = float(cfg["lpips_weight"])
    perceptual = None
    if cfg["lpips_weights_dir"] is None or lpips_weight == 0:
        log.info(
            "loss: L2 only (LPIPS off: lpips_weights_dir=%s, lpips_weight=%s)", cfg["lpips_weights_dir"], lpips_weight
        )
    else:
        perceptual = alexnet_lpips(cfg["lpips_weights_dir"], device)
        log.info("loss: L2 + %s * LPIPS(alex) with trunk weights from %s", lpips_weight, cfg["lpips_weights_dir"])

    fingerprint = _fingerprint(shard_paths, operator, prior_hash, cfg, seed)
    steps, batch_size = int(cfg["steps"]), int(cfg["batch_size"])
    step, epoch, shard_pos, batch_pos, rows = 0, 0, 0, 0, []
    state = _load_checkpoint(ckpt_path, fingerprint)
    if state is not None:
        student.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        step, (epoch, shard_pos, batch_pos), rows = state["step"], state["position"], state["curve"]
        log.info("resuming from %s at step %d", ckpt_path, step)

    student.train()
    bar = tqdm(total=steps, initial=step, desc="distill_nsdd", mininterval=2.0)
    while step < steps:
        step_at_epoch_start, whole_epoch = step, shard_pos == 0 and batch_pos == 0
        order = _order(seed, epoch, n=len(shard_paths))
        reader = read_target_shards([shard_paths[i] for i in order[shard_pos:]], prior_id=prior_hash)
        for k, (path, arrays) in enumerate(reader, start=shard_pos):
            _check_shard(path, arrays, physics)
            tensors = [torch.from_numpy(arrays[name]).to(device) for name in ("y", "anchor", "target")]
            perm = _order(seed, epoch, int(order[k]), n=len(tensors[0]))
            batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
            for j in range(batch_pos, len(batches)):
                idx = torch.from_numpy(batches[j]).to(device)
                loss, l2, lp = _train_step(
                    student, physics, optimizer, perceptual, lpips_weight, [t[idx] for t in tensors]
                )
                step += 1
                if not np.isfinite(loss):
                    raise BadInputError(f"NSDD loss is {loss} at step {step} (lr {cfg['lr']} too high?)")
                rows.append((step, loss, l2, lp))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                if step % int(cfg["checkpoint_every"]) == 0 and step < steps:
                    _save_checkpoint(
                        ckpt_path,
                        {
                            "fingerprint": fingerprint,
                            "step": step,
                            "position": (epoch, k, j + 1),
                            "model": student.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "torch_rng": torch.get_rng_state(),
                            "curve": rows,
                        },
                    )
                if step == steps:
                    break
            batch_pos = 0
            if step == steps:
                break
        if step == step_at_epoch_start and whole_epoch:
            raise BadInputError(f"target shards hold no samples: {shard_paths}")
        shard_pos = 0
        epoch += 1
    bar.close()

    student.eval()
    _save_model(student, out)
    _write_curve(out, rows)
    marker = {
        "cfg": cfg,
        "seed": seed,
        "device": device,
        "shards": shard_paths,
        "operator": operator,
        "prior": str(prior_path),
        "prior_id": prior_hash,
        "steps": step,
        "final_loss": rows[-1][1],
        "loss": "l2" if perceptual is None else f"l2 + {lpips_weight} * lpips(alex)",
    }
    _atomic_bytes(out / MARKER, json.dumps(marker, indent=2, sort_keys=True, default=str).encode())
    ckpt_path.unlink(missing_ok=True)
    log.info("NSDD student written to %s (%d steps, final loss %.4g)", out, step, rows[-1][1])
