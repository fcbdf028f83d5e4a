"""Workflow-level faults (issue 7 item 4): kill -9 mid-job, damaged HDF5 outputs, recovery.

Only the faces_phlatcam dataset is configured. One uninterrupted reference run (module fixture) makes
the PSF, data, prior, two target shards and the NSDD student; each test works on a copy of it
(files and Snakemake metadata, mtimes kept) so that nothing upstream is recomputed, and compares
what it regenerates with the reference byte for byte.

A bad config failing before any job (schema error naming the key, no results/) is covered at the
Snakemake level by tests/test_config.py (unknown key, wrong type, dangling references); here only
the NSDD-specific bound (n_shards >= 1) is added.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from thincam.data.h5io import read_h5
from thincam.data.shards import read_target_shards
from thincam.errors import CorruptFileError
from workflow_helpers import (
    planned_jobs,
    run_snakemake,
    snakemake_command,
    tiny_config,
    tree_digest,
)

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

SHARDS = [f"results/targets/faces_phlatcam/shard-{k:04d}.h5" for k in range(2)]
MARKER = "results/nsdd/faces_phlatcam/training.json"
STUDENT_DIR = "results/nsdd/faces_phlatcam"
CHECKPOINT = "results/checkpoints/distill_nsdd/nsdd/faces_phlatcam"
DISTILL_LOG = "logs/distill_nsdd/nsdd/faces_phlatcam.log"
STUDENT_STEPS, CHECKPOINT_EVERY = 16, 4
TEMP_NAME = re.compile(r"\.shard-\d{4}\.h5\..+\.tmp")


def faults_config() -> dict:
    """tiny_config() reduced to faces_phlatcam; a longer teacher and student so that kills land mid-job."""
    config = tiny_config()
    faces = config["datasets"]["faces_phlatcam"]
    config["datasets"] = {"faces_phlatcam": faces}
    config["cameras"] = {faces["camera"]: config["cameras"][faces["camera"]]}
    config["priors"] = {"faces": config["priors"]["faces"]}
    config["tables"] = {"nsdd_main": "faces_phlatcam"}
    config["figures"]["capture_figures"] = {}
    assert faces["nsdd"]["n_shards"] == len(SHARDS)
    faces["nsdd"]["teacher"]["steps"] = 50  # seconds of DDNM+ per shard: room for a kill
    faces["nsdd"]["student"].update(steps=STUDENT_STEPS, checkpoint_every=CHECKPOINT_EVERY)
    return config


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def student_digest(workdir: Path) -> dict[str, str]:
    """Every file of the student: model/, loss.{csv,png}, training.json."""
    return tree_digest(workdir / STUDENT_DIR)


def copy_run(reference: Path, target: Path, *remove: str) -> Path:
    """A copy of a finished workdir (Snakemake metadata and mtimes kept) minus ``remove``."""
    shutil.copytree(reference, target, symlinks=True)
    for name in remove:
        path = target / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return target


def popen_snakemake(workdir: Path, config: dict, *args: str, cores: int = 2) -> subprocess.Popen:
    """Snakemake in its own process group (one killpg reaches its jobs), output to a file."""
    command = snakemake_command(workdir, config, *args, cores=cores)
    with open(workdir / "killed-run.out", "w") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True
        )


def kill_when(proc: subprocess.Popen, ready, workdir: Path, timeout: float = 240) -> None:
    """SIGKILL the whole process group as soon as ``ready()`` holds; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out = (workdir / "killed-run.out").read_text(errors="replace")
                pytest.fail(f"snakemake ended (rc {proc.returncode}) before the kill:\n{out[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for the moment to kill")
            time.sleep(0.05)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
    for _ in range(200):  # the job processes (same group) are gone too: nothing writes on
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("processes of the killed run survived the SIGKILL")


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def ok(result) -> str:
    output = result.stdout[-3000:] + result.stderr[-6000:]
    assert result.returncode == 0, output
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run up to the student; its files are the bit-identity reference."""
    workdir = tmp_path_factory.mktemp("reference")
    config = faults_config()
    ok(run_snakemake(workdir, config, MARKER, timeout=600))
    assert not (workdir / CHECKPOINT).exists()  # removed once the student is complete
    return workdir, config


def test_kill_during_target_shard(reference, tmp_path):
    """kill -9 while shard B runs after shard A finished: A is kept as is, B is recomputed only."""
    ref, config = reference
    workdir = copy_run(ref, tmp_path / "run", "results/targets", "results/nsdd", "logs/ddnm_targets")
    plan = planned_jobs(run_snakemake(workdir, config, "-n", *SHARDS, timeout=120))
    assert plan == {"ddnm_targets": 2}  # the copy keeps PSF, data and prior up to date

    shards = [workdir / s for s in SHARDS]
    state = {}

    def second_shard_computing():
        done = [p for p in shards if p.exists()]
        if len(done) == 2:
            pytest.fail("both shards finished before the kill: make the teacher slower")
        if len(done) != 1:
            return False
        other = next(p for p in shards if p not in done)
        log = workdir / f"logs/ddnm_targets/faces_phlatcam/{other.stem}.log"
        if f"targets faces_phlatcam shard {int(other.stem[-4:])}" not in log_text(log):
            return False  # still importing
        state.update(done=done[0], killed=other)
        return True

    # --cores 1: one shard at a time (ddnm_targets runs 1 thread, as in the reference run).
    proc = popen_snakemake(workdir, config, *SHARDS, cores=1)
    kill_when(proc, second_shard_computing, workdir)
    done, killed = state["done"], state["killed"]

    # No file under a final name that a later stage would accept; at most a hidden temp file.
    assert done.exists() and not killed.exists()
    leftovers = {p.name for p in done.parent.iterdir()} - {done.name}
    assert all(TEMP_NAME.fullmatch(name) for name in leftovers), leftovers
    read_h5(done, contract="targets")  # the finished shard is whole
    before = done.stat()
    done_sha = sha256(done)

    # The killed run's lock stays behind: a real run refuses until --unlock.
    locked = run_snakemake(workdir, config, *SHARDS, timeout=120)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    ok(run_snakemake(workdir, config, "--unlock", timeout=120))
    dry = run_snakemake(workdir, config, "-n", "--rerun-incomplete", *SHARDS, timeout=120)
    assert planned_jobs(dry) == {"ddnm_targets": 1}
    dry = ok(dry)
    assert f"output: {killed.relative_to(workdir)}" in dry
    assert f"output: {done.relative_to(workdir)}" not in dry

    ok(run_snakemake(workdir, config, "--rerun-incomplete", *SHARDS, timeout=300))
    after = done.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert sha256(done) == done_sha
    # The writer is deterministic (fixed HDF5 settings, no timestamps): whole files are identical.
    for shard in SHARDS:
        assert sha256(workdir / shard) == sha256(ref / shard), shard
    # A temp file of a kill that landed inside the write is not adopted (and not cleaned up).
    assert {p.name for p in done.parent.iterdir() if not p.name.startswith(".")} == {
        Path(s).name for s in SHARDS
    }


def test_kill_during_distillation(reference, tmp_path):
    """kill -9 after a checkpoint: the re-run resumes from it and ends bit-identical."""
    ref, config = reference
    workdir = copy_run(ref, tmp_path / "run", "results/nsdd", "logs/distill_nsdd")
    plan = planned_jobs(run_snakemake(workdir, config, "-n", MARKER, timeout=120))
    assert plan == {"distill_nsdd": 1}
    shard_stats = {s: (workdir / s).stat() for s in SHARDS}

    proc = popen_snakemake(workdir, config, MARKER)  # --cores 2 as the reference: same threads
    kill_when(proc, (workdir / CHECKPOINT).exists, workdir)
    assert not (workdir / MARKER).exists()  # no student that looks complete
    assert (workdir / CHECKPOINT).exists()

    ok(run_snakemake(workdir, config, "--unlock", timeout=120))
    dry = run_snakemake(workdir, config, "-n", "--rerun-incomplete", MARKER, timeout=120)
    assert planned_jobs(dry) == {"distill_nsdd": 1}  # the shards are not recomputed
    ok(run_snakemake(workdir, config, "--rerun-incomplete", MARKER, timeout=300))

    log = log_text(workdir / DISTILL_LOG)
    resumed = re.search(rf"resuming from {re.escape(CHECKPOINT)} at step (\d+)", log)
    assert resumed, log[-3000:]
    step = int(resumed.group(1))
    assert 0 < step < STUDENT_STEPS and step % CHECKPOINT_EVERY == 0
    assert not (workdir / CHECKPOINT).exists()
    for shard, before in shard_stats.items():
        after = (workdir / shard).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), shard
    assert student_digest(workdir) == student_digest(ref)


def test_damaged_shards_are_named_and_regenerated(reference, tmp_path):
    """A bit flip (valid HDF5, bad checksum) and a truncation: consumers name the file; Snakemake
    does not notice either by itself; deleting the file or forcing it regenerates it bit-identical."""
    ref, config = reference
    workdir = copy_run(ref, tmp_path / "run")
    truncated, flipped = (workdir / s for s in SHARDS)

    with h5py.File(flipped, "r") as handle:
        offset = handle["target"].id.get_offset()
        nbytes = handle["target"].id.get_storage_size()
    assert offset is not None and nbytes > 0
    with open(flipped, "r+b") as handle:
        handle.seek(offset + nbytes // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with h5py.File(flipped, "r") as handle:  # still a valid HDF5 file
        assert handle["target"].shape[0] > 0
    with pytest.raises(CorruptFileError, match=r"shard-0001\.h5: checksum mismatch in dataset 'target'"):
        list(read_target_shards([flipped]))

    # The downstream job: the shard is newer than the student, so Snakemake re-runs distill_nsdd,
    # which stops on the checksum naming the shard and leaves no student marker.
    failed = run_snakemake(workdir, config, MARKER, timeout=300)
    assert failed.returncode != 0
    assert planned_jobs(failed) == {"distill_nsdd": 1}
    assert re.search(r"shard-0001\.h5: checksum mismatch in dataset 'target'", log_text(workdir / DISTILL_LOG))
    assert not (workdir / MARKER).exists()

    size = truncated.stat().st_size
    with open(truncated, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(CorruptFileError, match=r"shard-0000\.h5"):
        read_h5(truncated, contract="targets")

    # Snakemake's metadata cannot see damage: even --rerun-incomplete plans nothing for them.
    dry = run_snakemake(workdir, config, "-n", "--rerun-incomplete", *SHARDS, timeout=120)
    assert "Nothing to be done" in ok(dry) and planned_jobs(dry) == {}

    # Recovery: delete one; force the other (--forcerun accepts a file); only these two run.
    truncated.unlink()
    regen = run_snakemake(workdir, config, *SHARDS, "--forcerun", SHARDS[1], timeout=300)
    ok(regen)
    assert planned_jobs(regen) == {"ddnm_targets": 2}
    for shard in SHARDS:
        assert sha256(workdir / shard) == sha256(ref / shard), shard
        read_h5(workdir / shard, contract="targets")


def test_negative_n_shards_fails_before_any_job(tmp_path):
    config = faults_config()
    config["datasets"]["faces_phlatcam"]["nsdd"]["n_shards"] = -1
    result = run_snakemake(tmp_path, config, MARKER, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "-1 is less than the minimum of 1" in output and "['n_shards']" in output, output
    assert not (tmp_path / "results").exists()
