"""The GPU path measured against its limit: DDNM+ with the ADM UNet, the NSDD student, DMDiff's one step.

On a GPU (bf16 autocast, the presets' sizes): DDNM+ images/s at 256 px with the FFHQ ADM UNet and
the fraction of the H200's dense bf16 peak (989 TFLOP/s) its UNet FLOPs reach (goal >= 30 %);
NSDD images/s and its speed-up over the 100-step DDNM+ teacher; DMDiff one-step images/s at 512 px
(SD-Turbo's VAE encoder, UNet, VAE decoder; random weights, the published architecture); peak
memory of each. Without a GPU it says so and measures the same on the CPU at a reduced size (the
ADM at 32 px, the tiny SD-Turbo-class base at 64 px), in well under two minutes.

    python bench/gpu_check.py [--batch 16] [--steps 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "bench")]

from scale_model import H200_BF16_DENSE_PEAK, SD_TURBO_UNET, SD_TURBO_VAE, count_flops  # noqa: E402

TEACHER_STEPS = 100  # the presets' DDNM+ teacher


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(median seconds, peak MB) of ``fn`` after one warm-up run."""
    fn()
    synchronise(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronise(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return sorted(times)[len(times) // 2], peak


def memory(peak_mb: float) -> str:
    return f", peak memory {peak_mb:.0f} MB" if peak_mb == peak_mb else ""


def lensless_physics(side: int, device: torch.device):
    from thincam.physics.operators import LenslessConvolution

    generator = torch.Generator().manual_seed(0)
    psf = torch.zeros(3, side, side)
    psf[:, torch.randint(side, (12,), generator=generator), torch.randint(side, (12,), generator=generator)] = 1.0
    psf /= psf.sum(dim=(-2, -1), keepdim=True)
    return LenslessConvolution(psf, boundary="circular", pinv={"kind": "tsvd", "threshold": 0.03}).to(device)


def check_ddnm_and_nsdd(device, side, batch, steps, bf16, repeats) -> list[str]:
    from thincam.models.adm import ADMUNet, adm_scheduler
    from thincam.models.nsdd import build_student
    from thincam.solvers.ddnm import ddnm_plus

    dtype = torch.bfloat16 if bf16 else None
    physics = lensless_physics(side, device)
    unet = ADMUNet("ffhq_256").eval().requires_grad_(False).to(device)
    scheduler = adm_scheduler()
    x = torch.rand(batch, 3, side, side, device=device)
    y = physics.A(x)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        unet_flops = count_flops(lambda: unet(x, torch.tensor([500], device=device)))

    def ddnm():
        ddnm_plus(physics, y, unet, scheduler, steps=steps, eta=0.85, sigma_y=0.01, form="svd", dtype=dtype)

    seconds, peak = timed(ddnm, device, repeats)
    ddnm_ips = batch / seconds
    achieved = steps * unet_flops / seconds
    lines = [
        f"DDNM+ ({steps} steps, ADM ffhq_256, {side} px, batch {batch}): {ddnm_ips:.3f} images/s, "
        f"UNet {unet_flops / batch / 1e9:.1f} GFLOP per image-step, {achieved / 1e12:.3f} TFLOP/s achieved"
        + (f" = {achieved / H200_BF16_DENSE_PEAK:.1%} of the H200 bf16 dense peak" if device.type == "cuda" else "")
        + memory(peak)
    ]
    student = build_student(unet, scheduler, {"t_fixed": 100, "adapter_channels": 64, "mode": "null"}).to(device)
    student.eval().bf16 = bf16
    with torch.no_grad():
        seconds, peak = timed(lambda: student(y, physics), device, repeats)
    nsdd_ips = batch / seconds
    teacher_ips = ddnm_ips * steps / TEACHER_STEPS  # the sampler's cost is linear in its steps
    lines.append(
        f"NSDD student ({side} px, batch {batch}): {nsdd_ips:.3f} images/s, {nsdd_ips / teacher_ips:.0f}x the "
        f"{TEACHER_STEPS}-step DDNM+ teacher ({teacher_ips:.4f} images/s){memory(peak)}"
    )
    return lines


def dmdiff_nets(device: torch.device, side: int):
    """(VAE, UNet, text width): SD-Turbo's architecture on a GPU, the tiny base class on the CPU."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if device.type == "cuda":
        return AutoencoderKL(**SD_TURBO_VAE), UNet2DConditionModel(**SD_TURBO_UNET), 1024, "SD-Turbo architecture"
    from thincam.models.dmdiff.architecture import build_tiny_base

    base = build_tiny_base({}, image_size=side)
    return base.vae, base.unet, base.text_encoder.config.hidden_size, "tiny SD-Turbo-class base"


def check_dmdiff(device, side, batch, bf16, repeats) -> list[str]:
    vae, unet, text_dim, what = dmdiff_nets(device, side)
    vae, unet = vae.eval().to(device), unet.eval().to(device)
    images = torch.rand(batch, 3, side, side, device=device)
    text = torch.randn(batch, 16, text_dim, device=device)

    def one_step():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z = vae.encode(2 * images - 1).latent_dist.mode()
            z0 = unet(z, torch.tensor([999], device=device), encoder_hidden_states=text).sample
            vae.decode(z0)

    seconds, peak = timed(one_step, device, repeats)
    return [f"DMDiff one step ({what}, {side} px, batch {batch}): {batch / seconds:.3f} images/s{memory(peak)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"GPU: {torch.cuda.get_device_name(device)}; bf16 autocast; the presets' sizes")
        lines = check_ddnm_and_nsdd(device, 256, args.batch, args.steps, True, args.repeats)
        lines += check_dmdiff(device, 512, args.batch, True, args.repeats)
    else:
        device = torch.device("cpu")
        print("No GPU available: measuring the same on the CPU at reduced size (float32, batch 1); "
              "the fraction of the GPU peak needs a GPU.")
        lines = check_ddnm_and_nsdd(device, 32, 1, 3, False, 1)
        lines += check_dmdiff(device, 64, 1, False, 1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
