"""Teacher target shards for NSDD distillation: DDNM+ outputs precomputed per shard of a split.

Each image's starting noise and step noise come from its own seed (a stable hash of the base seed,
the dataset name and the image's index) and images never share random streams, so a shard's
targets do not depend on the shard count or batch size and re-running a shard gives the same file.
Ground truth ``x`` is never read: the student must learn from the teacher alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from thincam.data.h5io import array_sha256, atomic_write_h5, json_attr, read_h5
from thincam.data.simulate import stable_seed
from thincam.errors import BadInputError, CorruptFileError

TEACHER_KEYS = ("steps", "eta", "sigma_y", "form", "travel_length", "travel_repeats")
SHARD_DATASETS = ("y", "anchor", "target", "index")


def teacher_params(teacher: Mapping[str, Any]) -> dict[str, Any]:
    """The teacher's DDNM+ parameters, exactly the known keys (a missing or extra key is an error)."""
    keys = set(teacher)
    if keys != set(TEACHER_KEYS):
        raise BadInputError(
            f"teacher parameters: missing {sorted(set(TEACHER_KEYS) - keys)}, unknown {sorted(keys - set(TEACHER_KEYS))}"
        )
    return {key: teacher[key] for key in TEACHER_KEYS}


def image_seed(base_seed: int, dataset: str, index: int) -> int:
    """The seed of one image's teacher noise; independent of shards and batches."""
    return stable_seed(base_seed, dataset, "ddnm-target", int(index))


def compute_target_shard(
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
) -> None:
    """Write shard ``shard`` of ``n_shards``: images i with i % n_shards == shard of the split file.

    Datasets: ``y``, ``anchor`` (A+y), ``target`` (DDNM+ of y), ``index``. ``operator`` overrides the
    data file's recorded operator key by key (the teacher's A+ lam is a tuning knob; the geometry
    comes from the data).
    """
    import torch
    from tqdm import tqdm

    from thincam.models.prior import load_prior, prior_id
    from thincam.physics import build_operator
    from thincam.physics.operators import range_null_residual
    from thincam.solvers.ddnm import ddnm_plus, initial_noise, step_generators

    if not 0 <= shard < n_shards:
        raise BadInputError(f"shard {shard} is not in 0..{n_shards - 1}")
    params = teacher_params(teacher)
    arrays, attrs = read_h5(data_path, names=["y", "index"], contract="dataset")
    y_all, index_all = arrays["y"].astype(np.float32), arrays["index"]
    spec = {**json_attr(attrs, "operator"), **dict(operator)} if "operator" in attrs else dict(operator)
    if list(spec.get("sensor_shape", y_all.shape[-2:])) != list(y_all.shape[-2:]):
        raise BadInputError(
            f"{data_path}: y has sensor shape {list(y_all.shape[-2:])} but the operator says {spec['sensor_shape']}"
        )
    physics = build_operator(str(psf_path), spec, device=device)
    unet, scheduler = load_prior(prior_path, device=device)

    mine = np.arange(len(y_all)) % n_shards == shard
    y_mine, index_mine = y_all[mine], index_all[mine]
    scene = (y_all.shape[1], *spec["scene_shape"])
    anchors, targets = [], []
    for start in tqdm(range(0, len(y_mine), batch_size), desc=f"targets {dataset} shard {shard}"):
        y = torch.from_numpy(y_mine[start : start + batch_size]).to(device)
        seeds = [image_seed(base_seed, dataset, i) for i in index_mine[start : start + batch_size]]
        with torch.no_grad():
            anchors.append(physics.A_dagger(y).cpu().numpy())
        x_T = initial_noise((len(seeds), *scene), seeds, device=device)
        target = ddnm_plus(physics, y, unet, scheduler, generator=step_generators(seeds), x_T=x_T, **params)
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


def read_target_shards(
    paths: Iterable[str | os.PathLike],
    *,
    teacher: Mapping[str, Any] | None = None,
    prior_id: str | None = None,
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Yield (path, arrays) per shard after verifying checksums and, when given, that the shard
    was made by this teacher and this prior; a mismatch raises CorruptFileError naming the shard."""
    expected = None if teacher is None else json.loads(json.dumps(teacher_params(teacher)))
    for path in paths:
        arrays, attrs = read_h5(path, names=list(SHARD_DATASETS), contract="targets")
        if expected is not None:
            try:
                recorded = json_attr(attrs, "teacher")
            except (KeyError, ValueError) as err:
                raise CorruptFileError(f"{path}: no readable teacher parameters ({err})") from err
            if recorded != expected:
                raise CorruptFileError(f"{path}: made with teacher {recorded}, expected {expected}")
        if prior_id is not None and attrs.get("prior_id") != prior_id:
            raise CorruptFileError(f"{path}: made with prior {attrs.get('prior_id')}, expected {prior_id}")
        lengths = {name: len(arrays[name]) for name in SHARD_DATASETS}
        if len(set(lengths.values())) != 1:
            raise CorruptFileError(f"{path}: datasets of different lengths {lengths}")
        yield str(path), arrays
