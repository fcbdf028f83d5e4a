#!/usr/bin/env python3
"""Print running, success or failed for a SLURM job id (the cluster-generic status command).

squeue and scontrol know a job until MinJobAge after it ends; sacct (where accounting runs)
knows it afterwards. While the controller cannot be reached the answer is `running`, so a
restarting slurmctld does not fail the workflow; a job no source knows is `failed`.
Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
import time

RUNNING = {
    "PENDING",
    "RUNNING",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "REQUEUED",
    "REQUEUE_FED",
    "REQUEUE_HOLD",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
    "RESV_DEL_HOLD",
}
SUCCESS = {"COMPLETED"}
# FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL, DEADLINE, PREEMPTED,
# SPECIAL_EXIT, REVOKED and anything unknown count as failed.


def classify(state: str) -> str:
    state = state.split()[0].rstrip("+") if state.strip() else ""
    if state in SUCCESS:
        return "success"
    if state in RUNNING:
        return "running"
    return "failed"


def query(command: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)
    return done.returncode, done.stdout.strip() if done.returncode == 0 else done.stderr


def state_of(jobid: str) -> str:
    unreachable = False
    for attempt in range(3):
        code, out = query(["squeue", "-h", "-j", jobid, "--states=all", "-o", "%T"])
        if code == 0 and out:
            return classify(out.splitlines()[0])
        code, out = query(["scontrol", "show", "job", jobid, "-o"])
        if code == 0:
            for word in out.split():
                if word.startswith("JobState="):
                    return classify(word.split("=", 1)[1])
        unreachable = "Invalid job id" not in out and "invalid job id" not in out.lower()
        if not unreachable:
            break
        time.sleep(2 * (attempt + 1))
    code, out = query(["sacct", "-n", "-X", "-P", "-j", jobid, "-o", "State"])
    if code == 0 and out:
        return classify(out.splitlines()[0])
    return "running" if unreachable else "failed"


def main() -> int:
    jobid = sys.argv[1].split(";")[0].strip()
    print(state_of(jobid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
