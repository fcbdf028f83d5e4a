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
    """The default config shrunk to seconds: 16 px, a handful of images, short schedules."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["cameras"]["dots"]["size"] = [16, 16]
    config["cameras"]["phlatcam"]["size"] = [32, 32]
    config["cameras"]["diffuser"]["size"] = [32, 32]
    config["cameras"]["diffusercam"]["path"] = str(REPO / config["cameras"]["diffusercam"]["path"])
    faces = config["datasets"]["faces_dots"]
    faces["image_size"] = [16, 16]
    faces["splits"] = {"train": 8, "val": 2, "test": 3}
    metalens = config["datasets"]["natural_metalens"]
    metalens["source"]["n_images"] = 12
    metalens["splits"] = {"train": 8, "val": 2, "test": 2}
    hand = config["datasets"]["diffusercam_hand"]
    hand["captures"]["path"] = str(REPO / hand["captures"]["path"])
    for dataset in config["datasets"].values():
        for variants in dataset.get("methods", {}).values():
            for params in variants.values():
                if "n_iter" in params:
                    params["n_iter"] = 5
                if "steps" in params:
                    params["steps"] = max(2, params["steps"] // 20)
    faces["nsdd"]["n_shards"] = 2
    faces["nsdd"]["teacher"]["steps"] = 4
    faces["nsdd"]["student"].update(steps=6, batch_size=4, checkpoint_every=3)
    config["priors"]["faces"]["train"].update(steps=10, batch_size=4)
    dmdiff = metalens["dmdiff"]
    dmdiff["unpaired"] = 4
    dmdiff["base"]["pretrain"].update(vae_steps=4, unet_steps=2, batch_size=4)
    dmdiff["train"].update(steps=3, batch_size=2)
    # Every trained model (the ablation) but only two decoder mixes: each job costs ~10 s here.
    sweep = metalens["methods"]["dmdiff"]
    for variant in [v for v, p in sweep.items() if p.get("alpha") not in (None, 0.0, 0.5)]:
        del sweep[variant]
    config["timing"] = {"warmup": 0, "repeats": 1, "n_images": 1}
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
