"""The DMDiff rules on dataset files: base pretraining, training, pseudo pairs, the UNet baseline.

Paired/unpaired convention: of a training split of N images, the first N - ``n_unpaired`` are
capture/clean pairs; the last ``n_unpaired`` stand for clean photographs without a metalens
capture (their captures are never trained on). The negative path turns exactly those into pseudo
pairs, so a model trained with pseudo pairs sees no capture that a paired-only model lacks.

The simulator did make their true captures, so ``pseudo_pairs`` measures the pseudo captures
against them (never training on them): PSNR(y_pseudo, y_true) beside the trivial baseline
PSNR(x_clean, y_true), the score of calling the clean image its own capture. Rule: pseudo pairs
join training only when they beat that baseline by ``min_gain_db`` (config
``dmdiff.pseudo_min_gain_db``); a negative path no better than the identity would teach the
positive path to undo a degradation that is not the camera's.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping

import numpy as np

from thincam.data.h5io import atomic_write_h5, json_attr, read_h5
from thincam.errors import BadInputError
from thincam.stages.common import launched

log = logging.getLogger(__name__)


def n_paired(n_train: int, n_unpaired: int) -> int:
    """How many leading training images are used as pairs; at least one must be."""
    if not 0 <= int(n_unpaired) < n_train:
        raise BadInputError(
            f"dmdiff unpaired must be in [0, {n_train - 1}] for a training split of {n_train} "
            f"images, got {n_unpaired}"
        )
    return n_train - int(n_unpaired)


def _release_unpaired(data_path, pseudo: np.ndarray) -> int:
    """``unpaired: release``: the images whose captures the release marks as pseudo, which
    ingestion puts last; their captures are the authors' model output, never a camera's."""
    count = int(pseudo.sum())
    if count and not pseudo[len(pseudo) - count :].all():
        raise BadInputError(f"{data_path}: the pseudo-flagged images are not the last of the training split")
    return count


def read_fwhm(psf_path: str | os.PathLike) -> np.ndarray:
    """The per-field FWHM grid [gy, gx] (pixels) of a metalens PSF file: SVDA's PSF input."""
    arrays, _ = read_h5(psf_path, ["fwhm"], contract="psf")
    return arrays["fwhm"]


def _train_arrays(
    data_path: str | os.PathLike, names: list[str], n_unpaired: int | str = 0
) -> tuple[dict[str, np.ndarray], int]:
    """The training split's ``names`` and how many leading images are real pairs."""
    release = n_unpaired == "release"
    arrays, attrs = read_h5(data_path, names + (["pseudo"] if release else []), contract="dataset")
    if attrs.get("split") != "train":
        raise BadInputError(f"{data_path}: DMDiff trains on a train split, got {attrs.get('split')!r}")
    if release:
        n_unpaired = _release_unpaired(data_path, arrays.pop("pseudo"))
    return arrays, n_paired(len(arrays[names[0]]), n_unpaired)


def pretrain_dmdiff_base(
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any],
    seed: int,
    checkpoint_dir: str | os.PathLike | None = None,
) -> None:
    """The ``pretrain_dmdiff_base`` rule: the tiny base on every clean training image."""
    from thincam.models.dmdiff import pretrain

    images = _train_arrays(data_path, ["x"])[0]["x"]
    pretrain.pretrain_dmdiff_base(images, out_dir, dict(cfg), seed, checkpoint_dir=checkpoint_dir)


