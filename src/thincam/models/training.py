"""The one training loop every model here goes through: prior, UNet baseline, the DMDiff base's VAE
and UNet, DMDiff and the NSDD student.

Hugging Face ``accelerate`` does what the diffusers and peft training scripts use it for: bf16
autocast, gradient accumulation, several processes (one per GPU) in one job and the checkpoint
(``save_state`` / ``load_state``: weights, optimizer, learning-rate schedule, EMA, random states).
This module adds what they leave to each script: warm-up + cosine decay, an EMA of the weights
(diffusers' ``EMAModel``), gradient clipping, one loss table and one record per model with the
same columns, one progress line per interval, the loss-curve figure, and resume: a run killed at
any step and started again continues from its last checkpoint and ends with the same bits as an
uninterrupted run (CPU, same thread count), because every random draw of a step comes from the
one generator the checkpoint carries.

A trainer gives :func:`train` its module and a ``step`` function ``step(model, generator) ->
Losses``; the step draws its batch from ``generator`` and calls ``model`` (the prepared module:
with several processes its forward is the one that synchronises gradients).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.atomic import write_bytes_atomic
from thincam.errors import BadInputError

log = logging.getLogger(__name__)

# The files every trained model's folder holds, whatever the model.
LOSS_CSV = "loss.csv"
LOSS_PNG = "loss.png"
RECORD_JSON = "training.json"
LOSS_COLUMNS = ("phase", "step", "lr", "loss", "l2", "perceptual", "path")
FINGERPRINT_JSON = "fingerprint.json"
LR_DECAYS = ("constant", "cosine")


@dataclass(frozen=True)
class Schedule:
    """How one model is trained; each field is a config key of the model's training block."""

    steps: int
    lr: float
    warmup_steps: int = 0
    lr_decay: str = "constant"  # "constant" or "cosine" (to 0 at the last step, warm-up included)
    ema_decay: float = 0.0  # 0: no EMA; else diffusers EMAModel with this decay (its warm-up on)
    clip_grad_norm: float = 0.0  # 0: no clipping
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    grad_accum: int = 1  # micro-batches per optimizer step
    checkpoint_every: int = 100  # optimizer steps between checkpoints
    bf16: bool = False  # bfloat16 autocast of the step

    def lr_factor(self, step: int) -> float:
        """The learning rate's multiplier at optimizer step ``step`` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        if self.lr_decay == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
        return warm


SCHEDULE_KEYS = tuple(name for name in Schedule.__dataclass_fields__ if name not in ("bf16",))


def with_schedule_keys(cfg: Mapping[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """``cfg`` reduced to a model's ``known`` keys and the schedule keys it sets."""
    return {key: cfg[key] for key in (*known, *SCHEDULE_KEYS) if key in cfg}


