import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# Offline everywhere: hub look-ups would hang for minutes or return placeholders (docs/traps.md).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CLUSTER = Path(__file__).resolve().parents[1] / "scripts" / "slurm_cluster.py"
TINY_RUN_LIMIT_S = 1500  # the whole tiny workflow, through SLURM or locally


# Modules whose tests share the session's tiny workflow run (and the loopback SLURM cluster).
TINY_RUN_MODULES = ("test_slurm", "test_workflow")
# The longest modules, started first so that no worker is left with a long one at the end.
FIRST_MODULES = (*TINY_RUN_MODULES, "test_presets", "test_diffusion", "test_faults")


def _module(nodeid: str) -> str:
    return Path(nodeid.split("::", 1)[0]).stem


def pytest_collection_modifyitems(config, items):
    """The longest modules first (stable otherwise): see FIRST_MODULES."""
    rank = {name: i for i, name in enumerate(FIRST_MODULES)}
    items.sort(key=lambda item: rank.get(_module(item.nodeid), len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """Under ``pytest -n 2 --dist loadfile`` (make test) each module runs on one worker, so its
    module and session fixtures (a trained prior, the preset replicas) are built once, and the
    modules that read the tiny workflow run share one worker, so it runs once: the other worker
    fills the cores while that one waits on SLURM's status checks. (xdist's loadgroup marks do
    not reach the test ids under pytest 9, so the grouping is done here.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "tiny_run" if _module(nodeid) in TINY_RUN_MODULES else super()._split_scope(nodeid)

    return ModuleScheduling(config, log)


def _slurm_unavailable() -> str | None:
    """Why the loopback SLURM cluster cannot run here, or None."""
    if os.environ.get("THINCAM_SKIP_SLURM"):
        return "THINCAM_SKIP_SLURM is set"
    if shutil.which("timeout") is None:
        return "coreutils timeout missing"
    if os.geteuid() != 0:
        return "the loopback SLURM cluster needs root (it writes /etc/slurm, starts daemons)"
    if not Path("/usr/bin/sbatch").exists() and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


@pytest.fixture(scope="session")
def slurm_cluster():
    """(True, None) with the loopback SLURM cluster (scripts/slurm_cluster.py) up for the session,
    torn down at the end unless it was already up; (None, why not) where it cannot run here."""
    reason = _slurm_unavailable()
    if reason is not None:
        yield None, reason
        return
    script = [sys.executable, str(CLUSTER)]
    was_up = subprocess.run([*script, "status"], check=False, capture_output=True).returncode == 0
    up = subprocess.run([*script, "up"], check=False, capture_output=True, text=True, timeout=900)
    if up.returncode == 2:
        yield None, f"no SLURM here: {up.stderr.strip()[-500:]}"
        return
    if up.returncode != 0:
        pytest.fail(f"slurm_cluster.py up failed:\n{up.stdout}\n{up.stderr}")
    yield True, None
    if not was_up:
        down = subprocess.run([*script, "down"], check=False, capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr


@dataclass
class TinyRun:
    workdir: Path
    config: dict
    stderr: str
    via_slurm: bool


@pytest.fixture(scope="session")
def tiny_run(request, tmp_path_factory) -> TinyRun:
    """The whole tiny workflow (.test/config.yaml), run once for the session: every job through
    profiles/slurm when the session runs the cluster tests and the loopback cluster runs here,
    else locally. The workflow tests read its files; the cluster test checks how its jobs ran."""
    from workflow_helpers import REPO, snakemake_command, tiny_config

    workdir = tmp_path_factory.mktemp("workflow")
    config = tiny_config()
    cluster = None
    if any(item.get_closest_marker("slurm") for item in request.session.items):
        cluster, _ = request.getfixturevalue("slurm_cluster")
    # The profile as shipped, but squeue asked 1 s (not 5 s) after a job ends: on the loopback
    # cluster the 75 short jobs otherwise spend about half the run waiting for the next check.
    profile = (
        ["--workflow-profile", str(REPO / "profiles" / "slurm"), "--slurm-init-seconds-before-status-checks", "1"]
        if cluster
        else []
    )
    command = ["timeout", "-k", "10", str(TINY_RUN_LIMIT_S), *snakemake_command(workdir, config, *profile)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if done.returncode == 124:
        pytest.fail(f"the tiny workflow ran past {TINY_RUN_LIMIT_S} s:\n{done.stderr[-4000:]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return TinyRun(workdir, config, done.stderr, bool(cluster))
