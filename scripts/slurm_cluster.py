#!/usr/bin/env python3
"""A single-node loopback SLURM cluster with a fake GPU, for testing the workflow's profiles.

    python scripts/slurm_cluster.py up       # install if missing, configure, start, wait for idle
    python scripts/slurm_cluster.py status   # PIDs and node state; exit 0 when the node is idle
    python scripts/slurm_cluster.py down     # stop the daemons this script started, by PID

Debian/Ubuntu only (packages slurmctld slurmd slurm-client munge, SLURM 22.05 on bookworm) and
root only: it writes /etc/slurm/{slurm,gres,cgroup}.conf (the jobstep plugin ignores SLURM_CONF,
so the default path is the only one that works) and starts munged, slurmctld and slurmd. It
refuses to touch an /etc/slurm/slurm.conf it did not write, so it cannot clobber a real cluster.

Idempotent: `up` on a running, idle cluster with the same config does nothing; with a changed
config it restarts the daemons. Daemons are stopped by the PIDs recorded in the state folder
(THINCAM_SLURM_STATE, default /var/lib/thincam-slurm), never by name; munged is stopped only when
this script started it. `down` also removes the configs it wrote: with SLURM configured but its
controller down, every snakemake command waits 9 s (the slurm executor plugin runs
`scontrol show config` when Snakemake loads its plugins). The packages stay installed.

Exit status: 0 done; 1 failed (the daemon logs are printed); 2 unavailable here (not root, no
apt-get, install failed, a foreign SLURM config): the message starts with "SKIP:".
Only the standard library is used, so any python3 runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
BINARIES = {
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
    "munged": "/usr/sbin/munged",
    "sbatch": "/usr/bin/sbatch",
    "sinfo": "/usr/bin/sinfo",
}
MARKER = "# thincam loopback cluster (scripts/slurm_cluster.py)"
SLURM_DIR = Path("/etc/slurm")
MUNGE_PID = Path("/run/munge/munged.pid")
STATE = Path(os.environ.get("THINCAM_SLURM_STATE", "/var/lib/thincam-slurm"))
PARTITION = os.environ.get("THINCAM_SLURM_PARTITION", "main")
N_GPUS = 1

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2


class Unavailable(Exception):
    """SLURM cannot be brought up on this machine (not an error of the cluster itself)."""


class Failed(Exception):
    """SLURM was installed and configured but did not come up."""


def log(message: str) -> None:
    print(f"[slurm_cluster] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# install


def _missing_binaries() -> list[str]:
    return [name for name, path in BINARIES.items() if not Path(path).exists()]


def install() -> None:
    missing = _missing_binaries()
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"SLURM is not installed ({', '.join(missing)} missing) and not root")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"SLURM is not installed ({', '.join(missing)} missing) and no apt-get")
    log(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    ):
        done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stdout + done.stderr)[-2000:]
            raise Unavailable(f"`{' '.join(command)}` failed (exit {done.returncode}):\n{tail}")
    missing = _missing_binaries()
    if missing:
        raise Unavailable(f"installed {' '.join(PACKAGES)} but {', '.join(missing)} still missing")


# --------------------------------------------------------------------------------------------
# configuration


def _real_memory_mb() -> int:
    """90% of the memory available now (slurmd drains a node that claims more than it has)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return max(512, int(int(line.split()[1]) / 1024 * 0.9))
    raise Failed("no MemAvailable in /proc/meminfo")


