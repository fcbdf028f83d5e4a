"""Cross-field config checks that a JSON schema cannot express: references and input paths.

Run by the Snakefile right after schema validation, so a bad config fails before any job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


class ConfigError(ValueError):
    """The config names something that does not exist."""


def _check_path(value, key: str, root: Path) -> None:
    if value is None:
        return
    path = Path(value)
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        raise ConfigError(f"config key {key}: input path {value!r} does not exist")


def check_config(config: Mapping[str, Any], root: Path) -> None:
    """Raise ConfigError naming the key of the first dangling reference or missing input path."""
    cameras = config["cameras"]
    for name, camera in cameras.items():
        if camera["kind"] == "capture":
            _check_path(camera["path"], f"cameras.{name}.path", root)
            _check_path(camera.get("dark_path"), f"cameras.{name}.dark_path", root)
    for name, dataset in config["datasets"].items():
        if dataset["camera"] not in cameras:
            raise ConfigError(
                f"config key datasets.{name}.camera: no camera {dataset['camera']!r} "
                f"(configured: {sorted(cameras)})"
            )
        if "captures" in dataset:
            _check_path(dataset["captures"]["path"], f"datasets.{name}.captures.path", root)
        source = dataset.get("source", {})
        if source.get("kind") == "folder":
            _check_path(source.get("path"), f"datasets.{name}.source.path", root)
        kind = cameras[dataset["camera"]]["kind"]
        if (kind == "metalens") != (dataset["operator"]["kind"] == "metalens"):
            raise ConfigError(
                f"config key datasets.{name}.operator.kind: {dataset['operator']['kind']!r} "
                f"does not fit camera {dataset['camera']!r} of kind {kind!r}"
            )
        methods = dataset.get("methods", {})
        for method in dataset.get("sweeps", {}):
            if method not in methods:
                raise ConfigError(f"config key datasets.{name}.sweeps.{method}: method not configured")
    _check_path((config.get("metrics") or {}).get("weights_dir"), "metrics.weights_dir", root)
    for dataset, recon in config["figures"]["capture_figures"].items():
        method, _, variant = recon.partition("/")
        if variant not in config["datasets"].get(dataset, {}).get("methods", {}).get(method, {}):
            raise ConfigError(
                f"config key figures.capture_figures.{dataset}: no reconstruction {recon!r}"
            )
