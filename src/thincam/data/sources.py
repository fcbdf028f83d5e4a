"""Clean image sources: images shipped inside scikit-image (the default) or a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thincam.errors import BadInputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy"}

# Colour photographs that scikit-image ships inside the package (no download needed).
SKIMAGE_RGB_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "cat",
)


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    return resize(image, (image.shape[0], *shape), order=1, anti_aliasing=True, preserve_range=True)


def lfw_faces(shape: tuple[int, int]) -> np.ndarray:
    """The 200 LFW faces of ``skimage.data.lfw_subset`` (25x25 gray) as RGB [N,3,H,W]."""
    from skimage.data import lfw_subset

    faces = lfw_subset().astype(np.float32)[:, None]
    faces = np.stack([resize_image(face, shape) for face in faces])
    return np.repeat(faces, 3, axis=1).clip(0, 1).astype(np.float32)


def rgb_crops(shape: tuple[int, int], n_images: int, seed: int, short_side: int = 96) -> np.ndarray:
    """Random crops of scikit-image's colour photos, each photo first shrunk to ``short_side``.

    Shrinking first makes a 32 px crop hold an object part rather than a flat texture.
    """
    import skimage.data

    from skimage.transform import rescale

    rng = np.random.default_rng(seed)
    photos = []
    for name in SKIMAGE_RGB_PHOTOS:
        photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
        scale = max(short_side / min(photo.shape[:2]), max(shape) / min(photo.shape[:2]))
        photos.append(np.moveaxis(rescale(photo, scale, channel_axis=-1, anti_aliasing=True), -1, 0))
    crops = []
    for k in range(n_images):
        photo = photos[k % len(photos)]
        top = rng.integers(0, photo.shape[1] - shape[0] + 1)
        left = rng.integers(0, photo.shape[2] - shape[1] + 1)
        crops.append(photo[:, top : top + shape[0], left : left + shape[1]])
    return np.stack(crops).clip(0, 1).astype(np.float32)


def folder_images(path: str, shape: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Every image in a folder (sorted by name), resized to ``shape``."""
    from thincam.optics.capture import load_image

    folder = Path(path)
    if not folder.is_dir():
        raise BadInputError(f"{folder}: image folder does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInputError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images = []
    for file in files:
        image = load_image(file)
        if image.shape[0] == 1 and channels == 3:
            image = np.repeat(image, 3, axis=0)
        images.append(resize_image(image[:channels], shape))
    return np.stack(images).clip(0, 1).astype(np.float32)


def load_source(source: Mapping[str, Any], shape: tuple[int, int], seed: int) -> np.ndarray:
    """Clean images [N,3,H,W] in [0,1] for a dataset's ``source`` config entry."""
    kind = source["kind"]
    if kind == "skimage_faces":
        return lfw_faces(shape)
    if kind == "skimage_rgb_crops":
        return rgb_crops(shape, source["n_images"], seed)
    if kind == "folder":
        return folder_images(source["path"], shape)
    raise BadInputError(f"unknown image source kind {kind!r}")
