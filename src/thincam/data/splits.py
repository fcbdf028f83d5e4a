"""Seeded train/val/test splits shared by simulation and capture ingestion, and the configured
splits drawn from a release's own published split."""

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


def split_from_published(
    published: Mapping[str, list], sizes: Mapping[str, int], seed: int, key: str = "splits", real=lambda item: True
) -> tuple[dict[str, list], dict[str, int]]:
    """The configured train/val/test from a release's own train/test split, and the published sizes.

    test is drawn from the published test part only; val and train from the published training
    part only, disjoint. Each draw is a seeded subset when the config asks for fewer than the part
    holds, kept in the release's order. ``real`` tells which items may be validation images
    (DMDiff's pseudo pairs may not): training keeps the real ones first, then the others.
    """
    available = {name: len(items) for name, items in published.items()}
    want = {name: int(sizes.get(name, 0)) for name in SPLITS}
    rng = np.random.default_rng(seed)
    test_items = published["test"]
    if want["test"] > len(test_items):
        raise BadInputError(
            f"config key {key}.test: asks for {want['test']} images but the release's published test split has {len(test_items)}"
        )
    train_items = published["train"]
    real_positions = [i for i, item in enumerate(train_items) if real(item)]
    if want["val"] + want["train"] > len(train_items) or want["val"] > len(real_positions):
        raise BadInputError(
            f"config keys {key}.train and {key}.val: ask for {want['train']} + {want['val']} images but the release's "
            f"published training split has {len(train_items)} ({len(real_positions)} of them real pairs, the only ones val may use)"
        )
    chosen_test = np.sort(rng.permutation(len(test_items))[: want["test"]])
    val_positions = set(np.asarray(real_positions, dtype=np.int64)[rng.permutation(len(real_positions))[: want["val"]]].tolist())
    rest = [i for i in range(len(train_items)) if i not in val_positions]
    train_positions = sorted(np.asarray(rest, dtype=np.int64)[rng.permutation(len(rest))[: want["train"]]].tolist())
    train_positions.sort(key=lambda i: not real(train_items[i]))  # stable: real pairs first
    result = {
        "test": [test_items[i] for i in chosen_test],
        "val": [train_items[i] for i in sorted(val_positions)],
        "train": [train_items[i] for i in train_positions],
    }
    return result, available
