"""Clean image sources: images shipped inside scikit-image (the default) or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thincam.data.layouts import IMAGE_SUFFIXES
from thincam.errors import BadInputError

# Colour photographs of scenes that scikit-image ships inside the package (no download needed).
# Not hubble_deep_field: a star field is near-black everywhere and shows nothing of a restoration.
SKIMAGE_RGB_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
# A crop is kept only with this much light and texture (Rec. 601 luminance in [0,1]; RMS of its
# pixel-to-pixel differences): flat sky and dark corners test no restoration.
MIN_CROP_LUMINANCE = 0.15
MIN_CROP_GRADIENT = 0.04
LUMA = np.array([0.299, 0.587, 0.114])


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (image.shape[0], *shape), order=1, anti_aliasing=True, preserve_range=True)


def lfw_faces(shape: tuple[int, int]) -> np.ndarray:
    """The 200 LFW faces of ``skimage.data.lfw_subset`` (25x25 gray) as RGB [N,3,H,W]."""
    from skimage.data import lfw_subset

    faces = lfw_subset().astype(np.float32)[:, None]
    faces = np.stack([resize_image(face, shape) for face in faces])
    return np.repeat(faces, 3, axis=1).clip(0, 1).astype(np.float32)


def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]  # the left view; the right one is near-identical
    return getattr(skimage.data, name)()


def _window_means(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mean of ``values`` [H,W] over every ``shape`` window, indexed by its top-left corner."""
    summed = np.pad(values, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    h, w = shape
    total = summed[h:, w:] - summed[:-h, w:] - summed[h:, :-w] + summed[:-h, :-w]
    return total / (h * w)


def textured_corners(luminance: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Top-left corners [K,2] of the ``shape`` crops of ``luminance`` [H,W] that have
    :data:`MIN_CROP_LUMINANCE` mean and :data:`MIN_CROP_GRADIENT` RMS gradient."""
    h, w = shape
    dx2 = np.diff(luminance, axis=1) ** 2
    dy2 = np.diff(luminance, axis=0) ** 2
    gradient = np.sqrt(
        _window_means(dx2, (h, w - 1))[:, : luminance.shape[1] - w + 1]
        + _window_means(dy2, (h - 1, w))[: luminance.shape[0] - h + 1]
    )
    mean = _window_means(luminance, shape)
    return np.argwhere((mean >= MIN_CROP_LUMINANCE) & (gradient >= MIN_CROP_GRADIENT))


def rgb_crops(shape: tuple[int, int], n_images: int, seed: int, short_side: int = 96) -> np.ndarray:
    """Random textured crops of scikit-image's colour photos, each photo first shrunk to ``short_side``.

    Shrinking first makes a crop hold an object part rather than a flat texture. Crops are drawn
    without replacement among the positions :func:`textured_corners` allows: none dark or flat.
    """
    from skimage.transform import rescale

    rng = np.random.default_rng(seed)
    photos, corners = [], []
    for name in SKIMAGE_RGB_PHOTOS:
        photo = _skimage_photo(name).astype(np.float32) / 255.0
        scale = max(short_side / min(photo.shape[:2]), max(shape) / min(photo.shape[:2]))
        photo = np.moveaxis(rescale(photo, scale, channel_axis=-1, anti_aliasing=True), -1, 0)
        allowed = textured_corners(np.tensordot(LUMA, photo.clip(0, 1), axes=1), shape)
        if len(allowed) == 0:
            raise BadInputError(f"skimage photo {name!r}: no {shape} crop has light and texture")
        photos.append(photo)
        corners.append(allowed)
    # Photos take turns; each photo's crops are distinct positions.
    counts = [len(range(p, n_images, len(photos))) for p in range(len(photos))]
    if any(count > len(allowed) for count, allowed in zip(counts, corners)):
        raise BadInputError(f"{n_images} crops of {shape} exceed the textured positions of the photos")
    draws = [iter(rng.choice(allowed, size=count, replace=False)) for count, allowed in zip(counts, corners)]
    crops = []
    for k in range(n_images):
        top, left = next(draws[k % len(photos)])
        crops.append(photos[k % len(photos)][:, top : top + shape[0], left : left + shape[1]])
    return np.stack(crops).clip(0, 1).astype(np.float32)


class FileSource:
    """Clean images read from files on demand, resized to ``shape``: a source larger than memory
    (FFHQ: 70 000 faces, 8.7 GB at 256 px as float32) is read a batch at a time."""

    def __init__(self, files: list[Path], shape: tuple[int, int], channels: int = 3) -> None:
        self.files, self.shape, self.channels = files, shape, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, indices) -> np.ndarray:
        from thincam.optics.capture import load_image

        images = np.empty((len(indices), self.channels, *self.shape), dtype=np.float32)
        for k, i in enumerate(indices):
            image = load_image(self.files[int(i)])
            image = np.repeat(image, 3, axis=0) if image.shape[0] == 1 and self.channels == 3 else image
            images[k] = resize_image(image[: self.channels], self.shape).clip(0, 1)
        return images


def folder_images(path: str, shape: tuple[int, int], channels: int = 3) -> FileSource:
    """Every image in a folder (sorted by name), resized to ``shape``."""
    folder = Path(path)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: image folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return FileSource(files, shape, channels)


def ffhq_images(path: str, shape: tuple[int, int], n_images: int | None = None) -> FileSource:
    """The first ``n_images`` FFHQ faces by path, RGB [N,3,H,W] in [0,1].

    The release keeps its PNGs in thousand-image subfolders (``00000/00000.png``); a flat folder works too.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: FFHQ folder does not exist")
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    if not files:
        raise BadInputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if n_images is not None:
        if len(files) < n_images:
            raise BadInputError(f"{folder}: {len(files)} images, the config asks for {n_images}")
        files = files[:n_images]
    return FileSource(files, shape)


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """RGB images [N,3,H,W] as the camera records them: gray (Rec. 601 luminance) for a
    monochrome sensor, unchanged for a colour one."""
    if channels == 3:
        return images
    if channels != 1:
        raise BadInputError(f"a camera has 1 or 3 channels, not {channels}")
    gray = np.tensordot(LUMA.astype(np.float32), images, axes=([0], [1]))[:, None]
    return gray.clip(0, 1).astype(np.float32)


def load_source(source: Mapping[str, Any], shape: tuple[int, int], seed: int) -> np.ndarray | FileSource:
    """Clean images [N,3,H,W] in [0,1] for a dataset's ``source`` config entry: an array for the
    small built-in sources, a :class:`FileSource` (indexed like one, read on demand) for folders."""
    kind = source["kind"]
    if kind == "skimage_faces":
        return lfw_faces(shape)
    if kind == "skimage_rgb_crops":
        return rgb_crops(shape, source["n_images"], seed)
    if kind == "folder":
        return folder_images(source["path"], shape)
    if kind == "ffhq":
        return ffhq_images(source["path"], shape, source.get("n_images"))
    raise BadInputError(f"unknown image source kind {kind!r}")
