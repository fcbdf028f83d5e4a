"""Peak memory of ingestion and simulation at 1,000 and 10,000 images, and the loader's speed
against what a UNet consumes.

Ingestion and simulation stream their files (``thincam.data.h5io.streaming_h5``), so their peak
memory should not grow with the number of images: the goal is a peak ratio (10,000 / 1,000) of at
most 1.2. Each size runs in a fresh process that reports its own peak RSS.

- ingest: a synthetic DiffuserCam Mirflickr release at the preset's size (270x480x3 float32
  captures and references, BGR, upside down; a 4x PSF), its files hard links to 16 distinct
  pairs so that 10,000 images cost no disk; all of them in the published training part.
- simulate: an FFHQ-layout folder of 256x256 PNGs (hard links to 16 faces) through the preset's
  lensless camera at 256 px.

Speed: images/s of ingestion, and of reading the written training file back one block at a time
(``read_rows``, as the teacher and reconstruction jobs read it), beside the images/s one UNet
consumes: the FFHQ ADM's training step (forward + backward: 3 forwards) and a 100-step DDNM+
sampler, measured on this CPU at 256 px and predicted for an H200 from the forward FLOPs
(``bench/scale_model.py``: 989 TFLOP/s bf16 dense at 30 %).

    python bench/ingest_memory.py [--sizes 1000 10000] [--what ingest simulate]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]

DISTINCT = 16
MIRFLICKR_SHAPE = (270, 480)
FFHQ_SIDE = 256

# The child's own peak is VmHWM of its process image: ru_maxrss would also count the parent's
# memory at the fork, which Linux carries over the exec.
CHILD = """
import json, re, sys, time
sys.path.insert(0, {src!r})
from thincam.stages.measurements import {function}
args = json.loads(sys.argv[1])
start = time.perf_counter()
{function}(*args)
elapsed = time.perf_counter() - start
peak_kb = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({{"peak_mb": peak_kb / 1024, "seconds": elapsed}}))
"""


def lensless_camera(path: str | None, size, downsample: int, fmt: str | None) -> dict:
    base = {"channels": 3, "size": list(size), "pixel_pitch_um": 13.8, "seed": 0}
    if path is None:
        return {**base, "kind": "sparse_dots", "n_dots": 40, "blur_px": 1.0}
    return {
        **base, "kind": "capture", "path": path, "format": fmt, "dark_path": None, "bit_depth": None,
        "background": "corner", "downsample": downsample, "hot_pixel_sigma": 6.0, "center": False,
    }  # fmt: skip


def write_mirflickr(root: Path, n: int) -> Path:
    """dataset/diffuser_images and ground_truth_lensed with im1001 ... im(1000+n), hard links to
    :data:`DISTINCT` pairs, and psf.tiff."""
    import tifffile

    rng = np.random.default_rng(0)
    release = root / "mirflickr"
    for sub in ("diffuser_images", "ground_truth_lensed"):
        (release / "dataset" / sub).mkdir(parents=True)
    psf = np.zeros((MIRFLICKR_SHAPE[0] * 4, MIRFLICKR_SHAPE[1] * 4, 3), np.uint16)
    psf[rng.integers(0, psf.shape[0], 40), rng.integers(0, psf.shape[1], 40)] = 60000
    tifffile.imwrite(release / "psf.tiff", psf)
    originals = []
    for k in range(DISTINCT):
        pair = []
        for sub in ("diffuser_images", "ground_truth_lensed"):
            path = root / f"{sub}_{k}.npy"
            np.save(path, (0.9 * rng.random((*MIRFLICKR_SHAPE, 3))).astype(np.float32))
            pair.append(path)
        originals.append(pair)
    for i in range(n):
        for path, sub in zip(originals[i % DISTINCT], ("diffuser_images", "ground_truth_lensed")):
            os.link(path, release / "dataset" / sub / f"im{1001 + i}.npy")
    return release


def write_ffhq(root: Path, n: int) -> Path:
    import imageio.v3 as iio

    folder = root / "ffhq"
    folder.mkdir()
    rng = np.random.default_rng(1)
    originals = []
    for k in range(DISTINCT):
        path = root / f"face_{k}.png"
        iio.imwrite(path, rng.integers(0, 256, (FFHQ_SIDE, FFHQ_SIDE, 3), dtype=np.uint8))
        originals.append(path)
    for i in range(n):
        sub = folder / f"{i // 1000 * 1000:05d}"
        sub.mkdir(exist_ok=True)
        os.link(originals[i % DISTINCT], sub / f"{i:05d}.png")
    return folder


def run_child(function: str, args: list) -> dict:
    code = CHILD.format(src=str(REPO / "src"), function=function)
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_speed(path: Path) -> float:
    """Images/s of reading ``y`` and ``index`` back one block at a time, verifying each block."""
    from thincam.data.h5io import BLOCK_ROWS, n_rows, read_rows

    n = n_rows(path, "y")
    start = time.perf_counter()
    for block in range(0, n, BLOCK_ROWS):
        read_rows(path, ["y", "index"], np.arange(block, min(block + BLOCK_ROWS, n)), contract="dataset")
    return n / (time.perf_counter() - start)


def measure(what: str, n: int, scratch: Path) -> dict:
    from thincam.stages.calibrate import calibrate_psf

    root = Path(tempfile.mkdtemp(dir=scratch))
    outs = {split: str(root / f"out/{split}.h5") for split in ("train", "val", "test")}
    operator = {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 1e-3, "iters": 5}}
    if what == "ingest":
        release = write_mirflickr(root, n)
        calibrate_psf(lensless_camera(str(release / "psf.tiff"), MIRFLICKR_SHAPE, 4, "mirflickr"), root / "psf.h5")
        dataset = {
            "camera": "diffusercam", "image_size": list(MIRFLICKR_SHAPE),
            "captures": {"format": "mirflickr", "path": str(release), "background": "none", "downsample": 1},
            "operator": operator, "splits": {"train": n, "val": 0, "test": 0},
        }  # fmt: skip
        result = run_child("ingest_captures", [str(root / "psf.h5"), dataset, "bench", outs, 0])
    else:
        folder = write_ffhq(root, n)
        calibrate_psf(lensless_camera(None, (FFHQ_SIDE, FFHQ_SIDE), 1, None), root / "psf.h5")
        dataset = {
            "camera": "mask", "image_size": [FFHQ_SIDE, FFHQ_SIDE],
            "source": {"kind": "ffhq", "path": str(folder), "n_images": n},
            "noise": {"poisson_gain": 0.0, "gaussian_sigma": 0.01, "bit_depth": 12},
            "operator": operator, "splits": {"train": n, "val": 0, "test": 0},
        }  # fmt: skip
        result = run_child("simulate_measurements", [str(root / "psf.h5"), dataset, "bench", outs, 0])
    result["images_per_s"] = n / result["seconds"]
    result["read_images_per_s"] = read_speed(Path(outs["train"]))
    result["file_gb"] = Path(outs["train"]).stat().st_size / 1e9
    subprocess.run(["rm", "-rf", str(root)], check=True)
    return result


def unet_consumption() -> dict:
    """Images/s one FFHQ ADM consumes at 256 px: measured on this CPU, predicted for an H200."""
    import torch
    from scale_model import H200_BF16_DENSE_PEAK, adm_forward_flops

    from thincam.models.adm import ADMUNet

    torch.manual_seed(0)
    unet = ADMUNet("ffhq_256").eval().requires_grad_(False)
    x = torch.randn(1, 3, FFHQ_SIDE, FFHQ_SIDE)
    with torch.no_grad():
        unet(x, torch.tensor([500]))
        start = time.perf_counter()
        unet(x, torch.tensor([500]))
        forward_s = time.perf_counter() - start
    gpu_forward_s = adm_forward_flops("ffhq_256", (FFHQ_SIDE, FFHQ_SIDE)) / (H200_BF16_DENSE_PEAK * 0.3)
    return {
        "cpu_train_images_per_s": 1 / (3 * forward_s),
        "cpu_ddnm100_images_per_s": 1 / (100 * forward_s),
        "h200_train_images_per_s": 1 / (3 * gpu_forward_s),
        "h200_ddnm100_images_per_s": 1 / (100 * gpu_forward_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--what", nargs="+", default=["ingest", "simulate"], choices=["ingest", "simulate"])
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="folder for the synthetic releases and outputs")
    args = parser.parse_args()
    consumption = unet_consumption()
    print("UNet consumption (FFHQ ADM, 256 px, images/s): " + json.dumps({k: round(v, 3) for k, v in consumption.items()}))
    print(f"{'what':9s} {'images':>7s} {'peak MB':>8s} {'images/s':>9s} {'read images/s':>13s} {'file GB':>8s}")
    for what in args.what:
        peaks = []
        for n in args.sizes:
            result = measure(what, n, Path(args.scratch))
            peaks.append(result["peak_mb"])
            print(
                f"{what:9s} {n:7d} {result['peak_mb']:8.0f} {result['images_per_s']:9.1f} "
                f"{result['read_images_per_s']:13.1f} {result['file_gb']:8.2f}",
                flush=True,
            )
        print(f"{what}: peak ratio {args.sizes[-1]} / {args.sizes[0]} images = {peaks[-1] / peaks[0]:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
