"""Published dataset layouts: which files are captures, which are references, how to orient them.

Each layout is matched by folder names, as the datasets are released:

- ``diffusercam`` / ``phlatcam`` / ``pairs``: flat folders of images paired by file stem.
- ``mirflickr``: the DiffuserCam Lensless Mirflickr Dataset (Monakhova et al. 2019):
  ``diffuser_images/im*.npy`` and ``ground_truth_lensed/im*.npy`` (270x480x3, channels in BGR
  order as OpenCV wrote them) beside ``psf.tiff`` (the full-resolution RGB PSF, 4x the side).
- ``flatnet``: the FlatNet PhlatCam release (Khan et al. 2020): 12-bit captures in 16-bit PNGs
  under ``imagenet_caps_384_12bit_Feb_19/<wnid>/<wnid>_<n>.png``, the displayed ImageNet images
  under ``orig/<wnid>/<wnid>_<n>.JPEG``, the calibrated PSF ``phase_psf/psf.npy``.
- ``metalens_pairs``: ``measurements/`` and ``references/`` of aligned captures (DMDiff style).
- FFHQ is a clean source, not captures: ``thincam.data.sources.ffhq_images``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thincam.data.sources import IMAGE_SUFFIXES
from thincam.errors import BadInputError


@dataclass(frozen=True)
class Layout:
    """Folder names (first present wins), nesting and channel order of one released layout."""

    measurements: tuple[str, ...]
    references: tuple[str, ...]
    nested: bool = False  # class subfolders: files pair by their path below the two roots
    bgr: bool = False  # colour channels stored blue first
    psf: str | None = None  # the calibrated PSF's path inside the release, when it ships one


LAYOUTS = {
    "diffusercam": Layout(("diffuser_images", "diffuser"), ("ground_truth_lensed", "lensed")),
    "phlatcam": Layout(("captures", "measurements"), ("references", "displayed")),
    "pairs": Layout(("measurements",), ("references",)),
    "mirflickr": Layout(("diffuser_images",), ("ground_truth_lensed",), bgr=True, psf="psf.tiff"),
    "flatnet": Layout(("imagenet_caps_384_12bit_Feb_19",), ("orig",), nested=True, psf="phase_psf/psf.npy"),
    "metalens_pairs": Layout(("measurements",), ("references",)),
}


def layout(fmt: str) -> Layout:
    if fmt not in LAYOUTS:
        raise BadInputError(f"unknown capture format {fmt!r}; expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[fmt]


def _files(folder: Path, nested: bool) -> dict[str, Path]:
    """Image files by pairing key: the stem, or the path below ``folder`` without suffix."""
    candidates = folder.rglob("*") if nested else folder.iterdir()
    files = sorted(p for p in candidates if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return {str(p.relative_to(folder).with_suffix("")): p for p in files}


def find_pairs(fmt: str, path: str) -> list[tuple[Path, Path | None]]:
    """(measurement, reference or None) per capture of a release folder (or one capture file)."""
    spec = layout(fmt)
    root = Path(path)
    if root.is_file():
        return [(root, None)]
    if not root.is_dir():
        raise BadInputError(f"{root}: capture path does not exist")
    measurement_dir = next((root / n for n in spec.measurements if (root / n).is_dir()), None)
    if measurement_dir is None:
        raise BadInputError(f"{root}: no measurement folder (expected one of {spec.measurements})")
    reference_dir = next((root / n for n in spec.references if (root / n).is_dir()), None)
    measurements = _files(measurement_dir, spec.nested)
    if not measurements:
        raise BadInputError(f"{measurement_dir}: no capture files")
    references = _files(reference_dir, spec.nested) if reference_dir else {}
    if reference_dir is not None and not references:
        # An empty or unreadable references/ folder would silently make a dataset without ground truth.
        raise BadInputError(
            f"{reference_dir}: reference folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "remove it for a dataset without ground truth"
        )
    if references and set(references) != set(measurements):
        missing = sorted(set(measurements) ^ set(references))[:5]
        raise BadInputError(f"{root}: measurements and references do not pair up (e.g. {missing})")
    return [(measurements[key], references.get(key)) for key in measurements]


def orient(image: np.ndarray, fmt: str) -> np.ndarray:
    """[C,H,W] in RGB order whatever the layout stores."""
    return image[::-1].copy() if layout(fmt).bgr and image.shape[0] == 3 else image


def center_crop(image: np.ndarray, size) -> np.ndarray:
    """The centred [C,h,w] window (a release's frames are larger than the reconstructed field)."""
    h, w = (int(s) for s in size)
    height, width = image.shape[-2:]
    if h > height or w > width:
        raise BadInputError(f"crop {h}x{w} is larger than the {height}x{width} frame")
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top : top + h, left : left + w]
