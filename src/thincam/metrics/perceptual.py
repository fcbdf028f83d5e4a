"""Learned and weight-free perceptual metrics, loaded only from local files.

The learned metrics (LPIPS, DISTS, MUSIQ, CLIP-IQA) need pretrained weights that these machines
cannot download. ``weights_dir`` is laid out like a ``$TORCH_HOME`` (so an existing torch cache can
be pointed at directly): torchvision backbones in ``hub/checkpoints``, pyiqa files in ``hub/pyiqa``,
the CLIP model in ``hub/clip``. A metric whose files are absent is reported as NaN (an empty CSV
cell) with one warning naming every missing file and where it goes; nothing is ever downloaded and
no metric ever runs with random weights. A file that is present but cannot be loaded is an error
naming it, since a silently wrong metric is worse than none.

The weight-free pyiqa metrics (ms_ssim, gmsd, fsim, vif, nlpd; no-reference piqe) always run; each
has a smallest image side below which it cannot run (measured with pyiqa 0.1.16), and is NaN there.

LPIPS comes with both trunks, because the published lensless tables differ (``metrics.lpips`` picks
the one a config's tables report, see ``thincam.report.tables.LPIPS_COLUMNS``):

- ``lpips_vgg``: LenslessPiCam's benchmark (LCAV/LenslessPiCam, lensless/eval/benchmark.py) uses
  torchmetrics' ``LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True)`` on [0,1]
  images, each reconstruction and reference first divided by its own maximum; DMDiff
  (yuanxy92/DMDiff_ICCV2025, src/train.py and src/test.py) uses ``lpips.LPIPS(net="vgg")`` on
  [-1,1] images, unscaled.
- ``lpips`` (AlexNet): FlatNet (siddiquesalman/flatnet, val.py) uses PerceptualSimilarity's
  ``PerceptualLoss(model="net-lin", net="alex")``, unscaled.

All are LPIPS v0.1 with the package's linear heads; [0,1] images here are mapped to [-1,1]
(``normalize=True``), which is what every one of the three computes.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from thincam.errors import BadInputError
from thincam.models.lpips import ALEXNET_FILE, VGG16_FILE
from thincam.registry import METRICS, PERCEPTUAL, WEIGHT_FREE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightFile:
    """One pretrained file: where it goes under ``weights_dir`` and where to get it."""

    relpath: str
    url: str
    sha256: str | None = None  # full digest, where the loading library insists on it


_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/"
_CLIP_RN50_SHA = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"
_VGG16 = WeightFile(VGG16_FILE, "https://download.pytorch.org/models/vgg16-397923af.pth")  # LPIPS(vgg), DISTS

WEIGHT_FILES: dict[str, tuple[WeightFile, ...]] = {
    "lpips": (WeightFile(ALEXNET_FILE, "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),),
    "lpips_vgg": (_VGG16,),
    "dists": (
        _VGG16,
        WeightFile("hub/pyiqa/DISTS_weights-f5e65c96.pth", _HF + "DISTS_weights-f5e65c96.pth"),
    ),
    "musiq": (
        WeightFile(
            "hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth", _HF + "musiq_koniq_ckpt-e95806b9.pth"
        ),
    ),
    "clipiqa": (
        WeightFile(
            "hub/clip/RN50.pt",
            f"https://openaipublic.azureedge.net/clip/models/{_CLIP_RN50_SHA}/RN50.pt",
            sha256=_CLIP_RN50_SHA,
        ),
    ),
}

FULL_REFERENCE = tuple(m for m in PERCEPTUAL if METRICS[m].reference)
NO_REFERENCE = tuple(m for m in PERCEPTUAL if not METRICS[m].reference)
COLUMNS = PERCEPTUAL

# Smallest image side each metric runs on: ms_ssim's 5 scales of an 11-px window, vif's 4 scales,
# AlexNet's and VGG's pooling in LPIPS, PIQE's 16x16 blocks.
MIN_SIDE = {"lpips": 32, "lpips_vgg": 16, "ms_ssim": 161, "vif": 33, "piqe": 16}

_BATCH = 16


@contextmanager
def _torch_hub_dir(path: Path) -> Iterator[None]:
    """torchvision and CLIP look for weights under torch.hub's directory: point it at ours."""
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(path))
    try:
        yield
    finally:
        torch.hub.set_dir(previous)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def _unloadable(paths: list[Path]) -> list[Path]:
    """The files torch cannot deserialise: used only to name the culprit after a failed load."""
    bad = []
    for path in paths:
        try:
            torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # noqa: BLE001 - any failure means this file is the one to replace
            bad.append(path)
    return bad


def _lpips_builder(net: str) -> Callable[[list[Path], torch.device], Callable]:
    """LPIPS(``net``) on [0,1] images (``normalize=True`` maps them to the [-1,1] it expects)."""

    def build(paths: list[Path], device: torch.device) -> Callable:
        from thincam.models.lpips import TRUNK_FILES, load_lpips

        weights_dir = Path(str(paths[0]).removesuffix(TRUNK_FILES[net]))
        metric = load_lpips(weights_dir, net=net, device=device)
        return lambda a, b: metric(a, b, normalize=True)

    return build


def _build_dists(paths: list[Path], device: torch.device) -> Callable:
    import pyiqa

    metric = pyiqa.create_metric("dists", device=device, pretrained=False)
    state = torch.load(paths[1], map_location="cpu", weights_only=False)
    # pyiqa loads this file non-strictly, which would leave alpha/beta random if the keys differ.
    if not isinstance(state, dict) or not {"alpha", "beta"} <= set(state):
        raise BadInputError(f"{paths[1]}: not a DISTS weights file (needs keys 'alpha' and 'beta')")
    metric.net.load_state_dict(state, strict=False)
    return metric


