"""The NSDD rules: DDNM+ teacher target shards, then the student distilled from them alone.

Target shards: each image's starting noise and step noise come from its own seed, so a shard's
targets do not depend on the shard count or batch size and a re-run gives the same file. Ground
truth ``x`` is never read: the student learns from the teacher alone. Distillation resumes from
its checkpoint after a kill and ends bit-identical; its folder is complete only with its marker.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import atomic_directory, write_bytes_atomic
from thincam.data.h5io import array_sha256, atomic_write_h5, json_attr, n_rows, read_h5, read_rows
from thincam.data.shards import image_seed, read_target_shards, teacher_params
from thincam.errors import BadInputError
from thincam.models.prior import load_prior, prior_id
from thincam.physics.operators import range_null_residual
from thincam.stages.common import load_operator

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


def ddnm_targets(
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    operator: Mapping[str, Any],
    prior_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    shard: int,
    n_shards: int,
    teacher: Mapping[str, Any],
    base_seed: int,
    dataset: str,
    batch_size: int = 8,
    device: str = "cpu",
    bf16: bool = False,
) -> None:
    """Write shard ``shard`` of ``n_shards``: images i with i % n_shards == shard of the split file.

    Datasets: ``y``, ``anchor`` (A+y), ``target`` (DDNM+ of y), ``index``. ``operator`` overrides the
    data file's recorded operator key by key (the teacher's A+ lam is a tuning knob; the geometry
    comes from the data).
    """
    import torch

    from thincam.logs import progress
    from thincam.solvers.ddnm import ddnm_plus, initial_noise, step_generators

    if not 0 <= shard < n_shards:
        raise BadInputError(f"shard {shard} is not in 0..{n_shards - 1}")
    params = teacher_params(teacher)
    # Only this shard's rows are read: a training split can be larger than memory.
    mine = np.flatnonzero(np.arange(n_rows(data_path, "y")) % n_shards == shard)
    arrays, attrs = read_rows(data_path, ["y", "index"], mine, contract="dataset")
    y_mine, index_mine = arrays["y"].astype(np.float32), arrays["index"]
    spec = {**json_attr(attrs, "operator"), **dict(operator)} if "operator" in attrs else dict(operator)
    if list(spec.get("sensor_shape", y_mine.shape[-2:])) != list(y_mine.shape[-2:]):
        raise BadInputError(
            f"{data_path}: y has sensor shape {list(y_mine.shape[-2:])} but the operator says {spec['sensor_shape']}"
        )
    physics = load_operator(psf_path, spec, device=device)
    unet, scheduler = load_prior(prior_path, device=device)

    scene = (y_mine.shape[1], *spec["scene_shape"])
    anchors, targets = [], []
    for start in progress(range(0, len(y_mine), batch_size), f"targets {dataset} shard {shard}"):
        y = torch.from_numpy(y_mine[start : start + batch_size]).to(device)
        seeds = [image_seed(base_seed, dataset, i) for i in index_mine[start : start + batch_size]]
        with torch.no_grad():
            anchors.append(physics.A_dagger(y).cpu().numpy())
        x_T = initial_noise((len(seeds), *scene), seeds, device=device)
        target = ddnm_plus(
            physics,
            y,
            unet,
            scheduler,
            generator=step_generators(seeds),
            x_T=x_T,
            dtype=torch.bfloat16 if bf16 else None,
            **params,
        )
        targets.append(target.cpu().numpy())
    empty = np.zeros((0, *scene), np.float32)
    anchor = np.concatenate(anchors).astype(np.float32) if anchors else empty
    target = np.concatenate(targets).astype(np.float32) if targets else empty
    if len(target):
        with torch.no_grad():
            residual = range_null_residual(physics, torch.from_numpy(np.concatenate([anchor, target])).to(device))
    else:
        residual = float("nan")
    atomic_write_h5(
        out_path,
        {"y": y_mine, "anchor": anchor, "target": target, "index": index_mine},
        attrs={
            "seed": int(base_seed),
            "teacher": params,
            "prior_id": prior_id(prior_path),
            "dataset": dataset,
            "operator": spec,
            "shard": int(shard),
            "n_shards": int(n_shards),
            "range_null_residual": residual,
            "source_sha256": array_sha256(arrays["y"]),
        },
        contract="targets",
    )


@dataclass
class _Run:
    """Everything a distillation run holds between its phases."""

    cfg: dict
    shard_paths: list[str]
    operator: dict
    physics: Any
    student: Any
    optimizer: Any
    perceptual: Any
    prior_hash: str
    fingerprint: str
    step: int = 0
    position: tuple[int, int, int] = (0, 0, 0)  # (epoch, shard in the epoch's order, batch)
    curve: list[tuple] = field(default_factory=list)


def _prepare(shard_paths, psf_path, operator, prior_path, cfg, seed, device) -> _Run:
    """The operator the teacher recorded (with ``operator`` overrides), the student, its optimizer."""
    import torch

    from thincam.models import distill
    from thincam.models.losses import training_term
    from thincam.models.nsdd import build_student

    torch.manual_seed(seed)
    _, shard_attrs = read_h5(shard_paths[0], names=[], contract="targets")
    operator = {**json_attr(shard_attrs, "operator"), **dict(operator)}
    physics = load_operator(psf_path, operator, device=device)
    prior_unet, scheduler = load_prior(prior_path)
    prior_hash = prior_id(prior_path)
    student = build_student(prior_unet, scheduler, cfg, operator_identity=physics.identity()).to(device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=float(cfg["lr"]))
    # LPIPS when its weights are there, else the weight-free term when weighted, else L2 alone.
    perceptual = training_term(cfg["lpips_weights_dir"], cfg["lpips_weight"], cfg["weight_free_weight"], device)
    log.info(
        "loss: %s (lpips_weights_dir=%s, lpips_weight=%s, weight_free_weight=%s)",
        _loss_name(perceptual), cfg["lpips_weights_dir"], cfg["lpips_weight"], cfg["weight_free_weight"],
    )  # fmt: skip
    fingerprint = distill.run_fingerprint(shard_paths, operator, prior_hash, cfg, seed)
    return _Run(cfg, shard_paths, operator, physics, student, optimizer, perceptual, prior_hash, fingerprint)


def _loss_name(term) -> str:
    return "l2" if term is None else term.describe()


def _save_checkpoint(path: Path, run: _Run) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(
        {
            "fingerprint": run.fingerprint,
            "step": run.step,
            "position": run.position,
            "model": run.student.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "curve": run.curve,
        },
        buffer,
    )
    write_bytes_atomic(buffer.getvalue(), path)


def _resume(path: Path, run: _Run) -> None:
    """Continue from a checkpoint of this very run; an unreadable or foreign one is ignored."""
    import torch

    if not path.exists():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as err:  # only a cache: start over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, err)
        return
    if state.get("fingerprint") != run.fingerprint:
        log.warning("ignoring checkpoint %s: it belongs to a run with other inputs", path)
        return
    run.student.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    run.step, run.position, run.curve = state["step"], tuple(state["position"]), state["curve"]
    log.info("resuming from %s at step %d", path, run.step)


def _train(run: _Run, seed: int, device: str, checkpoint: Path) -> None:
    """Epochs over the shards in seeded order until ``steps``, checkpointing every few steps."""
    import torch

    from thincam.logs import progress
    from thincam.models import distill

    cfg = run.cfg
    steps, batch_size = int(cfg["steps"]), int(cfg["batch_size"])
    epoch, shard_pos, batch_pos = run.position
    run.student.train()
    bar = progress(desc="distill_nsdd", total=steps, initial=run.step)
    while run.step < steps:
        step_at_epoch_start, whole_epoch = run.step, shard_pos == 0 and batch_pos == 0
        order = distill.epoch_order(seed, epoch, n=len(run.shard_paths))
        reader = read_target_shards([run.shard_paths[i] for i in order[shard_pos:]], prior_id=run.prior_hash)
        for k, (path, arrays) in enumerate(reader, start=shard_pos):
            distill.check_shard(path, arrays, run.physics)
            tensors = [torch.from_numpy(arrays[name]).to(device) for name in ("y", "anchor", "target")]
            perm = distill.epoch_order(seed, epoch, int(order[k]), n=len(tensors[0]))
            batches = [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
            for j in range(batch_pos, len(batches)):
                idx = torch.from_numpy(batches[j]).to(device)
                loss, l2, lp = distill.train_step(
                    run.student, run.physics, run.optimizer, run.perceptual, [t[idx] for t in tensors]
                )
                run.step += 1
                if not np.isfinite(loss):
                    raise BadInputError(f"NSDD loss is {loss} at step {run.step} (lr {cfg['lr']} too high?)")
                run.curve.append((run.step, loss, l2, lp))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                if run.step % int(cfg["checkpoint_every"]) == 0 and run.step < steps:
                    run.position = (epoch, k, j + 1)
                    _save_checkpoint(checkpoint, run)
                if run.step == steps:
                    break
            batch_pos = 0
            if run.step == steps:
                break
        if run.step == step_at_epoch_start and whole_epoch:
            raise BadInputError(f"target shards hold no samples: {run.shard_paths}")
        shard_pos = 0
        epoch += 1
    bar.close()
    run.student.eval()


def _write_curve(out: Path, rows: list[tuple]) -> None:
    """training_curve.csv (step, loss, l2, perceptual) and its plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["step", "loss", "l2", "perceptual"])
    for step, loss, l2, perceptual in rows:
        writer.writerow([step, repr(loss), repr(l2), "" if perceptual is None else repr(perceptual)])
    write_bytes_atomic(text.getvalue().encode(), out / "training_curve.csv")

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
    write_bytes_atomic(png.getvalue(), out / "training_curve.png")


