"""Scale model of the paper-scale presets: GPU hours and wall time from measured per-image FLOPs.

Per-image cost of each network forward is counted by ``torch.utils.flop_counter.FlopCounterMode``
at the preset's real sizes on the meta device (shapes only, no compute), and its CPU time is
measured at a reduced size as a sanity check of the counter. Stage costs = forward FLOPs x forwards
per image (DDNM+: steps; DPS: 3 x steps for forward + backward; training: 3 x batch per step) x the
preset's dataset sizes. GPU time assumes an H200 at its dense bf16 peak of 989 TFLOP/s running at
``--utilisation`` (default 30 %, the issue's goal for the sampler UNets; an assumption until
bench/gpu_check.py measures it). Wiener/ADMM (FFTs, seconds per image) and data I/O are left out.

Wall time on N GPUs: stages run in dependency phases (teacher shards and the sampler baselines,
then the students, then their reconstructions; DMDiff: negative path, pseudo pairs, the trained
variants, their restorations), each phase's jobs scheduled longest-first over the N GPUs. The job
count of each preset's plan is that of ``snakemake -n`` on the replica (tests/make_replicas.py).

    python bench/scale_model.py [--gpus 8] [--utilisation 0.3] [--markdown README.md [--details bench/README.md]]

``--markdown FILE`` writes the printed block between the markers of FILE (README.md's "Paper-scale
presets" has them), so the README's numbers are this script's output, never typed; a FILE that
does not exist yet gets the block alone. With ``--details FILE2`` the summary table goes to FILE
and the per-stage tables between FILE2's markers (bench/README.md).
"""

from __future__ import annotations

import argparse
import heapq
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

H200_BF16_DENSE_PEAK = 989e12  # FLOP/s
# The DMDiff release's training part: 7,800 real and 10,921 pseudo pairs (its README).
DMDIFF_RELEASE_PSEUDO_SHARE = 10921 / (7800 + 10921)
COMMAND = "python bench/scale_model.py --markdown README.md --details bench/README.md"
BEGIN = f"<!-- begin: printed by `{COMMAND}`; edit the script, not this block -->"
END = "<!-- end: printed by bench/scale_model.py -->"
# The published SD-Turbo (SD 2.1 architecture) configs, for its FLOPs.
SD_TURBO_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    attention_head_dim=(5, 10, 20, 20),
    cross_attention_dim=1024,
    use_linear_projection=True,
)
SD_TURBO_VAE = dict(
    in_channels=3,
    out_channels=3,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)


def count_flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def adm_forward_flops(architecture: str, shape: tuple[int, int]) -> float:
    from thincam.models.adm import ADMUNet

    with torch.device("meta"):
        unet = ADMUNet(architecture)
        x = torch.empty(1, 3, *shape)
        return count_flops(lambda: unet(x, torch.tensor([500])))