def _build_musiq(paths: list[Path], device: torch.device) -> Callable:
    import pyiqa

    return pyiqa.create_metric("musiq", device=device, pretrained_model_path=str(paths[0]))


def _build_clipiqa(paths: list[Path], device: torch.device) -> Callable:
    import pyiqa

    # CLIP re-downloads a file whose digest differs; check first so it never tries.
    expected = WEIGHT_FILES["clipiqa"][0].sha256
    if _sha256(paths[0]) != expected:
        raise BadInputError(f"{paths[0]}: SHA-256 differs from CLIP RN50's {expected}")
    return pyiqa.create_metric("clipiqa", device=device)


_BUILDERS: dict[str, Callable[[list[Path], torch.device], Callable]] = {
    "lpips": _lpips_builder("alex"),
    "lpips_vgg": _lpips_builder("vgg"),
    "dists": _build_dists,
    "musiq": _build_musiq,
    "clipiqa": _build_clipiqa,
}


class PerceptualMetrics:
    """Per-image perceptual metrics; learned ones only from files present in ``weights_dir``."""

    def __init__(self, weights_dir: str | Path | None, device: str = "cpu"):
        import pyiqa

        self.device = torch.device(device)
        self.weights_dir = Path(weights_dir) if weights_dir is not None else None
        self.missing: dict[str, list[Path]] = {}
        self._metrics: dict[str, Callable] = {}
        root = self.weights_dir if self.weights_dir is not None else Path("<weights_dir>")
        to_fetch = []
        for name, files in WEIGHT_FILES.items():
            paths = [root / f.relpath for f in files]
            absent = [
                (p, f.url)
                for p, f in zip(paths, files)
                if self.weights_dir is None or not p.is_file()
            ]
            if absent:
                self.missing[name] = [p for p, _ in absent]
                to_fetch += [f"  {name}: put {url} at {p}" for p, url in absent]
            else:
                self._metrics[name] = self._load(name, paths)
        for name in WEIGHT_FREE:
            self._metrics[name] = pyiqa.create_metric(name, device=self.device)
        if to_fetch:
            message = (
                f"perceptual metrics {', '.join(self.missing)} are unavailable (left empty): "
                f"no weights under {self.weights_dir}; missing files:\n" + "\n".join(to_fetch)
            )
            log.warning(message)
            warnings.warn(message, stacklevel=2)

    def _load(self, name: str, paths: list[Path]) -> Callable:
        try:
            with _torch_hub_dir(self.weights_dir / "hub"), warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", UserWarning
                )  # torchvision's 'pretrained' deprecation
                return _BUILDERS[name](paths, self.device)
        except BadInputError:
            raise
        except Exception as err:
            culprits = _unloadable(paths) or paths
            urls = {p: f.url for p, f in zip(paths, WEIGHT_FILES[name])}
            raise BadInputError(
                f"{name}: cannot load its weights from {', '.join(map(str, culprits))} "
                f"({type(err).__name__}: {err}); replace with "
                + ", ".join(urls[p] for p in culprits)
            ) from err

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the metrics that will produce numbers (size limits aside)."""
        return tuple(name for name in COLUMNS if name in self._metrics)

    def __call__(self, xhat: np.ndarray, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every column of :data:`COLUMNS` for ``xhat`` [N,C,H,W]; NaN where a metric cannot run."""
        xhat_t = _as_rgb_tensor(xhat)
        x_t = _as_rgb_tensor(x) if x is not None else None
        if x_t is not None and x_t.shape != xhat_t.shape:
            raise BadInputError(
                f"reconstruction {tuple(xhat.shape)} and reference {tuple(x.shape)} differ in shape"
            )
        n, side = xhat_t.shape[0], min(xhat_t.shape[-2:])
        out = {}
        for name in COLUMNS:
            values = np.full(n, np.nan)
            if name not in self._metrics or (name in FULL_REFERENCE and x_t is None):
                out[name] = values
                continue
            if side < MIN_SIDE.get(name, 0):
                log.warning(
                    "%s needs images of at least %d px a side, got %d: left empty",
                    name,
                    MIN_SIDE[name],
                    side,
                )
                out[name] = values
                continue
            start = time.perf_counter()
            with torch.inference_mode():
                for lo in range(0, n, _BATCH):
                    a = xhat_t[lo : lo + _BATCH].to(self.device)
                    args = (
                        (a, x_t[lo : lo + _BATCH].to(self.device))
                        if name in FULL_REFERENCE
                        else (a,)
                    )
                    values[lo : lo + _BATCH] = (
                        self._metrics[name](*args).reshape(-1).double().cpu().numpy()
                    )
            log.info("%s: %.4f s per image", name, (time.perf_counter() - start) / n)
            out[name] = values
        return out


def _as_rgb_tensor(images: np.ndarray) -> torch.Tensor:
    """[N,C,H,W] in [0,1] as a 3-channel tensor: the metrics are defined on RGB."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise BadInputError(f"expected images [N,1|3,H,W], got shape {images.shape}")
    tensor = torch.from_numpy(np.clip(images, 0.0, 1.0))
    return tensor.expand(-1, 3, -1, -1).contiguous() if tensor.shape[1] == 1 else tensor
