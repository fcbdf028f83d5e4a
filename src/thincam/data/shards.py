"""Teacher target shards for NSDD distillation: seeds, teacher parameters and the shard reader.

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

from thincam.data.h5io import json_attr, read_h5
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
