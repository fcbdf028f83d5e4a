"""Published dataset layouts: which files are captures and references, how they pair, which
published split each belongs to, and how the release's own loader turns its files into pixels.

Each release is read as it extracts, following its authors' loader code:

- ``mirflickr``: the DiffuserCam Lensless Mirflickr Dataset (Monakhova et al. 2019), as
  LenslessPiCam's ``DiffuserCamMirflickr`` / ``DiffuserCamTestDataset`` read it
  (``lensless/utils/dataset.py``): ``dataset/diffuser_images/im<n>.npy`` and
  ``dataset/ground_truth_lensed/im<n>.npy`` (270x480x3 float, background-subtracted, so slightly
  negative in places, channels BGR, stored upside down), ``psf.tiff`` beside ``dataset/`` (4x the
  side, the same channel order and orientation). Published split: test = im2 ... im1000,
  training = im1001 ... im25000 (im1 does not exist); a ``dataset_test.csv`` / ``dataset_train.csv``
  list (LenslessLearning's ``utils.DiffuserDataset``: one ``im<n>.jpg.tiff`` per row) wins when present.
- ``flatnet``: the FlatNet PhlatCam release (Khan et al. 2020; ``flatnet-gen`` branch,
  ``dataloader.py`` and ``config.py``): raw Bayer mosaics (12-bit in 16-bit PNGs, RGGB) under
  ``imagenet_caps_384_12bit_Feb_19/<wnid>/<wnid>_<n>.png``, the displayed ImageNet images under
  ``orig/<wnid>/<wnid>_<n>.JPEG``, the PSF ``phase_psf/psf.npy`` (2-D, on the demosaicked grid).
  Published split: ``text_files/train_source_imagenet_384_384_Feb_19.txt`` with
  ``train_target.txt`` (training) and the ``val_*`` lists (10 classes disjoint from training: the
  held-out test set), paired line by line.
- ``dmdiff``: the DMDiff metalens release (``yuanxy92/DMDiff_ICCV2025``,
  ``src/my_utils/training_utils.py``): ``gt_train/ lr_train/ gt_test/ lr_test/`` (and
  ``gt_blur_train/``), each folder's PNGs found recursively and sorted, paired by sorted index
  within a folder pair (names repeat across splits). A capture whose file name holds ``pseudo``
  is a pseudo capture made by the authors' negative path, not a real one. The capture (400 px) and
  the reference (512 px) cover the same field of view: the loader resizes one onto the other.
- ``diffusercam`` / ``phlatcam`` / ``pairs`` / ``metalens_pairs``: flat folders paired by file
  stem, no published split (a seeded random one is drawn).
- FFHQ is a clean source, not captures: ``thincam.data.sources.ffhq_images``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from thincam.data.images import IMAGE_SUFFIXES
from thincam.errors import BadInputError

PUBLISHED_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Pair:
    """One capture, its reference (None: no ground truth), where they come from, and whether the
    release marks the capture as a pseudo capture (made by a model, not a camera)."""

    measurement: Path
    reference: Path | None
    source: str  # the measurement's path relative to the release root (provenance)
    reference_source: str | None
    pseudo: bool = False


@dataclass(frozen=True)
class Layout:
    """Folder names (first present wins) and the pixel conventions of one released layout."""

    measurements: tuple[str, ...]
    references: tuple[str, ...]
    nested: bool = False  # class subfolders: files pair by their path below the two roots
    bgr: bool = False  # colour channels stored blue first (captures, references and PSF)
    flip_ud: bool = False  # stored upside down (captures, references and PSF)
    bayer: bool = False  # each capture is one raw RGGB mosaic plane
    clip_negative: bool = False  # background-subtracted floats: the loader clamps them at 0
    register_reference: bool = False  # reference and capture frames cover the same field of view
    published: Callable[[Path], dict[str, list[Pair]]] | None = None  # the release's own split


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def image_files(folder: Path, nested: bool) -> list[Path]:
    """Image files of ``folder`` (recursively when ``nested``), sorted by path string as the
    releases' loaders sort them; a broken link or unreadable entry is refused, naming it."""
    candidates = folder.rglob("*") if nested else folder.iterdir()
    files, broken = [], []
    for path in candidates:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            if path.is_file():
                files.append(path)
            elif not path.is_dir():
                broken.append(path)
        except OSError:  # a symlink loop
            broken.append(path)
    if broken:
        names = ", ".join(str(p) for p in sorted(broken)[:5])
        raise BadInputError(
            f"{folder}: {len(broken)} entries cannot be read as files (broken links or link loops, "
            f"e.g. an unfetched annex/DVC object): {names}"
        )
    return sorted(files, key=str)


