"""Run the repository's Snakefile on a tiny config inside a temporary directory."""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


def tiny_config() -> dict:
    """.test/config.yaml (the default shrunk to seconds), with its input paths made absolute."""
    return config_with_absolute_paths(REPO / ".test" / "config.yaml")


def config_with_absolute_paths(path: Path) -> dict:
    """A config file of this repository with its input paths made absolute, to run elsewhere."""
    config = yaml.safe_load(path.read_text())
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


PRESET_OVERRIDES = REPO / "tests" / "preset_overrides"


def preset(name: str) -> dict:
    return yaml.safe_load((REPO / "presets" / f"{name}.yaml").read_text())


def merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base`` key by key; a null value deletes the key."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def scaled_preset(name: str) -> dict:
    """A preset scaled down by tests/preset_overrides/<name>.yaml for a CPU run on the replica."""
    return merge(preset(name), yaml.safe_load((PRESET_OVERRIDES / f"{name}.yaml").read_text()))


def preset_on_replica(name: str) -> dict:
    """A preset unchanged but for its geometry (captured cameras, captures), taken from its scaled
    version: PSF and capture frames are read before any job, and the replica's are miniature.
    The jobs it plans are the preset's."""
    config = preset(name)
    scaled = scaled_preset(name)
    for camera, spec in config["cameras"].items():
        if spec["kind"] == "capture":
            config["cameras"][camera] = scaled["cameras"][camera]
    for dataset, spec in config["datasets"].items():
        if "captures" in spec:
            spec["captures"] = scaled["datasets"][dataset]["captures"]
    return config