def _write_outputs(run: _Run, out: Path, prior_path, seed: int, device: str) -> None:
    """model/, the curve, then the marker last: the folder is complete only with the marker."""
    from thincam.models.nsdd import MARKER

    with atomic_directory(out / "model") as tmp:
        run.student.save_pretrained(tmp)
    _write_curve(out, run.curve)
    marker = {
        "cfg": run.cfg,
        "seed": seed,
        "device": device,
        "shards": run.shard_paths,
        "operator": run.operator,
        "prior": str(prior_path),
        "prior_id": run.prior_hash,
        "steps": run.step,
        "final_loss": run.curve[-1][1],
        "loss": _loss_name(run.perceptual),
    }
    write_bytes_atomic(json.dumps(marker, indent=2, sort_keys=True, default=str).encode(), out / MARKER)


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
    bf16: bool = False,
) -> None:
    """Train the student on the DDNM+ targets; writes model/, training_curve.{csv,png}, then distill.json.

    Shards are read by ``read_target_shards`` (checksums, and that they were made with this prior).
    ``checkpoint_path`` defaults to out_dir/checkpoint.pt (removed once the run is complete); keep
    it out of a workflow rule's declared outputs so a failed job's clean-up does not delete it.
    """
    from thincam.models import distill
    from thincam.models.nsdd import MARKER

    cfg = distill.check_cfg(cfg)
    shard_paths = [str(p) for p in shard_paths]
    if not shard_paths:
        raise BadInputError("distill_nsdd needs at least one target shard")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    checkpoint = Path(checkpoint_path) if checkpoint_path else out / CHECKPOINT
    checkpoint.parent.mkdir(parents=True, exist_ok=True)

    run = _prepare(shard_paths, psf_path, operator, prior_path, cfg, seed, device)
    run.student.bf16 = bool(bf16)  # bfloat16 autocast of the prior UNet's forward (config key bf16)
    _resume(checkpoint, run)
    _train(run, seed, device, checkpoint)
    _write_outputs(run, out, prior_path, seed, device)
    checkpoint.unlink(missing_ok=True)
    log.info("NSDD student written to %s (%d steps, final loss %.4g)", out, run.step, run.curve[-1][1])