def _keyed(folder: Path, nested: bool) -> dict[str, Path]:
    """Image files by pairing key: the stem, or the path below ``folder`` without suffix."""
    return {str(p.relative_to(folder).with_suffix("")): p for p in image_files(folder, nested)}


def _find_folder(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


_MIRFLICKR_NUMBER = re.compile(r"im(\d+)")
# LenslessPiCam: ``allowed_idx = np.arange(2, 25001)``; test = allowed_idx <= 1000.
MIRFLICKR_TEST_LAST = 1000


def _mirflickr_list(root: Path, split: str) -> set[int] | None:
    """Image numbers of LenslessLearning's ``dataset_<split>.csv`` (in the release root or in
    ``dataset/``), or None when the release has no such list."""
    for folder in (root, root / "dataset"):
        path = folder / f"dataset_{split}.csv"
        if path.is_file():
            return {int(m.group(1)) for m in map(_MIRFLICKR_NUMBER.search, path.read_text().splitlines()) if m}
    return None


def mirflickr_split(root: Path) -> dict[str, list[Pair]]:
    """The published Mirflickr split of the pairs on disk (module docstring)."""
    pairs = _stem_pairs(root, LAYOUTS["mirflickr"])
    lists = {split: _mirflickr_list(root, split) for split in PUBLISHED_SPLITS}
    split_of: dict[str, list[Pair]] = {split: [] for split in PUBLISHED_SPLITS}
    for pair in pairs:
        match = _MIRFLICKR_NUMBER.fullmatch(pair.measurement.stem)
        if match is None:
            raise BadInputError(f"{pair.measurement}: not a Mirflickr capture name (im<n>.npy)")
        number = int(match.group(1))
        if lists["test"] is not None:
            split = "test" if number in lists["test"] else "train"
            if lists["train"] is not None and split == "train" and number not in lists["train"]:
                continue  # listed in neither published list
        else:
            split = "test" if number <= MIRFLICKR_TEST_LAST else "train"
        split_of[split].append(pair)
    for split in PUBLISHED_SPLITS:  # numeric order, as the release numbers them
        split_of[split].sort(key=lambda p: int(p.measurement.stem[2:]))
    return split_of


FLATNET_LISTS = {
    "train": ("train_source_imagenet_384_384_Feb_19.txt", "train_target.txt"),
    "test": ("val_source_imagenet_384_384_Feb_19.txt", "val_target.txt"),
}


def flatnet_split(root: Path) -> dict[str, list[Pair]]:
    """FlatNet's ``text_files`` lists: line i of the source list pairs with line i of the target
    list, both relative to the release root (``PhaseMaskDataset._glob_images``)."""
    folder = _find_folder(root, ("text_files", "data/text_files"))
    if folder is None:
        raise BadInputError(
            f"{root}: no text_files/ folder with FlatNet's split lists ({', '.join(sum(FLATNET_LISTS.values(), ()))}); "
            "copy data/text_files from the FlatNet code (flatnet-gen branch) into the release folder"
        )
    split_of = {}
    for split, (source_list, target_list) in FLATNET_LISTS.items():
        lines = []
        for name in (source_list, target_list):
            path = folder / name
            if not path.is_file():
                raise BadInputError(f"{path}: FlatNet split list missing")
            lines.append([line.strip() for line in path.read_text().splitlines() if line.strip()])
        if len(lines[0]) != len(lines[1]):
            raise BadInputError(
                f"{folder}: {source_list} has {len(lines[0])} lines but {target_list} has {len(lines[1])}"
            )
        split_of[split] = [
            Pair(root / source, root / target, source, target) for source, target in zip(*lines)
        ]
        missing = [p.measurement for p in split_of[split] if not p.measurement.is_file()]
        missing += [p.reference for p in split_of[split] if not p.reference.is_file()]
        if missing:
            raise BadInputError(
                f"{folder / source_list}: {len(missing)} listed files are missing under {root}, e.g. {missing[0]}"
            )
    return split_of


DMDIFF_FOLDERS = {"train": ("lr_train", "gt_train"), "test": ("lr_test", "gt_test")}


def dmdiff_split(root: Path) -> dict[str, list[Pair]]:
    """DMDiff's folder pairs, paired by sorted index (``PairedDataset``: ``sorted(rglob('*.png'))``);
    a capture named ``*pseudo*`` is flagged as the authors' pseudo capture."""
    split_of = {}
    for split, (lr_name, gt_name) in DMDIFF_FOLDERS.items():
        lr_dir, gt_dir = root / lr_name, root / gt_name
        for folder in (lr_dir, gt_dir):
            if not folder.is_dir():
                raise BadInputError(f"{root}: no {folder.name}/ folder (the DMDiff release has {sorted(sum(DMDIFF_FOLDERS.values(), ()))})")
        lr_files = [p for p in image_files(lr_dir, nested=True) if p.suffix.lower() == ".png"]
        gt_files = [p for p in image_files(gt_dir, nested=True) if p.suffix.lower() == ".png"]
        if len(lr_files) != len(gt_files) or not lr_files:
            raise BadInputError(
                f"{root}: {lr_name}/ holds {len(lr_files)} PNGs and {gt_name}/ {len(gt_files)}; "
                "the release pairs them by sorted index, so the counts must agree (and not be 0)"
            )
        split_of[split] = [
            Pair(lr, gt, _relative(lr, root), _relative(gt, root), pseudo="pseudo" in lr.name)
            for lr, gt in zip(lr_files, gt_files)
        ]
    return split_of


LAYOUTS = {
    "diffusercam": Layout(("diffuser_images", "diffuser"), ("ground_truth_lensed", "lensed")),
    "phlatcam": Layout(("captures", "measurements"), ("references", "displayed")),
    "pairs": Layout(("measurements",), ("references",)),
    "mirflickr": Layout(
        ("dataset/diffuser_images", "diffuser_images"),
        ("dataset/ground_truth_lensed", "ground_truth_lensed"),
        bgr=True,
        flip_ud=True,
        clip_negative=True,
        published=mirflickr_split,
    ),
    "flatnet": Layout(
        ("imagenet_caps_384_12bit_Feb_19",),
        ("orig",),
        nested=True,
        bayer=True,
        published=flatnet_split,
    ),
    "dmdiff": Layout(("lr_train",), ("gt_train",), register_reference=True, published=dmdiff_split),
    "metalens_pairs": Layout(("measurements",), ("references",)),
}


def layout(fmt: str) -> Layout:
    if fmt not in LAYOUTS:
        raise BadInputError(f"unknown capture format {fmt!r}; expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[fmt]


def _stem_pairs(root: Path, spec: Layout) -> list[Pair]:
    """Captures paired with references by file stem (or path below the folder when nested)."""
    measurement_dir = _find_folder(root, spec.measurements)
    if measurement_dir is None:
        raise BadInputError(f"{root}: no measurement folder (expected one of {spec.measurements})")
    reference_dir = _find_folder(root, spec.references)
    measurements = _keyed(measurement_dir, spec.nested)
    if not measurements:
        raise BadInputError(f"{measurement_dir}: no capture files")
    references = _keyed(reference_dir, spec.nested) if reference_dir else {}
    if reference_dir is not None and not references:
        # An empty or unreadable references/ folder would silently make a dataset without ground truth.
        raise BadInputError(
            f"{reference_dir}: reference folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "remove it for a dataset without ground truth"
        )
    if references and set(references) != set(measurements):
        missing = sorted(set(measurements) ^ set(references))[:5]
        raise BadInputError(f"{root}: measurements and references do not pair up (e.g. {missing})")
    pairs = []
    for key, measurement in measurements.items():
        reference = references.get(key)
        pairs.append(
            Pair(
                measurement,
                reference,
                _relative(measurement, root),
                None if reference is None else _relative(reference, root),
            )
        )
    return pairs


def find_pairs(fmt: str, path: str) -> list[Pair]:
    """Every capture of a release folder (or one capture file), in the release's order."""
    spec = layout(fmt)
    root = Path(path)
    if root.is_file():
        return [Pair(root, None, root.name, None)]
    if not root.is_dir():
        raise BadInputError(f"{root}: capture path does not exist")
    if spec.published is not None:
        split_of = spec.published(root)
        return [pair for split in PUBLISHED_SPLITS for pair in split_of[split]]
    return _stem_pairs(root, spec)


def published_split(fmt: str, path: str) -> dict[str, list[Pair]] | None:
    """The release's own train/test split of its pairs, or None for a layout without one."""
    spec = layout(fmt)
    root = Path(path)
    if spec.published is None or root.is_file():
        return None
    if not root.is_dir():
        raise BadInputError(f"{root}: capture path does not exist")
    return spec.published(root)


def demosaic_rggb(raw: np.ndarray, path) -> np.ndarray:
    """[1,H,W] RGGB mosaic -> [3,H/2,W/2] RGB at half resolution, green the mean of its two sites
    (FlatNet's ``get_img_from_raw``: [0::2,0::2] R, [0::2,1::2] and [1::2,0::2] G, [1::2,1::2] B)."""
    if raw.shape[0] != 1:
        raise BadInputError(f"{path}: a raw Bayer capture has one plane, this file has {raw.shape[0]} channels")
    plane = raw[0]
    h, w = plane.shape[0] - plane.shape[0] % 2, plane.shape[1] - plane.shape[1] % 2
    plane = plane[:h, :w]
    green = 0.5 * (plane[0::2, 1::2] + plane[1::2, 0::2])
    return np.stack([plane[0::2, 0::2], green, plane[1::2, 1::2]])


def release_view(image: np.ndarray, fmt: str | None) -> np.ndarray:
    """[C,H,W] in RGB order and upright, whatever order and orientation the release stores."""
    if fmt is None:
        return image
    spec = layout(fmt)
    if spec.bgr and image.shape[0] == 3:
        image = image[::-1]
    if spec.flip_ud:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def sensor_window(image: np.ndarray, window, path) -> np.ndarray:
    """The [top, left, height, width] window of a frame [C,H,W] (a release's fixed sensor crop,
    FlatNet's ``meas_centre`` and ``meas_crop_size``); None keeps the frame."""
    if window is None:
        return image
    top, left, h, w = (int(v) for v in window)
    height, width = image.shape[-2:]
    if top < 0 or left < 0 or top + h > height or left + w > width:
        raise BadInputError(f"{path}: window {list(window)} does not fit the {height}x{width} frame")
    return image[..., top : top + h, left : left + w]


def center_crop(image: np.ndarray, size) -> np.ndarray:
    """The centred [C,h,w] window (a release's frames are larger than the reconstructed field)."""
    h, w = (int(s) for s in size)
    height, width = image.shape[-2:]
    if h > height or w > width:
        raise BadInputError(f"crop {h}x{w} is larger than the {height}x{width} frame")
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top : top + h, left : left + w]
