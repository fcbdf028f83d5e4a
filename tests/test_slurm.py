"""The cluster profiles on a real single-node SLURM (scripts/slurm_cluster.py, fake GPU gres).

Runs a stable subset of the workflow (PSFs and simulated measurements) through
`--workflow-profile profiles/slurm` (snakemake-executor-plugin-slurm) and
`--workflow-profile profiles/cluster-generic` (plain sbatch + status.py), and checks the outputs
are byte-identical to a local run; runs the whole tiny workflow (every rule, the torch stages
included) through profiles/slurm; and checks that a job asking for more CPUs than any node has
fails at submission instead of pending for ever. A one-rule workflow written here shows the profiles' retries
(the first attempt fails; the retry gets `mem_mb: 2000 * attempt` from the profile and passes)
and that `gpu=1` reaches SLURM as a GPU allocation.

Needs root and apt-get (SLURM is installed on first use) or an installed SLURM; skipped
otherwise, or with THINCAM_SKIP_SLURM=1 (conftest.slurm_cluster, which tears the cluster down by
PID at the end of the session unless it was already up). Every snakemake call runs under `timeout -k 10 N`: the slurm plugin can poll for
ever and ignore SIGTERM when the cluster misbehaves.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, SNAKEMAKE, tiny_config, tree_digest

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TARGETS = [
    "results/psf/dots.h5",
    "results/data/faces_phlatcam/test.h5",
    "results/data/natural_metalens/test.h5",
]
PROFILES = {name: REPO / "profiles" / name for name in ("slurm", "cluster-generic")}
RUN_LIMIT_S = 240  # one snakemake run on the cluster


def _snakemake(workdir: Path, args: list[str], limit: int = RUN_LIMIT_S, config=None):
    workdir.mkdir(parents=True, exist_ok=True)
    command = ["timeout", "-k", "10", str(limit), str(SNAKEMAKE), "--directory", str(workdir)]
    if config is not None:
        config_path = workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        command += ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(config_path)]
    command += ["--cores", "2", *args]
    done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=workdir)
    if done.returncode == 124:
        pytest.fail(f"snakemake ran past {limit} s:\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def cluster(slurm_cluster):
    up, reason = slurm_cluster
    if not up:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def local_digests(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("local")
    done = _snakemake(workdir, TARGETS, config=tiny_config(), limit=600)
    assert done.returncode == 0, done.stderr[-4000:]
    digests = tree_digest(workdir / "results")
    assert all(target.removeprefix("results/") in digests for target in TARGETS), sorted(digests)
    return digests


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_cluster_run_matches_local(cluster, local_digests, tmp_path, profile):
    done = _snakemake(
        tmp_path, ["--workflow-profile", str(PROFILES[profile]), *TARGETS], config=tiny_config()
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Every job went through SLURM, none ran in the head process.
    submitted = done.stderr.count("SLURM jobid") + done.stderr.count("with external jobid")
    assert "localrule" not in done.stderr and submitted == done.stderr.count("\nrule "), done.stderr
    assert submitted >= len(TARGETS)
    assert tree_digest(tmp_path / "results") == local_digests


RETRY_SNAKEFILE = textwrap.dedent(
    r'''
    # Stands alone: the profile's retries and resources on a real SLURM, nothing of thincam.
    rule all:
        input:
            "flaky.txt",
            "gpu.txt",


    rule flaky:
        """Fails unless the profile gave it more memory than on its first attempt."""
        output:
            "flaky.txt",
        shell:
            """
            tres=$(scontrol show job -o "${{SLURM_JOB_ID:-0}}" | grep -o ' TRES=[^ ]*' || echo none)
            echo "${{SLURM_JOB_ID:-none}} {resources.mem_mb} $tres" >> attempts.txt
            if [ {resources.mem_mb} -le 2000 ]; then echo "attempt 1 fails on purpose" >&2; exit 1; fi
            cp attempts.txt {output}
            """


    rule gpu:
        output:
            "gpu.txt",
        resources:
            gpu=1,
            mem_mb=500,
            runtime=5,
        shell:
            """
            gres=$(scontrol show job -o "${{SLURM_JOB_ID:-0}}" | grep -o ' TresPer[A-Za-z]*=[^ ]*' || echo none)
            echo "${{SLURM_JOB_ID:-none}} $gres" > {output}
            """
    '''
)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_failed_job_is_retried_with_more_memory(cluster, tmp_path, profile):
    (tmp_path / "Snakefile").write_text(RETRY_SNAKEFILE)
    done = _snakemake(
        tmp_path,
        ["--snakefile", str(tmp_path / "Snakefile"), "--workflow-profile", str(PROFILES[profile])],
    )
    assert done.returncode == 0, done.stderr[-4000:]
    attempts = [line.split() for line in (tmp_path / "attempts.txt").read_text().splitlines()]
    assert len(attempts) == 2, attempts
    (job1, mem1, tres1), (job2, mem2, tres2) = attempts
    assert "none" not in (job1, job2) and job1 != job2  # two SLURM jobs, not local runs
    assert (mem1, mem2) == ("2000", "4000")  # profile: mem_mb: 2000 * attempt
    assert "mem=2000M" in tres1.split(",") and "mem=4000M" in tres2.split(","), attempts
    # --gpus=1 (slurm plugin) shows as TresPerJob=gres:gpu:1, --gres=gpu:1 as TresPerNode=...
    job, gres = (tmp_path / "gpu.txt").read_text().split()
    assert job != "none" and gres.endswith("=gres:gpu:1"), f"gpu=1 not allocated: {gres}"


def test_whole_workflow_on_the_cluster(cluster, tiny_run):
    """Every rule of the tiny workflow as a SLURM job (tables and figures stay local rules): the
    session's tiny run (conftest.tiny_run), which the workflow tests then read."""
    assert tiny_run.via_slurm
    stderr = tiny_run.stderr
    submitted = stderr.count("SLURM jobid")
    ran = {line.split()[1].rstrip(":") for line in stderr.splitlines() if line.startswith("rule ")}
    assert {"train_prior", "ddnm_targets", "distill_nsdd", "train_dmdiff", "reconstruct", "evaluate"} <= ran
    assert submitted == stderr.count("\nrule "), stderr[-4000:]
    assert (tiny_run.workdir / "results/tables/nsdd_main.csv").is_file()


def test_job_larger_than_any_node_fails_at_once(cluster, tmp_path):
    """64 CPUs on 2-CPU nodes: sbatch refuses it (EnforcePartLimits) and the run fails, naming
    the rule, instead of waiting on a job SLURM keeps pending. (Threads are capped at --cores
    before submission, so the request goes through the plugin's cpus_per_task resource.)"""
    done = _snakemake(
        tmp_path,
        ["--workflow-profile", str(PROFILES["slurm"]), "--set-resources", "calibrate_psf:cpus_per_task=64",
         "--retries", "0", "results/psf/dots.h5"],
        config=tiny_config(),
        limit=180,
    )
    assert done.returncode != 0
    assert "calibrate_psf" in done.stderr and "sbatch" in done.stderr.lower(), done.stderr[-3000:]
