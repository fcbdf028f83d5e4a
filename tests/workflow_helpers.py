"""Run the repository's Snakefile on a tiny config inside a temporary directory."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def tiny_config() -> dict:
    """.test/config.yaml (the default shrunk to seconds), with its input paths made absolute."""
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    for camera in config["cameras"].values():
        if camera["kind"] == "capture":
            camera["path"] = str(REPO / camera["path"])
    hand = config["datasets"]["diffusercam_hand"]["captures"]
    hand["path"] = str(REPO / hand["path"])
    return config


def snakemake_command(
    workdir: Path, config: dict, *args: str, cores: int = 2, snakefile: Path | None = None
) -> list[str]:
    """The snakemake command line for ``workdir`` with ``config`` (written there as config.yaml)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return [
        str(SNAKEMAKE),
        "--snakefile", str(snakefile or REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(config_path),
        "--cores", str(cores),
        *args,
    ]


def run_snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900, snakefile: Path | None = None):
    """Run snakemake in ``workdir`` with ``config``; returns the CompletedProcess."""
    command = snakemake_command(workdir, config, *args, snakefile=snakefile)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``, by relative path: bit-identity between runs."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def planned_jobs(result) -> dict[str, int]:
    """Rule -> job count from a dry run's "Job stats" table (empty when nothing is to be done)."""
    counts, in_table = {}, False
    for line in (result.stdout + result.stderr).splitlines():
        parts = line.split()
        if line.startswith("Job stats"):
            in_table, counts = True, {}
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            if parts[0] == "total":
                in_table = False
            else:
                counts[parts[0]] = int(parts[1])
    return counts


def copy_workflow(target: Path) -> Path:
    """A copy of the workflow's source (Snakefile, rules, scripts, library) to edit in a test."""
    import shutil

    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, target / name)
    for name in ("rules", "workflow_scripts", "schemas", "report", "src", "profiles"):
        shutil.copytree(REPO / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
    return target / "Snakefile"