def schedule_from(cfg: Mapping[str, Any], what: str, defaults: Mapping[str, Any] | None = None, **fixed) -> Schedule:
    """The :class:`Schedule` of a model's training block ``cfg``: its keys over ``defaults``.

    ``fixed`` names fields the caller sets itself (``steps`` of a two-phase model, ``bf16``).
    Wrong values name their key under ``what`` (e.g. ``priors.faces.train``).
    """
    values = {**dict(defaults or {}), **{k: cfg[k] for k in SCHEDULE_KEYS if k in cfg}, **fixed}
    try:
        schedule = Schedule(**values)
    except TypeError as err:
        raise BadInputError(f"{what}: {err}") from None
    checks = {
        "steps": schedule.steps >= 1,
        "lr": schedule.lr > 0,
        "warmup_steps": schedule.warmup_steps >= 0,
        "lr_decay": schedule.lr_decay in LR_DECAYS,
        "ema_decay": 0 <= schedule.ema_decay < 1,
        "clip_grad_norm": schedule.clip_grad_norm >= 0,
        "weight_decay": schedule.weight_decay >= 0,
        "grad_accum": schedule.grad_accum >= 1,
        "checkpoint_every": schedule.checkpoint_every >= 1,
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        shown = ", ".join(f"{what}.{key} = {getattr(schedule, key)!r}" for key in bad)
        raise BadInputError(
            f"{shown}: steps, grad_accum, checkpoint_every >= 1; lr > 0; warmup_steps, clip_grad_norm, "
            f"weight_decay >= 0; 0 <= ema_decay < 1; lr_decay one of {list(LR_DECAYS)}"
        )
    return replace(schedule, steps=int(schedule.steps), lr=float(schedule.lr))


@dataclass
class Losses:
    """What one step reports: ``loss`` (a tensor, what is minimised) and its parts as logged."""

    loss: Any
    l2: Any = None
    perceptual: Any = None
    path: str = ""


@dataclass
class Trained:
    """A finished phase: its loss rows (one per optimizer step) and what its record says."""

    phase: str
    rows: list[tuple]
    record: dict[str, Any]
    main_process: bool = True


@dataclass
class _Progress:
    """The loop's own state in a checkpoint: step, loss rows and the batch generator's state."""

    generator: Any
    step: int = 0
    rows: list = field(default_factory=list)
    seconds: float = 0.0

    def state_dict(self) -> dict:
        return {"step": self.step, "rows": self.rows, "seconds": self.seconds, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.rows = [tuple(row) for row in state["rows"]]
        self.generator.set_state(state["generator"])


def fingerprint(**parts: Any) -> str:
    """SHA-256 of a run's inputs (arrays by their bytes): a checkpoint of other inputs is not resumed."""
    digest = hashlib.sha256()
    for key in sorted(parts):
        value = parts[key]
        digest.update(key.encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _accelerator(schedule: Schedule, device: str):
    """A fresh Accelerator for this phase (its bf16 choice may differ from the last phase's)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    # accelerate logs every file of every checkpoint at INFO: one line per checkpoint is ours.
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    if PartialState._shared_state and PartialState().num_processes == 1:
        # One process runs several phases (the base's VAE then UNet, a test session): the
        # singleton would refuse a second mixed-precision setting. accelerate's own tests reset it so.
        AcceleratorState._reset_state()
    return Accelerator(
        cpu=device == "cpu",
        mixed_precision="bf16" if schedule.bf16 else "no",
        gradient_accumulation_steps=schedule.grad_accum,
        step_scheduler_with_optimizer=False,
    )


def _load_checkpoint(accelerator, folder: Path, run_id: str) -> bool:
    """Load the checkpoint of this very run from ``folder`` (or the copy a kill mid-swap left
    beside it); anything else is said and ignored: a checkpoint is only a cache."""
    for candidate in (folder, _beside(folder, "old")):
        if not candidate.exists():
            continue
        try:
            recorded = json.loads((candidate / FINGERPRINT_JSON).read_text())["fingerprint"]
        except (ValueError, KeyError, OSError) as err:
            log.warning("ignoring incomplete or unreadable checkpoint %s (%s)", candidate, err)
            continue
        if recorded != run_id:
            log.warning("ignoring checkpoint %s: it belongs to a run with other inputs", candidate)
            continue
        accelerator.load_state(str(candidate))
        return True
    return False


def _beside(folder: Path, what: str) -> Path:
    return folder.with_name(f".{folder.name}.{what}")


def _save_checkpoint(accelerator, folder: Path, run_id: str) -> None:
    """accelerate's state written to a folder beside ``folder``, then swapped in: a kill at any
    point leaves a complete checkpoint (the new, the old, or the old kept beside)."""
    saving, old = _beside(folder, "saving"), _beside(folder, "old")
    if accelerator.is_main_process:
        shutil.rmtree(saving, ignore_errors=True)
        saving.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(saving), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (saving / FINGERPRINT_JSON).write_text(json.dumps({"fingerprint": run_id}) + "\n")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(saving, folder)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    log.info("checkpoint %s", folder)


def remove_checkpoint(folder: str | Path) -> None:
    """The checkpoint folder and what a kill may have left beside it."""
    folder = Path(folder)
    for path in (folder, _beside(folder, "saving"), _beside(folder, "old")):
        shutil.rmtree(path, ignore_errors=True)


def _process_seed(seed: int, rank: int) -> int:
    """Each process draws its own batches; process 0 draws what a one-process run draws."""
    return seed if rank == 0 else int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _number(value) -> float | None:
    if value is None:
        return None
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def train(
    module,
    step: Callable[[Any, Any], Losses],
    schedule: Schedule,
    *,
    phase: str,
    seed: int,
    run_id: str,
    checkpoint_dir: str | Path | None = None,
    parameters: Iterable | None = None,
    device: str = "cpu",
    keep_checkpoint: bool = False,
    data_state: Any = None,
) -> Trained:
    """Train ``module`` (its ``parameters``, default those requiring grad) for ``schedule.steps``
    optimizer steps of ``step``; resume from ``checkpoint_dir`` when it holds this ``run_id``.

    ``module`` ends in eval mode holding the EMA weights when an EMA is kept (what is saved and
    evaluated), the raw weights otherwise. The checkpoint folder is removed once the phase ends,
    unless ``keep_checkpoint``: a model trained in phases keeps each finished phase's checkpoint
    (a re-run after a kill in a later phase loads it at its last step and trains nothing) and
    calls :func:`remove_checkpoint` once its folder is written. ``data_state``: an object with
    ``state_dict`` / ``load_state_dict`` that the checkpoint carries too (a reader's position).
    """
    import torch
    from diffusers.training_utils import EMAModel

    from thincam.logs import progress

    accelerator = _accelerator(schedule, device)
    params = [p for p in (module.parameters() if parameters is None else parameters) if p.requires_grad]
    if not params:
        raise BadInputError(f"{phase}: nothing to train (no parameter requires grad)")
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=schedule.weight_decay)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: schedule.lr_factor(k))
    model, optimizer = accelerator.prepare(module, optimizer)
    accelerator.register_for_checkpointing(lr_schedule)
    ema = EMAModel(params, decay=schedule.ema_decay, use_ema_warmup=False) if schedule.ema_decay > 0 else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    generator = torch.Generator().manual_seed(_process_seed(seed, accelerator.process_index))
    state = _Progress(generator)
    accelerator.register_for_checkpointing(state)
    if data_state is not None:
        accelerator.register_for_checkpointing(data_state)

    folder = Path(checkpoint_dir) if checkpoint_dir else None
    resumed_at = None  # only logged
    if folder is not None and _load_checkpoint(accelerator, folder, run_id):
        resumed_at = state.step
        log.info("%s: resuming from %s at step %d", phase, folder, state.step)

    model.train()
    bar = progress(desc=phase, total=schedule.steps, initial=state.step)
    start = time.perf_counter() - state.seconds
    while state.step < schedule.steps:
        parts = []
        for _ in range(schedule.grad_accum):
            with accelerator.accumulate(model):
                with accelerator.autocast():  # the forward only: backward runs in the weights' dtype
                    losses = step(model, generator)
                accelerator.backward(losses.loss)
                if accelerator.sync_gradients and schedule.clip_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, schedule.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            parts.append(losses)
        lr = optimizer.param_groups[0]["lr"]
        lr_schedule.step()
        if ema is not None:
            ema.step(params)
        loss = float(np.mean([_number(p.loss) for p in parts]))
        if not math.isfinite(loss):
            raise BadInputError(f"{phase}: loss is {loss} at step {state.step} (learning rate {schedule.lr} too high?)")
        l2 = [_number(p.l2) for p in parts]
        perceptual = [_number(p.perceptual) for p in parts]
        state.rows.append(
            (
                phase,
                state.step,
                lr,
                loss,
                None if None in l2 else float(np.mean(l2)),
                None if None in perceptual else float(np.mean(perceptual)),
                "+".join(sorted({p.path for p in parts})) if parts[0].path else "",
            )
        )
        state.step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        last, due = state.step == schedule.steps, state.step % schedule.checkpoint_every == 0
        if folder is not None and ((due and not last) or (last and keep_checkpoint)):
            state.seconds = time.perf_counter() - start
            _save_checkpoint(accelerator, folder, run_id)
    bar.close()
    seconds = time.perf_counter() - start
    accelerator.wait_for_everyone()
    module = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(params)
    module.eval()
    if folder is not None and accelerator.is_main_process and not keep_checkpoint:
        remove_checkpoint(folder)
    log.info(
        "%s: %d steps in %.1f s%s", phase, state.step, seconds,
        "" if resumed_at is None else f" (resumed at step {resumed_at})",
    )  # fmt: skip
    # No wall time in the record: same config and seed, same bits, even after a resume.
    record = {
        "schedule": asdict(schedule),
        "seed": seed,
        "steps": state.step,
        "processes": accelerator.num_processes,
        "trainable_params": int(sum(p.numel() for p in params)),
        "first_loss": state.rows[0][3],
        "final_loss": state.rows[-1][3],
        "final_loss_mean_last_100": float(np.mean([row[3] for row in state.rows[-100:]])),
        "weights": "ema" if ema is not None else "last step",
    }
    return Trained(phase, state.rows, record, accelerator.is_main_process)


def write_training_files(folder: str | Path, phases: list[Trained], facts: Mapping[str, Any], title: str) -> dict:
    """``loss.csv`` (:data:`LOSS_COLUMNS`), ``loss.png`` and ``training.json`` (``facts`` plus each
    phase's record) into ``folder``: the same three files in every trained model's folder.
    Returns the record written to ``training.json``."""
    folder = Path(folder)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(LOSS_COLUMNS)
    for trained in phases:
        for phase, step, lr, loss, l2, perceptual, path in trained.rows:
            writer.writerow([phase, step, f"{lr:.6g}", repr(loss), _cell(l2), _cell(perceptual), path])
    write_bytes_atomic(text.getvalue().encode(), folder / LOSS_CSV)
    write_bytes_atomic(_curve_png(phases, title), folder / LOSS_PNG)
    record = {**dict(facts), "phases": {trained.phase: trained.record for trained in phases}}
    text = json.dumps(record, indent=2, sort_keys=True, default=str)
    write_bytes_atomic(text.encode() + b"\n", folder / RECORD_JSON)
    return json.loads(text)


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def _curve_png(phases: list[Trained], title: str) -> bytes:
    """The training loss against step, one panel per phase, smoothed over 1% of the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(phases), figsize=(4.6 * len(phases), 3.2), squeeze=False)
    for ax, trained in zip(axes[0], phases, strict=True):
        steps = np.array([row[1] for row in trained.rows]) + 1
        loss = np.array([row[3] for row in trained.rows])
        window = max(1, len(loss) // 100)
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps, loss, lw=0.5, color="0.75", label="per step")
        ax.plot(steps[window - 1 :], smooth, lw=1.2, color="C0", label=f"mean of {window}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(trained.phase if len(phases) > 1 else title)
        ax.legend(fontsize=8)
    if len(phases) > 1:
        fig.suptitle(title)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return png.getvalue()


def launch(function: Callable, args: tuple, processes: int) -> None:
    """Run ``function(*args)`` in ``processes`` processes (one per GPU) of this job.

    accelerate's in-process launcher: a SLURM job given N GPUs (config key ``train_gpus``) trains
    on all of them without a separate ``accelerate launch`` command; each process draws its own
    batches and only process 0 writes the model folder.
    """
    from accelerate import notebook_launcher

    notebook_launcher(function, args, num_processes=processes)
