"""The NSDD rules: DDNM+ teacher target shards, then the student distilled from them alone.

Target shards: each image's starting noise and step noise come from its own seed, so a shard's
targets do not depend on the shard count or batch size and a re-run gives the same file. Ground
truth ``x`` is never read: the student learns from the teacher alone. Distillation resumes from
its checkpoint after a kill and ends bit-identical (thincam.models.training); its folder is
complete only with its record ``training.json``, written last.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import atomic_directory
from thincam.data.h5io import array_sha256, atomic_write_h5, json_attr, n_rows, read_h5, read_rows
from thincam.data.shards import image_seed, read_target_shards, teacher_params
from thincam.errors import BadInputError
from thincam.models.prior import load_prior, prior_id
from thincam.physics.operators import range_null_residual
from thincam.stages.common import launched, load_operator

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"


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
    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.sampling import initial_noise, step_generators

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


class _ShardBatches:
    """The student's batches: the target shards one at a time, epoch by epoch, in an order that is
    a pure function of (seed, epoch); its position is all a checkpoint needs to resume."""

    def __init__(self, shard_paths: list[str], prior_hash: str, physics, seed: int, batch_size: int, device: str):
        if sum(n_rows(path, "y") for path in shard_paths) == 0:
            raise BadInputError(f"target shards hold no samples: {shard_paths}")
        self.paths, self.prior_hash, self.physics = shard_paths, prior_hash, physics
        self.seed, self.batch_size, self.device = seed, batch_size, device
        self.position = (0, 0, 0)  # (epoch, shard in the epoch's order, batch in the shard)
        self._loaded: tuple | None = None  # (epoch, shard position, tensors, batches)

    def state_dict(self) -> dict:
        return {"position": list(self.position)}

    def load_state_dict(self, state: dict) -> None:
        self.position, self._loaded = tuple(int(v) for v in state["position"]), None

    def next(self) -> list:
        import torch

        from thincam.models import distill

        while True:
            epoch, k, j = self.position
            if k == len(self.paths):
                self.position = (epoch + 1, 0, 0)
                continue
            if self._loaded is None or self._loaded[:2] != (epoch, k):
                shard = int(distill.epoch_order(self.seed, epoch, n=len(self.paths))[k])
                ((path, arrays),) = read_target_shards([self.paths[shard]], prior_id=self.prior_hash)
                distill.check_shard(path, arrays, self.physics)
                tensors = [torch.from_numpy(arrays[name]).to(self.device) for name in ("y", "anchor", "target")]
                perm = distill.epoch_order(self.seed, epoch, shard, n=len(tensors[0]))
                batches = [perm[i : i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
                self._loaded = (epoch, k, tensors, batches)
            tensors, batches = self._loaded[2:]
            if j == len(batches):
                self.position = (epoch, k + 1, 0)
                continue
            self.position = (epoch, k, j + 1)
            idx = torch.from_numpy(batches[j]).to(self.device)
            return [t[idx] for t in tensors]


def _write_outputs(out: Path, student, trained, facts: dict) -> None:
    """model/, the training files, then the record last: the folder is complete only with it."""
    from thincam.models.training import write_training_files

    with atomic_directory(out / "model") as tmp:
        student.save_pretrained(tmp)
    write_training_files(out, [trained], facts, f"NSDD distillation ({facts['loss']})")


@launched
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
    """Train the student on the DDNM+ targets; writes model/ and the training files
    (``loss.csv``, ``loss.png``, then ``training.json``, the marker of a complete folder).

    Shards are read by ``read_target_shards`` (checksums, and that they were made with this prior).
    ``checkpoint_path`` (a folder) defaults to out_dir/checkpoint (removed once the run is
    complete); keep it out of a workflow rule's declared outputs so that a failed job's clean-up
    does not delete it.
    """
    import torch

    from thincam.models import distill, training
    from thincam.models.losses import training_term
    from thincam.models.nsdd import MARKER, build_student

    cfg = distill.check_cfg(cfg)
    schedule = training.schedule_from(cfg, "nsdd.student", {"weight_decay": 0.01}, bf16=bf16)
    shard_paths = [str(p) for p in shard_paths]
    if not shard_paths:
        raise BadInputError("distill_nsdd needs at least one target shard")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    checkpoint = Path(checkpoint_path) if checkpoint_path else out / CHECKPOINT

    torch.manual_seed(seed)
    _, shard_attrs = read_h5(shard_paths[0], names=[], contract="targets")
    operator = {**json_attr(shard_attrs, "operator"), **dict(operator)}
    physics = load_operator(psf_path, operator, device=device)
    prior_unet, scheduler = load_prior(prior_path)
    prior_hash = prior_id(prior_path)
    student = build_student(prior_unet, scheduler, cfg, operator_identity=physics.identity()).to(device)
    # LPIPS when its weights are there, else the weight-free term when weighted, else L2 alone.
    term = training_term(cfg["lpips_weights_dir"], cfg["lpips_weight"], cfg["weight_free_weight"], device)
    loss_name = "l2" if term is None else term.describe()
    log.info(
        "loss: %s (lpips_weights_dir=%s, lpips_weight=%s, weight_free_weight=%s)",
        loss_name, cfg["lpips_weights_dir"], cfg["lpips_weight"], cfg["weight_free_weight"],
    )  # fmt: skip
    batches = _ShardBatches(shard_paths, prior_hash, physics, seed, int(cfg["batch_size"]), device)
    run_id = training.fingerprint(
        shards=[str(Path(p).resolve()) for p in shard_paths], operator=operator, prior=prior_hash,
        cfg=cfg, seed=seed, bf16=bool(bf16),
    )  # fmt: skip
    trained = training.train(
        student, lambda model, _: distill.student_losses(model, physics, term, batches.next()), schedule,
        phase="nsdd", seed=seed, run_id=run_id, checkpoint_dir=checkpoint, device=device, data_state=batches,
    )  # fmt: skip
    facts = {
        "cfg": cfg,
        "seed": seed,
        "device": device,
        "shards": shard_paths,
        "operator": operator,
        "prior": str(prior_path),
        "prior_id": prior_hash,
        "loss": loss_name,
    }
    if trained.main_process:
        _write_outputs(out, student, trained, facts)
    log.info("NSDD student written to %s (%d steps, final loss %.4g)", out, trained.record["steps"], trained.record["final_loss"])
