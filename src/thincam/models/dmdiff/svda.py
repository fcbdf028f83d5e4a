"""SVDA: a per-patch degradation map turned into one r x r LoRA modulation matrix per block.

The map has two channels on an n x n patch grid: the metalens PSF FWHM (how much blur the optics
put there, known from calibration) and a no-reference quality score of the image itself (how
degraded this capture actually is: noise, defocus, content). MUSIQ is used only when its weights
are on local disk; otherwise a weight-free Laplacian-variance score stands in, and the name of the
score used is stored with the model so inference computes the same one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from thincam.errors import BadInputError, MissingWeightsError

log = logging.getLogger(__name__)

# Same layout as thincam.metrics.perceptual, so the metrics weights_dir can be passed as is.
MUSIQ_FILE = "hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth"
MUSIQ_MIN_SIDE = 32  # MUSIQ's patch size: smaller image patches are upsampled to it
SVDA_WEIGHTS, SVDA_CONFIG = "svda.safetensors", "svda_config.json"


def fwhm_channel(fwhm_grid, n: int) -> torch.Tensor:
    """log2 of the FWHM grid (pixels) resized bilinearly to n x n.

    align_corners: the PSF grid samples field points that include the image corners. log2 makes a
    doubling of the blur one unit, and stays absolute so maps compare across lenses.
    """
    grid = np.asarray(fwhm_grid, dtype=np.float32)
    if grid.ndim != 2 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        raise BadInputError(f"fwhm grid must be a finite positive [gy,gx] array, got {grid.shape}")
    resized = F.interpolate(
        torch.from_numpy(grid)[None, None], size=(n, n), mode="bilinear", align_corners=True
    )
    return torch.log2(resized[0, 0])


class LaplacianQuality:
    """Weight-free per-patch sharpness/noise score: 1 + log10(var(Laplacian) + 1e-6) / 6.

    Medians over 32 px photo crops, 4x4 patches: sharp 0.67, Gaussian blur sigma 1 0.50, sigma 2
    0.34; a flat patch 0. Noise raises it (blur sigma 1 + noise 0.01: 0.53).
    """

    name = "laplacian_var_log10"

    def __call__(self, images: torch.Tensor, n: int) -> torch.Tensor:
        lum = images.mean(dim=1, keepdim=True)
        kernel = images.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
        lap = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), kernel[None, None])
        mean = F.adaptive_avg_pool2d(lap, n)
        var = (F.adaptive_avg_pool2d(lap * lap, n) - mean * mean).clamp_min(0)
        return 1 + torch.log10(var + 1e-6)[:, 0] / 6


class MusiqQuality:
    """pyiqa MUSIQ (KonIQ) per patch, scaled to about [0, 1]; weights from a local file only."""

    name = "musiq"

    def __init__(self, weights_file: str | os.PathLike):
        self.weights_file = Path(weights_file)
        self._metrics: dict[str, object] = {}

    def _metric(self, device: torch.device):
        if str(device) not in self._metrics:
            import pyiqa

            self._metrics[str(device)] = pyiqa.create_metric(
                "musiq", device=device, pretrained_model_path=str(self.weights_file)
            )
        return self._metrics[str(device)]

    def __call__(self, images: torch.Tensor, n: int) -> torch.Tensor:
        b, c, h, w = images.shape
        ph, pw = h // n, w // n
        if ph < 1 or pw < 1:
            raise BadInputError(f"images {h}x{w} are smaller than a {n}x{n} patch grid")
        patches = (
            images[:, :, : n * ph, : n * pw]
            .reshape(b, c, n, ph, n, pw)
            .permute(0, 2, 4, 1, 3, 5)
            .reshape(b * n * n, c, ph, pw)
        )
        side = max(MUSIQ_MIN_SIDE, ph, pw)
        patches = F.interpolate(patches, size=(side, side), mode="bilinear", align_corners=False)
        metric = self._metric(images.device)
        with torch.no_grad():
            scores = torch.cat([metric(p.clamp(0, 1)).reshape(-1) for p in patches.split(64)])
        return (scores / 100).reshape(b, n, n).to(images.dtype)


def make_quality(musiq_weights_dir: str | os.PathLike | None):
    """MUSIQ when its weights file is under ``musiq_weights_dir``, else the Laplacian score."""
    if musiq_weights_dir is not None and (Path(musiq_weights_dir) / MUSIQ_FILE).is_file():
        return MusiqQuality(Path(musiq_weights_dir) / MUSIQ_FILE)
    log.info(
        "SVDA quality score: MUSIQ weights absent (%s), using %s",
        None if musiq_weights_dir is None else Path(musiq_weights_dir) / MUSIQ_FILE,
        LaplacianQuality.name,
    )
    return LaplacianQuality()


def quality_by_name(name: str, musiq_weights_dir: str | os.PathLike | None):
    """The score a model was trained with; MUSIQ's absence is an error here, never a fallback."""
    if name == LaplacianQuality.name:
        return LaplacianQuality()
    if name == MusiqQuality.name:
        path = None if musiq_weights_dir is None else Path(musiq_weights_dir) / MUSIQ_FILE
        if path is None or not path.is_file():
            raise MissingWeightsError(
                f"this DMDiff model was trained with MUSIQ degradation maps; put "
                f"musiq_koniq_ckpt-e95806b9.pth at {path or '<musiq_weights_dir>/' + MUSIQ_FILE}"
            )
        return MusiqQuality(path)
    raise BadInputError(f"unknown SVDA quality score {name!r}")


