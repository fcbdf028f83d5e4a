#!/usr/bin/env python3
"""sbatch a Snakemake jobscript, mapping the job's resources to sbatch options.

Called by the cluster-generic executor as `submit.py <jobscript>`; prints the SLURM job id.
Reads the `# properties = {...}` line Snakemake writes into every jobscript. Standard library
only: runs under any python3 on the submit host.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

LOG_DIR = Path(".snakemake") / "cluster_generic_logs"


def job_properties(jobscript: str) -> dict:
    pattern = re.compile(r"# properties = (.*)")
    with open(jobscript) as handle:
        for line in handle:
            match = pattern.match(line)
            if match:
                return json.loads(match.group(1))
    raise SystemExit(f"submit.py: no '# properties' line in {jobscript}")


def sbatch_command(props: dict, jobscript: str) -> list[str]:
    resources = props.get("resources", {})
    name = props.get("rule") or f"group-{props.get('groupid', 'job')}"
    wildcards = props.get("wildcards") or {}
    label = "-".join([name, *(str(v) for v in wildcards.values())])
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:100]
    log_dir = LOG_DIR / name
    log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create it; the job would vanish
    command = [
        "sbatch",
        "--parsable",
        f"--job-name=smk-{label}",
        f"--output={log_dir}/{label}-%j.log",
        f"--cpus-per-task={max(1, int(props.get('threads') or 1))}",
    ]
    if resources.get("mem_mb_per_cpu"):
        command.append(f"--mem-per-cpu={int(resources['mem_mb_per_cpu'])}")
    elif resources.get("mem_mb"):
        command.append(f"--mem={int(resources['mem_mb'])}")
    if resources.get("runtime"):
        command.append(f"--time={int(resources['runtime'])}")  # minutes
    gpus = int(resources.get("gpu") or 0)
    if gpus > 0:
        model = resources.get("gpu_model")
        command.append(f"--gres=gpu:{model}:{gpus}" if model else f"--gres=gpu:{gpus}")
    for key, option in (
        ("slurm_partition", "--partition"),
        ("constraint", "--constraint"),
        ("qos", "--qos"),
    ):
        if resources.get(key):
            command.append(f"{option}={resources[key]}")
    account = str(resources.get("slurm_account") or "")
    if account and account.lower() != "none":
        command.append(f"--account={account}")
    if resources.get("slurm_extra"):
        command += shlex.split(str(resources["slurm_extra"]))
    return [*command, jobscript]


def main() -> int:
    jobscript = sys.argv[-1]
    command = sbatch_command(job_properties(jobscript), jobscript)
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(f"submit.py: {shlex.join(command)}\n{done.stderr}")
        return done.returncode
    # --parsable prints "jobid" or "jobid;cluster"
    print(done.stdout.strip().split(";")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