@launched
def train_dmdiff(
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    base_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any],
    seed: int,
    n_unpaired: int | str,
    pseudo_pairs: str | os.PathLike | None = None,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> None:
    """The ``train_dmdiff`` rule: LoRA + SVDA on the paired images, plus the pseudo pairs when
    given and good enough by their file's quality record (module docstring)."""
    from thincam.models.dmdiff import train
    from thincam.models.dmdiff.pseudo import PSEUDO_CONTRACT

    arrays, n = _train_arrays(data_path, ["x", "y"], n_unpaired)
    pairs, record = None, {"asked": False, "used": False}
    if pseudo_pairs is not None:
        pseudo, attrs = read_h5(pseudo_pairs, ["y_pseudo", "x_clean"], contract=PSEUDO_CONTRACT)
        quality = json_attr(attrs, "quality")
        record = {"asked": True, "used": bool(quality["good_enough"]), **quality}
        verdict = "used" if record["used"] else "NOT used"
        log.log(
            logging.INFO if record["used"] else logging.WARNING,
            "pseudo pairs %s: pseudo captures %.2f dB vs the clean-image baseline %.2f dB "
            "(need a gain >= %.2f dB) in %s",
            verdict, quality["pseudo_psnr_db"], quality["clean_psnr_db"], quality["min_gain_db"],
            pseudo_pairs,
        )  # fmt: skip
        if record["used"]:
            pairs = (pseudo["y_pseudo"], pseudo["x_clean"])
    train.train_dmdiff(
        base_dir,
        (arrays["y"][:n], arrays["x"][:n]),
        read_fwhm(psf_path),
        out_dir,
        dict(cfg),
        seed,
        pseudo_pairs=pairs,
        device=device,
        pseudo_record=record,
        checkpoint_dir=checkpoint_dir,
        bf16=bf16,
    )


def pseudo_quality(y_pseudo: np.ndarray, x_clean: np.ndarray, y_true: np.ndarray, min_gain_db: float) -> dict:
    """Mean per-image PSNR (dB) of the pseudo captures and of the clean images against the true
    captures, and whether the pseudo captures beat that baseline by ``min_gain_db``."""
    from thincam.metrics.fidelity import psnr

    pseudo_db = float(np.mean(psnr(y_pseudo, y_true)))
    clean_db = float(np.mean(psnr(x_clean, y_true)))
    return {
        "pseudo_psnr_db": round(pseudo_db, 4),
        "clean_psnr_db": round(clean_db, 4),
        "min_gain_db": float(min_gain_db),
        "good_enough": bool(pseudo_db - clean_db >= float(min_gain_db)),
    }


def pseudo_pairs(
    model_dir: str | os.PathLike,
    base_dir: str | os.PathLike,
    data_path: str | os.PathLike,
    psf_path: str | os.PathLike,
    out_h5: str | os.PathLike,
    n_unpaired: int | str,
    min_gain_db: float,
    device: str = "cpu",
) -> None:
    """The ``pseudo_pairs`` rule: pseudo captures of the unpaired clean training images, with
    their quality against the true captures (attribute ``quality``, :func:`pseudo_quality`)."""
    from thincam.models.dmdiff.pseudo import PSEUDO_CONTRACT, make_pseudo_pairs

    arrays, n = _train_arrays(data_path, ["x", "y", "index"], n_unpaired)
    if n == len(arrays["x"]):
        raise BadInputError(f"{data_path}: dmdiff unpaired is 0, so there is nothing to pseudo-pair")
    pairs, attrs = make_pseudo_pairs(
        model_dir,
        arrays["x"][n:],
        read_fwhm(psf_path),
        device=device,
        index=arrays["index"][n:],
        base_dir=base_dir,
    )
    quality = pseudo_quality(pairs["y_pseudo"], pairs["x_clean"], arrays["y"][n:], min_gain_db)
    log.info("pseudo pairs of %s: %s", data_path, quality)
    atomic_write_h5(out_h5, pairs, {**attrs, "quality": quality}, contract=PSEUDO_CONTRACT)


@launched
def train_unet(
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any],
    loss: Mapping[str, Any],
    seed: int,
    n_unpaired: int | str,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> None:
    """The ``train_unet`` rule: the supervised UNet baseline on the same real pairs as DMDiff
    (the leading training images), with DMDiff's loss."""
    from thincam.models.restorer import train_restorer

    arrays, n = _train_arrays(data_path, ["x", "y"], n_unpaired)
    pairs = (arrays["y"][:n], arrays["x"][:n])
    train_restorer(pairs, out_dir, dict(cfg), dict(loss), seed, device, checkpoint_dir=checkpoint_dir, bf16=bf16)
