"""NSDD student vs its DDNM+ teacher: same prior, same images, same device.

Reports the latency ratio DDNM+/NSDD, the peak-memory ratio, and each method's UNet evaluations
per image. The goal: speed-up >= 0.8 x (teacher's UNet evaluations / student's), and no more peak
memory than the teacher. Each method runs in its own fresh process so neither inherits the other's
allocations. Peak memory: ``torch.cuda.max_memory_allocated`` on GPU; on CPU the process's peak
resident memory (VmHWM, reset just before the timed calls) minus the resident memory just before
them, i.e. what the calls added on top of weights and data (thincam.metrics.timing.measure_latency).
PSNR against ``x`` is reported where the data file has it (evaluation only, never training).

    python bench/nsdd_vs_teacher.py --data results/data/faces/test.h5 --psf results/psf/dots.h5 \\
        --prior results/prior/faces --student results/nsdd/faces --device cpu --n 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**10
    return float("nan")


def worker(args) -> dict:
    """Load one method, count its UNet evaluations, then time it; print one JSON line."""
    import torch

    from thincam.data.h5io import json_attr, read_h5
    from thincam.metrics.timing import measure_latency
    from thincam.models.prior import load_prior
    from thincam.stages.common import load_operator

    torch.manual_seed(args.seed)
    arrays, attrs = read_h5(args.data, contract="dataset")
    operator = json.loads(args.operator) if args.operator else json_attr(attrs, "operator")
    physics = load_operator(args.psf, operator, device=args.device)
    y = torch.from_numpy(arrays["y"][: args.n]).to(args.device)

    if args.worker == "ddnm":
        from thincam.solvers.ddnm import ddnm_plus

        unet, scheduler = load_prior(args.prior, device=args.device)

        def run():
            gen = torch.Generator().manual_seed(args.seed)
            return ddnm_plus(
                physics,
                y,
                unet,
                scheduler,
                steps=args.steps,
                eta=args.eta,
                sigma_y=args.sigma_y,
                form=args.form,
                generator=gen,
            )
    else:
        from thincam.models.nsdd import load_student, nsdd_reconstruct

        student = load_student(args.student).to(args.device)
        unet = student.unet

        def run():
            return nsdd_reconstruct(student, physics, y, batch_size=len(y))

    evaluations = []
    hook = unet.register_forward_pre_hook(lambda module, inputs: evaluations.append(inputs[0].shape[0]))
    with torch.no_grad():
        xhat = run()
    hook.remove()
    result = {
        "method": args.worker,
        "unet_evals_per_image": sum(evaluations) / len(y),
        "n_images": len(y),
        "consistency": float(torch.linalg.vector_norm(physics.A(xhat) - y) / torch.linalg.vector_norm(y)),
    }
    if "x" in arrays:
        x = torch.from_numpy(arrays["x"][: args.n]).to(xhat.device)
        mse = ((xhat.clamp(0, 1) - x) ** 2).flatten(1).mean(1)
        result["psnr_db"] = float((-10 * torch.log10(mse)).mean())
    rss_before = _rss_mb()
    with torch.no_grad():
        latency, peak_mb = measure_latency(run, warmup=args.warmup, repeats=args.repeats, device=args.device)
    result["latency_s_per_image"] = latency / len(y)
    if args.device.startswith("cuda"):
        result["peak_mem_mb"] = peak_mb
        result["peak_mem_kind"] = "torch.cuda.max_memory_allocated"
    else:
        result["peak_mem_mb"] = peak_mb - rss_before
        result["peak_rss_mb"] = peak_mb
        result["peak_mem_kind"] = "CPU VmHWM over the timed calls minus VmRSS before them"
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset HDF5 (contract 'dataset') holding y")
    parser.add_argument("--psf", required=True)
    parser.add_argument("--prior", required=True, help="prior folder (the teacher's and the student's)")
    parser.add_argument("--student", required=True, help="distill_nsdd output folder")
    parser.add_argument("--operator", help="operator JSON; default: the dataset's attrs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=8, help="images (one batch)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--eta", type=float, default=0.85)
    parser.add_argument("--sigma-y", type=float, default=0.01)
    parser.add_argument("--form", default="svd", choices=["scalar", "svd"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the result JSON here")
    parser.add_argument("--worker", choices=["ddnm", "nsdd"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    if args.worker:
        print(json.dumps(worker(args)))
        return {}

    forwarded = sys.argv[1:] if argv is None else list(argv)
    runs = {}
    for method in ("ddnm", "nsdd"):
        proc = subprocess.run(
            [sys.executable, os.path.abspath(__file__), *forwarded, "--worker", method],
            check=True,
            capture_output=True,
            text=True,
        )
        runs[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    teacher, student = runs["ddnm"], runs["nsdd"]
    speedup = teacher["latency_s_per_image"] / student["latency_s_per_image"]
    eval_ratio = teacher["unet_evals_per_image"] / student["unet_evals_per_image"]
    summary = {
        "device": args.device,
        "ddnm": teacher,
        "nsdd": student,
        "latency_ratio_ddnm_over_nsdd": speedup,
        "unet_eval_ratio": eval_ratio,
        "speedup_goal": 0.8 * eval_ratio,
        "speedup_goal_met": speedup >= 0.8 * eval_ratio,
        "peak_mem_ratio_ddnm_over_nsdd": teacher["peak_mem_mb"] / max(student["peak_mem_mb"], 1e-9),
        "memory_goal_met": student["peak_mem_mb"] <= teacher["peak_mem_mb"],
    }
    text = json.dumps(summary, indent=2)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return summary


if __name__ == "__main__":
    main()
