"""The prior rules: ``train_prior`` (a diffusion prior on a dataset's clean training images) and
``register_adm_prior`` (a published ADM checkpoint checked and named by a prior folder)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from thincam.data.h5io import read_h5
from thincam.models import prior
from thincam.stages.common import launched


@launched
def train_prior(
    data_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    cfg: Mapping[str, Any] | None,
    seed: int,
    device: str = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    bf16: bool = False,
) -> None:
    """Train on ``x`` of ``data_path`` and save the prior folder atomically to ``out_dir``
    (resuming from ``checkpoint_dir`` after a kill)."""
    arrays, _ = read_h5(data_path, names=["x"], contract="dataset")
    trained = prior.train_prior(arrays["x"], cfg, seed=seed, device=device, checkpoint_dir=checkpoint_dir, bf16=bf16)
    if trained.trained.main_process:
        prior.save_prior(trained, out_dir)


def register_adm_prior(checkpoint: str | os.PathLike, architecture: str, out_dir: str | os.PathLike) -> None:
    """Check that ``checkpoint`` loads as ``architecture`` and write its prior folder to ``out_dir``."""
    prior.register_adm_prior(checkpoint, architecture, out_dir)
