"""The DMDiff rules on dataset files: base pretraining, training, pseudo pairs.

Paired/unpaired convention: of a training split of N images, the first N - ``n_unpaired`` are
capture/clean pairs; the last ``n_unpaired`` stand for clean photographs without a metalens
capture (their captures are never read). The negative path turns exactly those into pseudo
pairs, so a model trained with pseudo pairs sees no capture that a paired-only model lacks.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.errors import BadInputError


def n_paired(n_train: int, n_unpaired: int) -> int:
    """How many leading training images are used as pairs; at least one must be."""
    if not 0 <= int(n_unpaired) < n_train:
        raise BadInputError(
            f"dmdiff unpaired must be in [0, {n_train - 1}] for a training split of {n_train} "
            f"images, got {n_unpaired}"
        )
    return n_train - int(n_unpaired)


def read_fwhm(psf_path: str | os.PathLike) -> np.ndarray:
    """The per-field FWHM grid [gy, gx] (pixels) of a metalens PSF file: SVDA's PSF input."""
    arrays, _ = read_h5(psf_path, ["fwhm"], contract="psf")
    return arrays["fwhm"]


def _train_arrays(data_path: str | os.PathLike, names: list[str]) -> dict[str, np.ndarray]:
    arrays, attrs = read_h5(data_path, names, contract="dataset")
    if attrs.get("split") != "train":
        raise BadInputError(f"{data_path}: DMDiff trains on a train split, got {attrs.get('split')!r}")
    return arrays


def pretrain_dmdiff_base(
    data_path: str | os.PathLike, out_dir: str | os.PathLike, cfg: Mapping[str, Any], seed: int
) -> None:
    """The ``pretrain_dmdiff_base`` rule: the tiny base on every clean training image."""
    from thincam.models.dmdiff import pretrain

    pretrain.pretrain_dmdiff_base(_train_arrays(data_path, ["x"])["x"], out_dir, dict(cfg), seed)


def train_dmdiff(
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    base_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any],
    seed: int,
    n_unpaired: int,
    pseudo_pairs: str | os.PathLike | None = None,
    device: str = "cpu",
) -> None:
    """The ``train_dmdiff`` rule: LoRA + SVDA on the paired images (+ pseudo pairs if given)."""
    from thincam.models.dmdiff import train

    arrays = _train_arrays(data_path, ["x", "y"])
    n = n_paired(len(arrays["x"]), n_unpaired)
    train.train_dmdiff(
        base_dir,
        (arrays["y"][:n], arrays["x"][:n]),
        read_fwhm(psf_path),
        out_dir,
        dict(cfg),
        seed,
        pseudo_pairs=pseudo_pairs,
        device=device,
    )


def pseudo_pairs(
    model_dir: str | os.PathLike,
    base_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    out_h5: str | os.PathLike,
    n_unpaired: int,
    device: str = "cpu",
) -> None:
    """The ``pseudo_pairs`` rule: pseudo captures of the unpaired clean training images."""
    from thincam.models.dmdiff.pseudo import PSEUDO_CONTRACT, make_pseudo_pairs

    arrays = _train_arrays(data_path, ["x", "index"])
    n = n_paired(len(arrays["x"]), n_unpaired)
    if n == len(arrays["x"]):
        raise BadInputError(f"{data_path}: dmdiff unpaired is 0, so there is nothing to pseudo-pair")
    arrays, attrs = make_pseudo_pairs(
        model_dir,
        arrays["x"][n:],
        read_fwhm(psf_path),
        device=device,
        index=arrays["index"][n:],
        base_dir=base_dir,
    )
    atomic_write_h5(out_h5, arrays, attrs, contract=PSEUDO_CONTRACT)
