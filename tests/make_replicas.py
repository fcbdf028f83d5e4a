"""Miniature replicas of the presets' datasets and weights, so every preset runs without them.

Each replica keeps the release's folder and file names, file formats, dtypes, channel order and
aspect ratio, at a tiny size; the weights are random but saved in the published formats (a bare
guided-diffusion state dict, an SD-Turbo-layout diffusers folder, $TORCH_HOME weight files).
Paths are those the presets name, relative to the directory given:

    python tests/make_replicas.py <project dir> [--imagenet-adm]

The ImageNet ADM (2.1 GB, 552 M parameters) is written at its real architecture only with
``--imagenet-adm``; otherwise its file name holds the FFHQ architecture (the same DiffUNet code
path, 374 MB), and the scaled-down override names that architecture.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# Published size -> replica size (same aspect): FFHQ 1024^2; FlatNet's demosaicked grid 1518x2012
# (raw mosaics twice that) and its sensor window rows 168:1448, cols 261:1669 (config.py:
# centre (808, 965), 1280x1408), / 20; Mirflickr 270x480x3 .npy and a 4x PSF, / 10; DMDiff
# references 512^2 and captures 400^2, / 8.
FFHQ_SIDE = 32
FLATNET_GRID = (76, 100)
FLATNET_WINDOW = (8, 13, 64, 70)
FLATNET_REFERENCE = (48, 64)
MIRFLICKR_CAPTURE = (27, 48)
DMDIFF_REFERENCE_SIDE = 64
WNIDS = ("n01818515", "n01820546", "n02165456")


def smooth_images(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """[N,H,W,3] in [0,1]: blurred noise, so a replica looks like a photo, not like white noise."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    raw = rng.random((n, *shape, 3))
    sigma = max(1.0, min(shape) / 10)
    images = np.stack([gaussian_filter(im, sigma=(sigma, sigma, 0)) for im in raw])
    lo, hi = images.min(axis=(1, 2, 3), keepdims=True), images.max(axis=(1, 2, 3), keepdims=True)
    return (images - lo) / (hi - lo)


