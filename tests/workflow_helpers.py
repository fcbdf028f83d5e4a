"""Run the repository's Snakefile on a tiny config inside a temporary directory."""

from __future__ import annotations

import copy
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
    config["timing"] = {"warmup": 0, "repeats": 1, "n_images": 1}
    return config


def run_snakemake(workdir: Path, config: dict, *args: str, timeout: int = 900):
    """Run snakemake in ``workdir`` with ``config``; returns the CompletedProcess."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        str(SNAKEMAKE),
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(config_path),
        "--cores", "2",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir)