def degradation_map(fwhm_grid, images: torch.Tensor, n: int, quality=None) -> torch.Tensor:
    """[B,2,n,n]: channel 0 the log2 PSF FWHM per patch, channel 1 the image's quality score."""
    if images.ndim != 4:
        raise BadInputError(f"expected images [B,C,H,W], got shape {tuple(images.shape)}")
    quality = LaplacianQuality() if quality is None else quality
    fwhm = fwhm_channel(fwhm_grid, n).to(images.device, images.dtype)
    score = quality(images, n)
    return torch.stack([fwhm.expand_as(score), score], dim=1)


class SVDAModule(nn.Module):
    """Degradation map -> {block: Q [B,r,r]} with Q = I + delta, delta zero at initialisation.

    A shared conv trunk reads the map; one zero-initialised linear head per LoRA block gives that
    block's delta, so an untrained SVDA leaves LoRA exactly as peft initialises it.
    ``use_fwhm=False`` (ablation) drops the FWHM channel and sees the quality score only.
    """

    def __init__(
        self, blocks: dict[str, int], map_size: int, use_fwhm: bool = True, hidden: int = 64
    ):
        super().__init__()
        self.blocks = dict(blocks)
        self.map_size, self.use_fwhm, self.hidden = int(map_size), bool(use_fwhm), int(hidden)
        self.trunk = nn.Sequential(
            nn.Conv2d(2 if use_fwhm else 1, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * hidden, hidden),
            nn.SiLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, r * r) for r in self.blocks.values())
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, dmap: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(dmap if self.use_fwhm else dmap[:, 1:])
        eye = {
            r: torch.eye(r, device=dmap.device, dtype=dmap.dtype) for r in set(self.blocks.values())
        }
        return {
            name: eye[r] + head(features).view(-1, r, r)
            for (name, r), head in zip(self.blocks.items(), self.heads, strict=True)
        }

    def config(self) -> dict:
        return {
            "blocks": self.blocks,
            "map_size": self.map_size,
            "use_fwhm": self.use_fwhm,
            "hidden": self.hidden,
        }


def save_svda(module: SVDAModule, out_dir: str | os.PathLike) -> None:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, out_dir / SVDA_WEIGHTS)
    (out_dir / SVDA_CONFIG).write_text(json.dumps(module.config(), indent=2))


def load_svda(model_dir: str | os.PathLike) -> SVDAModule:
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    for name in (SVDA_WEIGHTS, SVDA_CONFIG):
        if not (model_dir / name).is_file():
            raise MissingWeightsError(f"DMDiff SVDA file missing: {model_dir / name}")
    module = SVDAModule(**json.loads((model_dir / SVDA_CONFIG).read_text()))
    module.load_state_dict(load_file(model_dir / SVDA_WEIGHTS), strict=True)
    return module