def lensless_capture(scene: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """[H,W,3] capture of a scene resized to the PSF: per-channel convolution, max-normalised."""
    from scipy.signal import fftconvolve
    from skimage.transform import resize

    scene = resize(scene, psf.shape, anti_aliasing=True)
    capture = np.stack([fftconvolve(scene[..., c], psf[..., c], mode="same") for c in range(3)], -1)
    return np.clip(capture, 0, None) / capture.max()


def random_psf(shape: tuple[int, int], seed: int) -> np.ndarray:
    """[H,W,3] caustic-like PSF: a few bright blurred dots, each channel summing to 1."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    psf = np.zeros((*shape, 3))
    rows, cols = rng.integers(0, shape[0], 12), rng.integers(0, shape[1], 12)
    psf[rows, cols] = 1.0
    psf = gaussian_filter(psf, sigma=(0.8, 0.8, 0))
    return psf / psf.sum(axis=(0, 1), keepdims=True)


def write_ffhq(root: Path, n: int = 24) -> Path:
    """data/ffhq/images1024x1024/00000/00000.png ...: 8-bit RGB PNGs, a thousand per folder."""
    import imageio.v3 as iio

    folder = root / "data/ffhq/images1024x1024"
    for k, image in enumerate(smooth_images(n, (FFHQ_SIDE, FFHQ_SIDE), seed=1)):
        path = folder / f"{k // 1000 * 1000:05d}" / f"{k:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(path, (image * 255).round().astype(np.uint8))
    return folder


def write_flatnet(root: Path, n_train: int = 12, n_test: int = 6) -> Path:
    """data/flatnet as FlatNet's flatnet-gen loader reads it (dataloader.py, config.py):
    imagenet_caps_384_12bit_Feb_19/<wnid>/<wnid>_<k>.png one raw RGGB mosaic plane (12-bit values
    in a 16-bit PNG) at twice the PSF grid, orig/<wnid>/<wnid>_<k>.JPEG, phase_psf/psf.npy (2-D float
    on the demosaicked grid), and text_files/ with the train lists and the val lists (classes
    disjoint from training: the held-out test set), paired line by line.

    The capture is the PSF (cut to :data:`FLATNET_WINDOW`) convolved with the scene, each colour
    written to its Bayer sites; outside the window the sensor sees only its dark level."""
    import cv2
    import imageio.v3 as iio

    folder = root / "data/flatnet"
    psf = random_psf(FLATNET_GRID, seed=2)[..., 0]
    (folder / "phase_psf").mkdir(parents=True, exist_ok=True)
    np.save(folder / "phase_psf/psf.npy", (psf / psf.max()).astype(np.float32))
    top, left, h, w = FLATNET_WINDOW
    window_psf = psf[top : top + h, left : left + w]
    window_psf = np.repeat(window_psf[..., None] / window_psf.sum(), 3, axis=-1)
    lists = {name: [] for name in ("train_source", "train_target", "val_source", "val_target")}
    scenes = smooth_images(n_train + n_test, FLATNET_REFERENCE, seed=3)
    for k, scene in enumerate(scenes):
        split = "train" if k < n_train else "val"
        wnids = WNIDS[:2] if split == "train" else WNIDS[2:]
        wnid = wnids[k % len(wnids)]
        name = f"{wnid}_{1000 + k}"
        capture = f"imagenet_caps_384_12bit_Feb_19/{wnid}/{name}.png"
        reference = f"orig/{wnid}/{name}.JPEG"
        for path in (capture, reference):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
        rgb = np.full((*FLATNET_GRID, 3), 0.02)
        rgb[top : top + h, left : left + w] += 0.9 * lensless_capture(scene, window_psf)
        mosaic = np.empty((2 * FLATNET_GRID[0], 2 * FLATNET_GRID[1]))
        mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = (
            rgb[..., 0], rgb[..., 1], rgb[..., 1], rgb[..., 2]
        )
        cv2.imwrite(str(folder / capture), (mosaic * 4095).round().astype(np.uint16))
        iio.imwrite(folder / reference, (scene * 255).round().astype(np.uint8), extension=".jpeg")
        lists[f"{split}_source"].append(capture)
        lists[f"{split}_target"].append(reference)
    (folder / "text_files").mkdir(exist_ok=True)
    files = {
        "train_source": "train_source_imagenet_384_384_Feb_19.txt",
        "train_target": "train_target.txt",
        "val_source": "val_source_imagenet_384_384_Feb_19.txt",
        "val_target": "val_target.txt",
    }
    for key, name in files.items():
        (folder / "text_files" / name).write_text("".join(line + "\n" for line in lists[key]))
    return folder


def write_mirflickr(root: Path, test: range = range(2, 8), train: range = range(1001, 1013)) -> Path:
    """data/mirflickr as LenslessPiCam's DiffuserCamMirflickr reads the release: psf.tiff (uint16
    at 4x the capture side) beside dataset/, and dataset/diffuser_images/im<n>.npy and
    dataset/ground_truth_lensed/im<n>.npy (float32 [H,W,3]). All three are stored with the
    channels in BGR order and upside down; the captures are background-subtracted, so some pixels
    dip slightly below zero. Numbers <= 1000 form the published test set, the rest training;
    LenslessLearning's dataset_test.csv / dataset_train.csv list them."""
    import tifffile
    from skimage.transform import resize

    folder = root / "data/mirflickr"
    for sub in ("diffuser_images", "ground_truth_lensed"):
        (folder / "dataset" / sub).mkdir(parents=True, exist_ok=True)
    big = (MIRFLICKR_CAPTURE[0] * 4, MIRFLICKR_CAPTURE[1] * 4)
    psf_big = random_psf(big, seed=4)
    stored = lambda image: image[::-1, :, ::-1]  # upside down, BGR
    tifffile.imwrite(folder / "psf.tiff", stored(psf_big / psf_big.max() * 60000).astype(np.uint16))
    psf = resize(psf_big, MIRFLICKR_CAPTURE, anti_aliasing=True)
    psf /= psf.sum(axis=(0, 1), keepdims=True)
    numbers = [*test, *train]
    noise = np.random.default_rng(5).normal(0, 0.004, (len(numbers), *MIRFLICKR_CAPTURE, 3))
    for k, scene in enumerate(smooth_images(len(numbers), MIRFLICKR_CAPTURE, seed=5)):
        capture = 0.9 * lensless_capture(scene, psf) + noise[k]
        np.save(folder / f"dataset/diffuser_images/im{numbers[k]}.npy", stored(capture).astype(np.float32))
        np.save(folder / f"dataset/ground_truth_lensed/im{numbers[k]}.npy", stored(scene).astype(np.float32))
    for split, members in (("test", test), ("train", train)):
        rows = "".join(f"im{n}.jpg.tiff\n" for n in members)
        (folder / f"dataset_{split}.csv").write_text("filename\n" + rows)
    return folder


