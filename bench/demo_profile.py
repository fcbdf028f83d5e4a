"""Where a finished workflow run spent its time: critical path, core use and job start-up share.

Reads, from the run's directory: the Snakemake log (each job's start and finish, inputs, outputs,
log file), the benchmark files (each job's wall time, `s`) and the job logs' first and last lines
("job start-up: X s", "job work: Y s", written by thincam.logs.log_to).

    .venv/bin/python bench/demo_profile.py [RUN_DIR] [--log .snakemake/log/<run>.snakemake.log]

Prints the run's wall time next to its two lower bounds: the critical path (the longest chain of
dependent jobs, by their benchmark times: no number of cores finishes sooner) and the total core
time (job time x threads) over the cores (no schedule finishes sooner); the jobs on the critical path; the time per
rule; and the share of job time that was start-up (interpreter, Snakemake's script preamble and
the stage's module imports) rather than work. A rule's lazily imported libraries (a diffusion
method's diffusers) count as work.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")
CORES = re.compile(r"^Provided cores: (\d+)")
TIMING = re.compile(r"^job (start-up|work): ([\d.]+) s")


@dataclass
class Job:
    rule: str
    start: datetime
    end: datetime | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    log: str | None = None
    benchmark: str | None = None
    wildcards: str = ""
    threads: int = 1
    seconds: float = 0.0
    startup: float | None = None

    @property
    def name(self) -> str:
        return f"{self.rule}[{self.wildcards}]" if self.wildcards else self.rule


def _files(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_log(path: Path) -> tuple[dict[int, Job], int]:
    """{jobid: Job} and the cores Snakemake was given, from one run's Snakemake log."""
    jobs: dict[int, Job] = {}
    cores, stamp, current = 1, None, None
    pending: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if match := STAMP.match(line):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
        elif match := CORES.match(line):
            cores = int(match.group(1))
        elif match := RULE.match(line):
            current, pending = match.group(1), {}
            start = stamp
        elif current and line.startswith("    ") and ": " in line:
            key, value = line.strip().split(": ", 1)
            pending[key] = value
            if key == "jobid":
                jobs[int(value)] = Job(current, start)
            if "jobid" in pending:
                job = jobs[int(pending["jobid"])]
                job.inputs = _files(pending.get("input", ""))
                job.outputs = _files(pending.get("output", ""))
                job.log = pending.get("log")
                job.benchmark = pending.get("benchmark")
                job.wildcards = pending.get("wildcards", "")
                job.threads = int(pending.get("threads", 1))
        elif match := FINISHED.match(line):
            current = None
            jobid = int(match.group(1))
            if jobid in jobs:
                jobs[jobid].end = stamp
    return jobs, cores


def job_seconds(job: Job, run_dir: Path) -> float:
    """The benchmark's wall time (0.01 s), else the log's start-to-finish (1 s resolution)."""
    if job.benchmark and (run_dir / job.benchmark).is_file():
        rows = (run_dir / job.benchmark).read_text().splitlines()
        if len(rows) >= 2:
            return float(rows[-1].split("\t")[0])
    return (job.end - job.start).total_seconds() if job.end else 0.0


def job_startup(job: Job, run_dir: Path) -> float | None:
    if not job.log or not (run_dir / job.log).is_file():
        return None
    for line in (run_dir / job.log).read_text().splitlines()[:1]:
        if (match := TIMING.match(line)) and match.group(1) == "start-up":
            return float(match.group(2))
    return None


def dependencies(jobs: dict[int, Job]) -> dict[int, set[int]]:
    """{job: the jobs that made its inputs}; an output folder covers the files inside it."""
    producer = {out.rstrip("/"): jobid for jobid, job in jobs.items() for out in job.outputs}
    parents: dict[int, set[int]] = defaultdict(set)
    for jobid, job in jobs.items():
        for item in job.inputs:
            path = item.rstrip("/")
            while path:
                if path in producer and producer[path] != jobid:
                    parents[jobid].add(producer[path])
                    break
                path = path.rpartition("/")[0]
    return parents


def critical_path(jobs: dict[int, Job], parents: dict[int, set[int]]) -> list[int]:
    """The chain of dependent jobs with the largest summed time, first job first."""
    finish: dict[int, float] = {}
    before: dict[int, int | None] = {}
    for jobid in sorted(jobs, key=lambda j: jobs[j].start):  # a job starts after its parents
        best = max(parents.get(jobid, ()), key=lambda p: finish.get(p, 0.0), default=None)
        finish[jobid] = jobs[jobid].seconds + (finish.get(best, 0.0) if best is not None else 0.0)
        before[jobid] = best
    chain, node = [], max(finish, key=finish.get)
    while node is not None:
        chain.append(node)
        node = before[node]
    return chain[::-1]


def report(run_dir: Path, log_path: Path) -> str:
    jobs, cores = parse_log(log_path)
    if not jobs:
        raise SystemExit(f"{log_path}: no jobs in this Snakemake log")
    for job in jobs.values():
        job.seconds = job_seconds(job, run_dir)
        job.startup = job_startup(job, run_dir)
    parents = dependencies(jobs)
    chain = critical_path(jobs, parents)
    ends = [job.end for job in jobs.values() if job.end]
    wall = (max(ends) - min(job.start for job in jobs.values())).total_seconds()
    total = sum(job.seconds for job in jobs.values())
    core_time = sum(job.seconds * min(job.threads, cores) for job in jobs.values())
    path_s = sum(jobs[j].seconds for j in chain)
    timed = [job for job in jobs.values() if job.startup is not None]
    startup = sum(min(job.startup, job.seconds) for job in timed)
    lines = [
        f"run: {log_path.name}, {len(jobs)} jobs on {cores} cores",
        f"wall time                  {wall / 60:6.1f} min",
        f"critical path (lower bound) {path_s / 60:5.1f} min, {len(chain)} jobs",
        (
            f"core time / cores (bound)  {core_time / cores / 60:6.1f} min  (job time {total / 60:.1f} min,"
            f" core time {core_time / 60:.1f} min: a job's time x its threads)"
        ),
        (
            f"start-up share of job time {startup / max(total, 1e-9):6.1%}  "
            f"({startup / 60:.1f} min over {len(timed)} jobs with timing lines)"
        ),
        "",
        "critical path:",
    ]
    lines += [f"  {jobs[j].seconds:7.1f} s  {jobs[j].name}" for j in chain]
    per_rule: dict[str, list[Job]] = defaultdict(list)
    for job in jobs.values():
        per_rule[job.rule].append(job)
    lines += ["", f"{'rule':24s} {'jobs':>4s} {'time (s)':>9s} {'start-up (s)':>12s}"]
    for rule, members in sorted(per_rule.items(), key=lambda kv: -sum(j.seconds for j in kv[1])):
        up = sum(min(j.startup, j.seconds) for j in members if j.startup is not None)
        lines.append(f"{rule:24s} {len(members):4d} {sum(j.seconds for j in members):9.1f} {up:12.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default=".", type=Path)
    parser.add_argument("--log", type=Path, help="a Snakemake log (default: the run's newest)")
    args = parser.parse_args(argv)
    log_path = args.log
    if log_path is None:
        logs = sorted((args.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
        if not logs:
            raise SystemExit(f"{args.run_dir}: no .snakemake/log/*.snakemake.log: run the workflow first")
        log_path = logs[-1]
    print(report(args.run_dir, log_path))


if __name__ == "__main__":
    sys.exit(main())
