"""Pseudo metalens captures from clean images through the trained negative path.

The negative path (clean -> capture, negative prompt) learned the metalens degradation; run on
clean images it yields (x_clean, y_pseudo) pairs that enlarge the positive/neutral training set.
"""

from __future__ import annotations

import os
import numpy as np

from thincam.errors import BadInputError

PSEUDO_CONTRACT = "pseudo_pairs"


def make_pseudo_pairs(
    model_dir: str | os.PathLike,
    clean: np.ndarray,
    fwhm_grid: np.ndarray,
    batch_size: int = 16,
    device: str = "cpu",
    index: np.ndarray | None = None,
    base_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays, attrs) of contract PSEUDO_CONTRACT: ``x_clean``, ``y_pseudo`` [N,3,H,W], ``index``.

    ``base_dir``: the base model folder, if not the one recorded when the model was trained.
    """
    import torch

    from thincam.models.dmdiff.architecture import check_images
    from thincam.models.dmdiff.model import load_dmdiff

    clean = check_images(clean, "clean images for pseudo pairs")
    index = (
        np.arange(len(clean), dtype=np.int64)
        if index is None
        else np.asarray(index, dtype=np.int64)
    )
    if index.shape != (len(clean),):
        raise BadInputError(f"index has shape {index.shape}, expected ({len(clean)},)")
    model = load_dmdiff(model_dir, device, base_dir=base_dir)
    outputs = []
    with torch.no_grad():
        for chunk in torch.from_numpy(clean).split(int(batch_size)):
            chunk = chunk.to(device)
            dmap = model.degradation(chunk, fwhm_grid)
            outputs.append(model.translate(chunk, dmap, "negative").clamp(0, 1).cpu())
    y_pseudo = torch.cat(outputs).numpy().astype(np.float32)
    attrs = {
        "model_dir": str(model_dir),  # as given: the same bytes in every working directory
        "prompt": model.config["prompts"]["negative"],
        "score": model.config["score"],
        "fwhm_grid": np.asarray(fwhm_grid, dtype=np.float64).tolist(),
    }
    return {"x_clean": clean, "y_pseudo": y_pseudo, "index": index}, attrs