def write_dmdiff(root: Path, n_train: int = 10, n_pseudo: int = 4, n_test: int = 4) -> Path:
    """data/dmdiff as DMDiff's PairedDataset reads it (training_utils.py): gt_train/ lr_train/
    gt_blur_train/ gt_test/ lr_test/, PNGs paired by sorted index within a folder pair, under other
    names in lr_* than in gt_* and the same names again in the test folders. References are
    8-bit RGB at 512/400 of the captures' side covering the same field of view (the capture is a
    blurred, noisy downscale of the whole reference); pseudo captures carry ``pseudo`` in the name."""
    import imageio.v3 as iio
    from scipy.ndimage import gaussian_filter
    from skimage.transform import resize

    folder = root / "data/dmdiff"
    rng = np.random.default_rng(6)
    side = DMDIFF_REFERENCE_SIDE * 400 // 512
    counts = {"train": n_train + n_pseudo, "test": n_test}
    scenes = smooth_images(sum(counts.values()), (DMDIFF_REFERENCE_SIDE, DMDIFF_REFERENCE_SIDE), seed=7)
    k = 0
    for split, count in counts.items():
        for sub in (f"gt_{split}", f"lr_{split}") + (("gt_blur_train",) if split == "train" else ()):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            scene = scenes[k]
            k += 1
            pseudo = split == "train" and i >= n_train
            capture = resize(scene, (side, side), anti_aliasing=True)
            capture = gaussian_filter(capture, sigma=(1.0, 1.0, 0)) + rng.normal(0, 0.02 if not pseudo else 0.05, capture.shape)
            to8 = lambda image: (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
            iio.imwrite(folder / f"gt_{split}/{i:04d}.png", to8(scene))
            iio.imwrite(folder / f"lr_{split}/{i:04d}_{'pseudo' if pseudo else 'meta'}.png", to8(capture))
            if split == "train":
                iio.imwrite(folder / f"gt_blur_train/{i:04d}.png", to8(gaussian_filter(scene, sigma=(2.0, 2.0, 0))))
    return folder


def write_adm_checkpoints(root: Path, imagenet_architecture: bool = False) -> dict[str, Path]:
    """weights/adm/ffhq_10m.pt and 256x256_diffusion_uncond.pt: bare state dicts (torch.save of
    the UNetModel's parameters), as guided-diffusion and DPS publish them."""
    import torch

    from thincam.models.adm import ADMUNet, published_state_dict

    folder = root / "weights/adm"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    files = {"ffhq": folder / "ffhq_10m.pt", "imagenet": folder / "256x256_diffusion_uncond.pt"}
    ffhq_state = published_state_dict(ADMUNet("ffhq_256"))
    torch.save(ffhq_state, files["ffhq"])
    if imagenet_architecture:
        torch.save(published_state_dict(ADMUNet("imagenet_256_uncond")), files["imagenet"])
    else:  # a hard link: the stand-in costs no second 374 MB
        files["imagenet"].unlink(missing_ok=True)
        files["imagenet"].hardlink_to(files["ffhq"])
    return files


def write_sd_turbo(root: Path) -> Path:
    """weights/sd-turbo: model_index.json + vae/ unet/ text_encoder/ tokenizer/ scheduler/ of the
    SD-Turbo classes at a tiny size (random weights), the scheduler as SD-Turbo ships it (Euler)."""
    from diffusers import EulerDiscreteScheduler

    from thincam.models.dmdiff.architecture import build_tiny_base

    folder = root / "weights/sd-turbo"
    folder.mkdir(parents=True, exist_ok=True)
    base = build_tiny_base({}, image_size=32, tokenizer_dir=folder / "tokenizer")
    base.vae.save_pretrained(folder / "vae")
    base.unet.save_pretrained(folder / "unet")
    base.text_encoder.save_pretrained(folder / "text_encoder")
    base.tokenizer.save_pretrained(folder / "tokenizer")
    EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="trailing",
    ).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def write_torch_home(root: Path) -> Path:
    """weights/torch_home: LPIPS's AlexNet trunk (hub/checkpoints/) and MUSIQ-KonIQ (hub/pyiqa/),
    random weights under the published file names."""
    import pyiqa
    import torch
    import torchvision

    from thincam.models.lpips import ALEXNET_FILE
    from thincam.models.dmdiff.svda import MUSIQ_FILE

    folder = root / "weights/torch_home"
    (folder / ALEXNET_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), folder / ALEXNET_FILE)
    (folder / MUSIQ_FILE).parent.mkdir(parents=True, exist_ok=True)
    torch.save(pyiqa.create_metric("musiq", pretrained=False, device="cpu").net.state_dict(), folder / MUSIQ_FILE)
    return folder


def make_replicas(root: str | Path, imagenet_architecture: bool = False) -> Path:
    root = Path(root)
    write_ffhq(root)
    write_flatnet(root)
    write_mirflickr(root)
    write_dmdiff(root)
    write_adm_checkpoints(root, imagenet_architecture)
    write_sd_turbo(root)
    write_torch_home(root)
    return root


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="project directory to write data/ and weights/ into")
    parser.add_argument("--imagenet-adm", action="store_true", help="the ImageNet ADM at its real architecture (2.1 GB)")
    args = parser.parse_args()
    print(make_replicas(args.root, args.imagenet_adm))
