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

# Published size -> replica size (same aspect): FFHQ 1024^2; FlatNet captures 1518x2012 (RGB,
# 12-bit values in 16-bit PNGs); Mirflickr 270x480x3 .npy and a 4x PSF; metalens pairs 400^2.
FFHQ_SIDE = 32
FLATNET_CAPTURE = (76, 100)
FLATNET_REFERENCE = (48, 64)
MIRFLICKR_CAPTURE = (27, 48)
METALENS_SIDE = 40
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


def write_flatnet(root: Path, n: int = 24) -> Path:
    """data/flatnet: imagenet_caps_384_12bit_Feb_19/<wnid>/<wnid>_<k>.png (uint16 RGB holding
    12-bit values), orig/<wnid>/<wnid>_<k>.JPEG (8-bit RGB), phase_psf/psf.npy (float32 [H,W,3])."""
    import cv2
    import imageio.v3 as iio

    folder = root / "data/flatnet"
    psf = random_psf(FLATNET_CAPTURE, seed=2)
    (folder / "phase_psf").mkdir(parents=True, exist_ok=True)
    np.save(folder / "phase_psf/psf.npy", (psf / psf.max()).astype(np.float32))
    for k, scene in enumerate(smooth_images(n, FLATNET_REFERENCE, seed=3)):
        wnid = WNIDS[k % len(WNIDS)]
        name = f"{wnid}_{1000 + k}"
        capture = folder / "imagenet_caps_384_12bit_Feb_19" / wnid / f"{name}.png"
        reference = folder / "orig" / wnid / f"{name}.JPEG"
        capture.parent.mkdir(parents=True, exist_ok=True)
        reference.parent.mkdir(parents=True, exist_ok=True)
        counts = (lensless_capture(scene, psf) * 0.9 * 4095).round().astype(np.uint16)
        cv2.imwrite(str(capture), counts[..., ::-1])  # 16-bit RGB PNG (Pillow writes 8-bit only)
        iio.imwrite(reference, (scene * 255).round().astype(np.uint8), extension=".jpeg")
    return folder


def write_mirflickr(root: Path, n: int = 24) -> Path:
    """data/mirflickr: diffuser_images/im<k>.npy and ground_truth_lensed/im<k>.npy (float32
    [H,W,3] in [0,1], BGR), psf.tiff (uint16 RGB at 4x the capture side)."""
    import tifffile
    from skimage.transform import resize

    folder = root / "data/mirflickr"
    for sub in ("diffuser_images", "ground_truth_lensed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    big = (MIRFLICKR_CAPTURE[0] * 4, MIRFLICKR_CAPTURE[1] * 4)
    psf_big = random_psf(big, seed=4)
    tifffile.imwrite(folder / "psf.tiff", (psf_big / psf_big.max() * 60000).astype(np.uint16))
    psf = resize(psf_big, MIRFLICKR_CAPTURE, anti_aliasing=True)
    psf /= psf.sum(axis=(0, 1), keepdims=True)
    for k, scene in enumerate(smooth_images(n, MIRFLICKR_CAPTURE, seed=5), start=1):
        capture = lensless_capture(scene, psf)
        np.save(folder / f"diffuser_images/im{k}.npy", capture[..., ::-1].astype(np.float32))
        np.save(folder / f"ground_truth_lensed/im{k}.npy", scene[..., ::-1].astype(np.float32))
    return folder


def write_metalens_pairs(root: Path, n: int = 24) -> Path:
    """data/metalens: measurements/<k>.png and references/<k>.png, aligned 8-bit RGB squares."""
    import imageio.v3 as iio
    from scipy.ndimage import gaussian_filter

    folder = root / "data/metalens"
    for sub in ("measurements", "references"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    for k, scene in enumerate(smooth_images(n, (METALENS_SIDE, METALENS_SIDE), seed=7)):
        blurred = gaussian_filter(scene, sigma=(1.5, 1.5, 0)) + rng.normal(0, 0.02, scene.shape)
        iio.imwrite(folder / f"measurements/{k:04d}.png", (np.clip(blurred, 0, 1) * 255).round().astype(np.uint8))
        iio.imwrite(folder / f"references/{k:04d}.png", (scene * 255).round().astype(np.uint8))
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
    write_metalens_pairs(root)
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
