"""bench/demo_profile.py on a hand-written Snakemake log: known critical path, bounds, start-up."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "demo_profile.py"


@pytest.fixture(scope="module")
def profile():
    spec = importlib.util.spec_from_file_location("demo_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_profile"] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


def _job(stamp, rule, jobid, inputs, outputs, threads=1):
    lines = [f"[Sun Nov 29 10:00:{stamp:02d} 2026]", f"rule {rule}:"]
    if inputs:
        lines.append(f"    input: {', '.join(inputs)}")
    lines += [
        f"    output: {', '.join(outputs)}",
        f"    log: logs/{rule}.log",
        f"    jobid: {jobid}",
        f"    benchmark: benchmarks/{rule}.tsv",
        f"    wildcards: dataset=d{jobid}",
    ]
    if threads > 1:
        lines.append(f"    threads: {threads}")
    return lines


def _finish(stamp, jobid, rule):
    return [f"[Sun Nov 29 10:00:{stamp:02d} 2026]", f"Finished jobid: {jobid} (Rule: {rule})"]


def test_critical_path_bounds_and_startup(tmp_path, profile):
    # prior (12 s, 2 threads) -> sample reads a file inside the prior's folder (6 s);
    # wiener (12 s) stands alone: the critical path is prior -> sample, 18 s.
    log = ["Provided cores: 2"]
    log += _job(0, "prior", 1, ["data.h5"], ["results/prior"], threads=2)
    log += _job(0, "wiener", 2, ["data.h5"], ["w.h5"])
    log += _finish(12, 1, "prior")
    log += _job(12, "sample", 3, ["results/prior/unet.bin"], ["s.h5"])
    log += _finish(12, 2, "wiener") + _finish(18, 3, "sample")
    (tmp_path / ".snakemake" / "log").mkdir(parents=True)
    (tmp_path / ".snakemake/log/run.snakemake.log").write_text("\n".join(log) + "\n")
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "logs").mkdir()
    for rule, seconds, startup in (("prior", 12.0, 4.0), ("wiener", 12.0, 3.0), ("sample", 6.0, 1.0)):
        (tmp_path / f"benchmarks/{rule}.tsv").write_text(f"s\th:m:s\n{seconds}\t0:00:{int(seconds):02d}\n")
        (tmp_path / f"logs/{rule}.log").write_text(f"job start-up: {startup:.2f} s (x)\njob work: 1.00 s\n")
    jobs, cores = profile.parse_log(tmp_path / ".snakemake/log/run.snakemake.log")
    assert cores == 2 and {j.rule for j in jobs.values()} == {"prior", "wiener", "sample"}
    for job in jobs.values():
        job.seconds = profile.job_seconds(job, tmp_path)
    assert profile.dependencies(jobs) == {3: {1}}
    assert [jobs[j].rule for j in profile.critical_path(jobs, profile.dependencies(jobs))] == ["prior", "sample"]
    text = profile.report(tmp_path, tmp_path / ".snakemake/log/run.snakemake.log")
    assert "critical path (lower bound)   0.3 min, 2 jobs" in text  # 18 s
    assert "(job time 0.5 min, core time 0.7 min" in text  # 30 s of jobs, 42 s of cores
    assert "start-up share of job time  26.7%" in text  # 8 of 30 s
    assert "wall time                     0.3 min" in text  # 10:00:00 to 10:00:18
