"""Seeded train/val/test splits shared by simulation and capture ingestion."""

from __future__ import annotations

from typing import Mapping

import numpy as np

from thincam.errors import BadInputError
from thincam.registry import SPLITS


def split_indices(
    n_total: int, sizes: Mapping[str, int], seed: int, key: str = "splits"
) -> dict[str, np.ndarray]:
    """Disjoint index sets per split from one seeded permutation, each sorted.

    ``key`` is the config key of ``sizes`` (datasets.<name>.splits), named when they do not fit.
    """
    wanted = sum(sizes.get(name, 0) for name in SPLITS)
    if wanted > n_total:
        asked = ", ".join(f"{name} {sizes.get(name, 0)}" for name in SPLITS)
        raise BadInputError(f"config key {key}: splits ask for {wanted} images ({asked}) but the source has {n_total}")
    order = np.random.default_rng(seed).permutation(n_total)
    result, start = {}, 0
    for name in SPLITS:
        count = sizes.get(name, 0)
        result[name] = np.sort(order[start : start + count]).astype(np.int64)
        start += count
    return result