def configs() -> dict[str, str]:
    cpus = os.cpu_count() or 1
    memory = _real_memory_mb()
    slurm_conf = f"""{MARKER}
# CPUs={cpus} from nproc, RealMemory={memory} MB = 90% of the memory available at `up`.
ClusterName=thincam
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
ReturnToService=2
# Refuse at submission a job no node can hold, instead of queueing it for ever (PartitionConfig).
EnforcePartLimits=ALL
MinJobAge=300
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={STATE}/ctld
SlurmdSpoolDir={STATE}/d
SlurmctldPidFile={STATE}/run/slurmctld.daemon.pid
SlurmdPidFile={STATE}/run/slurmd.daemon.pid
SlurmctldLogFile={STATE}/log/slurmctld.log
SlurmdLogFile={STATE}/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} Gres=gpu:{N_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
    # A fake GPU: /dev/null as the device file lets `--gpus=1` / `--gres=gpu:1` jobs schedule.
    gres_conf = f"{MARKER}\nNodeName=localhost Name=gpu File=/dev/null\n"
    cgroup_conf = f"{MARKER}\nConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n"
    return {"slurm.conf": slurm_conf, "gres.conf": gres_conf, "cgroup.conf": cgroup_conf}


def write_configs() -> bool:
    """Write /etc/slurm/*.conf; True when anything changed. Refuses foreign configs."""
    SLURM_DIR.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, text in configs().items():
        path = SLURM_DIR / name
        if path.exists():
            old = path.read_text()
            if not old.startswith(MARKER):
                raise Unavailable(
                    f"{path} exists and was not written by this script: not touching it"
                )
            # RealMemory follows the free memory: do not restart a running cluster just for that.
            same = _without_memory(old) == _without_memory(text)
            if same:
                continue
        path.write_text(text)
        changed = True
    for sub in ("ctld", "d", "run", "log"):
        (STATE / sub).mkdir(parents=True, exist_ok=True)
    return changed


def _without_memory(text: str) -> str:
    return "\n".join(
        " ".join(w for w in line.split(" ") if not w.startswith("RealMemory="))
        for line in text.splitlines()
        if not line.startswith("# CPUs=")
    )


# --------------------------------------------------------------------------------------------
# processes


def _pid_file(name: str) -> Path:
    return STATE / "run" / f"{name}.pid"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int | None, name: str) -> bool:
    """The PID runs and is the expected program (guards against a recycled PID)."""
    if not pid:
        return False
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return comm == name[:15] and state != "Z"


def _running(name: str) -> int | None:
    path = MUNGE_PID if name == "munged" else _pid_file(name)
    pid = _read_pid(path)
    return pid if _alive(pid, name) else None


def _stop(pid: int, name: str, wait: float = 15.0) -> None:
    if not _alive(pid, name):
        return
    log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _alive(pid, name):
            return
        time.sleep(0.2)
    log(f"{name} (pid {pid}) ignored SIGTERM for {wait:.0f} s: SIGKILL")
    os.kill(pid, signal.SIGKILL)


def _spawn(name: str, command: list[str]) -> subprocess.Popen:
    with open(STATE / "log" / f"{name}.stdout", "ab") as logfile:  # the child keeps its copy
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the caller; its own process group
        )
    _pid_file(name).write_text(f"{process.pid}\n")
    log(f"started {name} (pid {process.pid})")
    return process


def start_munge() -> None:
    if _running("munged"):
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
    run_dir = MUNGE_PID.parent
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(run_dir, "munge", "munge")
    run_dir.chmod(0o755)
    # munged daemonises and writes its own PID file; remember that this script started it.
    done = subprocess.run(
        ["runuser", "-u", "munge", "--", BINARIES["munged"]],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Failed(f"munged failed to start: {done.stderr.strip()}")
    for _ in range(50):
        pid = _running("munged")
        if pid:
            (STATE / "run" / "munged.started-by-us").write_text(f"{pid}\n")
            log(f"started munged (pid {pid})")
            return
        time.sleep(0.1)
    raise Failed("munged did not write its PID file")


def node_state() -> str:
    done = subprocess.run(
        [BINARIES["sinfo"], "-h", "-o", "%T"],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout.strip() if done.returncode == 0 else f"(sinfo failed: {done.stderr.strip()})"


def wait_idle(processes: dict[str, subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise Failed(f"{name} exited with status {process.returncode}\n{_log_tails()}")
        state = node_state()
        if state in ("idle", "mixed", "allocated"):
            return
        time.sleep(0.5)
    raise Failed(f"node not idle after {timeout:.0f} s (sinfo says {state!r})\n{_log_tails()}")


def _log_tails() -> str:
    parts = []
    for path in sorted((STATE / "log").glob("*")):
        lines = path.read_text(errors="replace").splitlines()[-15:]
        parts.append(f"--- {path}\n" + "\n".join(lines))
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# commands


def up() -> None:
    install()
    if os.geteuid() != 0:
        raise Unavailable("not root: cannot write /etc/slurm or start the daemons")
    changed = write_configs()
    running = {name: _running(name) for name in ("slurmctld", "slurmd")}
    if all(running.values()) and not changed and node_state() == "idle":
        log(f"already up: {json.dumps(running)}, node idle")
        return
    if any(running.values()):
        log("config changed or cluster not idle: restarting")
        stop_slurm()
    start_munge()
    processes = {
        "slurmctld": _spawn("slurmctld", [BINARIES["slurmctld"], "-D", "-c", "-i"]),
        "slurmd": _spawn("slurmd", [BINARIES["slurmd"], "-D", "-N", "localhost"]),
    }
    started = time.monotonic()
    wait_idle(processes)
    log(f"up: node idle after {time.monotonic() - started:.1f} s; partition {PARTITION!r}")


def stop_slurm() -> None:
    # slurmd first: it would otherwise retry the controller while it goes down.
    for name in ("slurmd", "slurmctld"):
        pid = _read_pid(_pid_file(name))
        if pid:
            _stop(pid, name)
        _pid_file(name).unlink(missing_ok=True)


def down() -> None:
    if os.geteuid() != 0:
        raise Unavailable("not root")
    stop_slurm()
    marker = STATE / "run" / "munged.started-by-us"
    pid = _read_pid(marker)
    if pid:
        _stop(pid, "munged")
        marker.unlink(missing_ok=True)
    remove_configs()
    log("down")


def remove_configs() -> None:
    """Remove the configs this script wrote (`up` writes them again).

    With SLURM installed, configured and its controller down, `scontrol show config` waits 9 s
    for the controller, and snakemake-executor-plugin-slurm runs it when Snakemake loads its
    plugins: every snakemake command, local runs included, would take 9 s longer. Without a
    slurm.conf it fails at once.
    """
    for name in configs():
        path = SLURM_DIR / name
        if path.exists() and path.read_text().startswith(MARKER):
            path.unlink()


def status() -> int:
    report = {name: _running(name) for name in ("munged", "slurmctld", "slurmd")}
    if not Path(BINARIES["sinfo"]).exists():
        state = "(not installed)"
    elif not (SLURM_DIR / "slurm.conf").exists():
        state = "(not configured: down, or never up)"
    else:
        state = node_state()
    print(json.dumps({"pids": report, "node": state, "state_dir": str(STATE)}))
    return 0 if state == "idle" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
        elif args.command == "down":
            down()
        else:
            return status()
    except Unavailable as error:
        print(f"SKIP: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (Failed, subprocess.SubprocessError, OSError) as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