def sd_turbo_flops(shape: tuple[int, int]) -> dict[str, float]:
    """Per-image FLOPs of SD-Turbo's VAE encoder, UNet (one step) and VAE decoder at ``shape``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        vae, unet = AutoencoderKL(**SD_TURBO_VAE), UNet2DConditionModel(**SD_TURBO_UNET)
        image = torch.empty(1, 3, *shape)
        latent = torch.empty(1, 4, shape[0] // 8, shape[1] // 8)
        text = torch.empty(1, 77, 1024)
        return {
            "encoder": count_flops(lambda: vae.encode(image)),
            "unet": count_flops(lambda: unet(latent, torch.tensor([999]), encoder_hidden_states=text)),
            "decoder": count_flops(lambda: vae.decode(latent)),
        }


def cpu_check(architecture: str = "ffhq_256", side: int = 32) -> dict[str, float]:
    """Counted FLOPs and measured CPU seconds of one ADM forward at a reduced size."""
    from thincam.models.adm import ADMUNet

    unet = ADMUNet(architecture).eval()
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        flops = count_flops(lambda: unet(x, torch.tensor([500])))
        unet(x, torch.tensor([500]))
        start = time.perf_counter()
        unet(x, torch.tensor([500]))
        seconds = time.perf_counter() - start
    return {"side": side, "gflop": flops / 1e9, "cpu_s": seconds, "cpu_gflops": flops / seconds / 1e9}


def makespan(jobs: list[float], n_gpus: int) -> float:
    """Longest-processing-time-first schedule of job durations over ``n_gpus``."""
    loads = [0.0] * max(1, n_gpus)
    heapq.heapify(loads)
    for job in sorted(jobs, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + job)
    return max(loads)


def timing_images(config: dict, n_test: int) -> int:
    """Extra forwards of the timed single-image runs, in images (at most: ``min_timed_s`` stops
    a slow method's repeats early)."""
    timing = config["timing"]
    n_timed = min(n_test, timing.get("n_images") or n_test)
    return timing["warmup"] + n_timed * timing["repeats"]


def preset_stages(config: dict, flop_rate: float) -> list[tuple[str, int, list[float], int]]:
    """(stage, phase, [GPU seconds per job], GPUs per job) for one preset.

    A training job runs on ``train_gpus`` GPUs (its GPU seconds unchanged, its wall time divided
    by them; the gradient all-reduce is not modelled).
    """
    split = int(config.get("train_gpus", 1))
    stages = []
    for name, dataset in config["datasets"].items():
        shape = tuple(dataset["image_size"])
        n_train, n_test = dataset["splits"]["train"], dataset["splits"]["test"]
        n_test_all = n_test + timing_images(config, n_test)
        methods = dataset.get("methods", {})
        if "prior" in dataset:
            prior = config["priors"][dataset["prior"]]
            forward = adm_forward_flops(prior["architecture"], shape)
            for variant, p in methods.get("ddnm", {}).items():
                stages.append((f"{name} DDNM+ {variant}", 1, [n_test_all * p["steps"] * forward / flop_rate], 1))
            for variant, p in methods.get("dps", {}).items():
                stages.append((f"{name} DPS {variant}", 1, [3 * n_test_all * p["steps"] * forward / flop_rate], 1))
            if "nsdd" in dataset:
                nsdd = dataset["nsdd"]
                per_shard = n_train / nsdd["n_shards"] * nsdd["teacher"]["steps"] * forward / flop_rate
                stages.append((f"{name} teacher targets", 1, [per_shard] * nsdd["n_shards"], 1))
                student = nsdd["student"]
                train = 3 * student["steps"] * student["batch_size"] * forward / flop_rate
                students = [s for s in ("nsdd", "nsdd_full") if s in methods]
                stages.append((f"{name} NSDD distillation", 2, [train] * len(students), split))
                recon = [n_test_all * forward / flop_rate for s in students for _ in methods[s]]
                stages.append((f"{name} NSDD reconstruction", 3, recon, 1))
        if "dmdiff" in dataset:
            spec = dataset["dmdiff"]
            flops = sd_turbo_flops(shape)
            one_pass = sum(flops.values())
            train = spec["train"]
            step = 3 * train["batch_size"] * one_pass  # the loss backpropagates through the frozen decoder
            negative = train["steps"] * step / flop_rate
            stages.append((f"{name} DMDiff negative path", 1, [negative], split))
            unpaired = spec["unpaired"]
            if unpaired == "release":  # the release's pseudo pairs, in proportion in the training subset
                unpaired = round(dataset["splits"]["train"] * DMDIFF_RELEASE_PSEUDO_SHARE)
            stages.append((f"{name} DMDiff pseudo pairs", 2, [unpaired * one_pass / flop_rate], 1))
            models = [train.get("steps") * step / flop_rate for _ in spec["models"]]
            stages.append((f"{name} DMDiff training ({len(models)} models)", 3, models, split))
            per_image = flops["encoder"] + 2 * flops["unet"] + flops["decoder"]
            restores = [n_test_all * per_image / flop_rate for _ in methods.get("dmdiff", {})]
            stages.append((f"{name} DMDiff restoration", 4, restores, 1))
    return stages


def planned_job_count(name: str, replica: Path) -> int:
    from workflow_helpers import planned_jobs, preset_on_replica, run_snakemake

    config = preset_on_replica(name)
    workdir = replica / f"plan-{name}"
    workdir.mkdir(exist_ok=True)
    for sub in ("data", "weights"):
        if not (workdir / sub).exists():
            (workdir / sub).symlink_to(replica / sub)
    result = run_snakemake(workdir, config, "-n", timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake -n failed for {name}: {result.stderr[-2000:]}")
    return sum(planned_jobs(result).values())


def gpu_hours(stages: list[tuple[str, int, list[float], int]], n_gpus: int) -> tuple[float, float]:
    """(GPU hours, wall hours on ``n_gpus``): phases run one after the other, each scheduled
    longest job first."""
    total = sum(sum(j) for _, _, j, _ in stages) / 3600
    phases = sorted({phase for _, phase, _, _ in stages})
    # a job on g GPUs: g equal parts, one per GPU
    parts = [(p, j / g) for _, p, js, g in stages for j in js for _ in range(g)]
    wall = sum(makespan([j for p, j in parts if p == phase], n_gpus) for phase in phases) / 3600
    return total, wall


def summary(rows: list[tuple[str, int, float, float]], n_gpus: int, utilisation: float) -> str:
    """One line per preset: (name, jobs in the plan, GPU hours, wall hours)."""
    lines = [
        f"| preset | jobs in the plan | H200 GPU hours at {utilisation:.0%} of peak | wall on {n_gpus} GPUs |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| `{name}` | {jobs} | {hours:,.1f} | {wall:,.1f} h |" for name, jobs, hours, wall in rows]
    return "\n".join(lines)


def table(name: str, stages: list[tuple[str, int, list[float], int]], n_gpus: int, utilisation: float, jobs: int) -> str:
    lines = [
        f"#### {name} ({jobs} jobs in the plan; H200 bf16 dense peak 989 TFLOP/s at {utilisation:.0%})",
        "",
        "| stage | jobs | GPU hours |",
        "|---|---:|---:|",
    ]
    for stage, _, jobs_s, _ in stages:
        lines.append(f"| {stage} | {len(jobs_s)} | {sum(jobs_s) / 3600:,.1f} |")
    total, wall = gpu_hours(stages, n_gpus)
    lines.append(f"| **total** | {sum(len(j) for _, _, j, _ in stages)} | **{total:,.1f}** |")
    lines.append("")
    lines.append(f"Wall time on {n_gpus} GPUs with the configured shards: **{wall:,.1f} h** ({wall / 24:,.1f} days).")
    return "\n".join(lines)


def write_markdown(path: Path, block: str) -> None:
    """``block`` between ``path``'s markers (the rest of the file kept), or as a new file."""
    marked = f"{BEGIN}\n\n{block}\n\n{END}"
    if not path.exists():
        path.write_text(marked + "\n")
        return
    text = path.read_text()
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{path} exists without the markers {BEGIN!r} ... {END!r}; not overwriting it")
    path.write_text(text[:begin] + marked + text[end + len(END) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--utilisation", type=float, default=0.3)
    parser.add_argument("--markdown", type=Path, help="also write the block between this file's markers")
    parser.add_argument(
        "--details", type=Path, help="write the per-stage tables between this file's markers, the summary alone to --markdown"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    from make_replicas import make_replicas

    check = cpu_check()
    counter_check = (
        f"Counter check: one FFHQ-ADM forward at {check['side']} px counts {check['gflop']:.2f} GFLOP and took "
        f"{check['cpu_s']:.3f} s on one CPU thread ({check['cpu_gflops']:.0f} GFLOP/s)."
    )
    flop_rate = H200_BF16_DENSE_PEAK * args.utilisation
    rows, tables = [], []
    with tempfile.TemporaryDirectory(prefix="thincam-scale-") as scratch:
        replica = make_replicas(Path(scratch))
        for preset in sorted((REPO / "presets").glob("*.yaml")):
            stages = preset_stages(yaml.safe_load(preset.read_text()), flop_rate)
            jobs = planned_job_count(preset.stem, replica)
            rows.append((preset.stem, jobs, *gpu_hours(stages, args.gpus)))
            tables.append(table(preset.stem, stages, args.gpus, args.utilisation, jobs))
    text = "\n\n".join([summary(rows, args.gpus, args.utilisation), counter_check, *tables])
    print(text)
    if args.markdown:
        write_markdown(args.markdown, summary(rows, args.gpus, args.utilisation) if args.details else text)
    if args.details:
        write_markdown(args.details, "\n\n".join([counter_check, *tables]))


if __name__ == "__main__":
    main()
