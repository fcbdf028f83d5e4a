"""How long Snakemake takes to plan the workflow, and to find nothing to do.

1. `snakemake -n` of the default workflow (config.yaml) in an empty work directory, with the
   NSDD teacher targets split into N shards (`datasets.<name>.nsdd.n_shards`, one ddnm_targets
   job each): the configured count as a baseline, then 1,000 (goal <= 15 s).
2. The no-op re-run (`snakemake --cores 2` when everything is up to date) of a finished results
   directory (goal <= 10 s): --results DIR (a work directory holding results/ and .snakemake/
   of a finished run of its config.yaml, or of the default config when it has none), or
   --build-tiny to first run the whole workflow on the tests' tiny config in a temporary folder
   (minutes), then time the re-run there.

    .venv/bin/python bench/dryrun_scaling.py [--shards 4 1000] [--results DIR | --build-tiny]

Medians of --repeats runs (after one warm-up, which fills the OS cache of the imports); the goals
are judged on wall time, printed with the CPU time (user + sys) and the load average, since on a
busy machine the wall time is mostly waiting for a core.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
GOAL_DRYRUN_S = 15.0
GOAL_NOOP_S = 10.0
PATH_KEYS = {"path", "dark_path", "weights_dir", "lpips_weights_dir"}


def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def absolute_paths(node):
    """Input paths of the config made absolute, so it runs from any work directory."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in PATH_KEYS and isinstance(value, str) and (REPO / value).exists():
                value = str(REPO / value)
            out[key] = absolute_paths(value)
        return out
    if isinstance(node, list):
        return [absolute_paths(v) for v in node]
    return node


def config_with_shards(config: dict, n_shards: int) -> dict:
    """The config with every dataset's NSDD teacher targets in ``n_shards`` shards.

    Adjust here if the shard count moves to another key.
    """
    config = copy.deepcopy(config)
    found = False
    for dataset in config["datasets"].values():
        if "nsdd" in dataset:
            dataset["nsdd"]["n_shards"] = n_shards
            found = True
    if not found:
        raise SystemExit("no dataset has an `nsdd` section: nothing to shard")
    return config


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: int = 600):
    command = [str(SNAKEMAKE), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    command += list(args)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, cwd=workdir, env=env, timeout=timeout
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    # CPU seconds of snakemake (user + sys): what the wall time would be on an idle machine.
    done.cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, done


def job_count(output: str) -> int:
    """The `total` row of Snakemake's job stats table."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return -1


def time_dryrun(n_shards: int, repeats: int, quiet: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="thincam-dryrun-") as tmp:
        workdir = Path(tmp)
        configfile = workdir / "config.yaml"
        config = config_with_shards(absolute_paths(default_config()), n_shards)
        configfile.write_text(yaml.safe_dump(config, sort_keys=False))
        args = ["-n", *(["-q"] if quiet else []), "--cores", "2"]
        times, cpu, output = [], [], ""
        for i in range(repeats + 1):
            elapsed, done = snakemake(workdir, *args, configfile=configfile)
            output = done.stdout + done.stderr
            if i:
                times.append(elapsed)
                cpu.append(done.cpu_s)
    return {
        "n_shards": n_shards,
        "quiet": quiet,
        "jobs": job_count(output),
        "median_s": round(statistics.median(times), 2),
        "median_cpu_s": round(statistics.median(cpu), 2),
        "runs_s": [round(t, 2) for t in times],
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def build_tiny(workdir: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from workflow_helpers import run_snakemake, tiny_config

    print(f"building a finished tiny run in {workdir} ...", flush=True)
    start = time.perf_counter()
    done = run_snakemake(workdir, tiny_config(), timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the tiny workflow failed:\n{done.stderr[-3000:]}")
    print(f"  built in {time.perf_counter() - start:.0f} s", flush=True)


def time_noop(workdir: Path, repeats: int) -> dict:
    configfile = workdir / "config.yaml"
    configfile = configfile if configfile.exists() else None
    # Never start real work in someone's results: check with a dry run first.
    _, planned = snakemake(workdir, "-n", "--cores", "2", configfile=configfile)
    text = planned.stdout + planned.stderr
    if "Nothing to be done" not in text:
        stats = text[text.find("Job stats") :][:1500] if "Job stats" in text else text[-1500:]
        raise SystemExit(f"{workdir} is not finished, it still has jobs to run:\n{stats}")
    # --cores 2, no -n: exactly what a user re-running the finished workflow waits for.
    times, cpu = [], []
    for i in range(repeats + 1):
        elapsed, done = snakemake(workdir, "--cores", "2", configfile=configfile)
        text = done.stdout + done.stderr
        if "Nothing to be done" not in text:
            raise SystemExit(f"{workdir} is not finished: the re-run did work:\n{text[-3000:]}")
        if i:
            times.append(elapsed)
            cpu.append(done.cpu_s)
    return {
        "workdir": str(workdir),
        "median_s": round(statistics.median(times), 2),
        "median_cpu_s": round(statistics.median(cpu), 2),
        "runs_s": [round(t, 2) for t in times],
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shards",
        type=int,
        nargs="+",
        default=None,
        help="shard counts (default: the configured count, then 1000)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quiet", action="store_true", help="also time `snakemake -n -q`")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--results", type=Path, help="a work directory with finished results")
    group.add_argument(
        "--build-tiny",
        action="store_true",
        help="run the tiny config to completion in a temporary folder first",
    )
    parser.add_argument("--keep", action="store_true", help="keep the --build-tiny folder")
    args = parser.parse_args(argv)

    configured = max(
        (d["nsdd"]["n_shards"] for d in default_config()["datasets"].values() if "nsdd" in d),
        default=1,
    )
    shards = args.shards or [configured, 1000]
    results = {"dryrun": [], "noop": None}
    for n in shards:
        for quiet in [False, True] if args.quiet else [False]:
            row = time_dryrun(n, args.repeats, quiet)
            results["dryrun"].append(row)
            verdict = (
                ""
                if n != 1000
                else (" PASS" if row["median_s"] <= GOAL_DRYRUN_S else " FAIL")
                + f" (goal <= {GOAL_DRYRUN_S:.0f} s)"
            )
            jobs = f"{row['jobs']:5d}" if row["jobs"] >= 0 else "    -"
            print(
                f"snakemake -n{' -q' if quiet else ''}  n_shards={n:5d}  jobs={jobs}  "
                f"{row['median_s']:6.2f} s wall, {row['median_cpu_s']:6.2f} s CPU{verdict}  "
                f"(load {row['load_avg_1min']})",
                flush=True,
            )

    workdir, cleanup = args.results, None
    if args.build_tiny:
        workdir = Path(tempfile.mkdtemp(prefix="thincam-noop-"))
        cleanup = None if args.keep else workdir
        build_tiny(workdir)
    if workdir is not None:
        try:
            results["noop"] = time_noop(workdir.resolve(), args.repeats)
        finally:
            if cleanup is not None:
                shutil.rmtree(cleanup, ignore_errors=True)
        noop = results["noop"]["median_s"]
        print(
            f"no-op re-run ({workdir})  {noop:6.2f} s wall, "
            f"{results['noop']['median_cpu_s']:6.2f} s CPU "
            f"{'PASS' if noop <= GOAL_NOOP_S else 'FAIL'} (goal <= {GOAL_NOOP_S:.0f} s)"
        )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
