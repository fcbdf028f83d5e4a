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
        _check_choice_split(name, dataset, methods)
        _check_dmdiff(name, dataset, kind, methods, root)
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


def _check_choice_split(name: str, dataset: Mapping[str, Any], methods) -> None:
    """Tables choose among a method's variants on val: several variants need val images."""
    from thincam.registry import METHODS

    choices = [m for m, v in methods.items() if len(v) > 1 and not METHODS[m].every_variant_reported]
    if choices and dataset["splits"].get("val", 0) < 1:
        raise ConfigError(
            f"config key datasets.{name}.splits.val: methods {choices} have several variants, "
            "chosen on the validation split, which is empty"
        )


def _check_dmdiff(name: str, dataset: Mapping[str, Any], kind: str, methods, root: Path) -> None:
    """DMDiff needs a metalens PSF grid, known models, and a negative path to pseudo-pair with."""
    spec = dataset.get("dmdiff")
    if spec is None:
        if "dmdiff" in methods:
            raise ConfigError(f"config key datasets.{name}.methods.dmdiff: the dataset has no dmdiff block")
        return
    key = f"datasets.{name}.dmdiff"
    if kind != "metalens":
        raise ConfigError(f"config key {key}: DMDiff needs a metalens camera (its FWHM grid), not {kind!r}")
    for variant, params in methods.get("dmdiff", {}).items():
        if params["model"] not in spec["models"]:
            raise ConfigError(
                f"config key datasets.{name}.methods.dmdiff.{variant}.model: no model "
                f"{params['model']!r} (configured: {sorted(spec['models'])})"
            )
    n_train = dataset["splits"]["train"]
    if not 0 <= spec["unpaired"] < n_train:
        raise ConfigError(f"config key {key}.unpaired: must be below the {n_train} training images")
    train = spec["train"]
    for model, overrides in spec["models"].items():
        merged = {**train, **overrides}
        total = sum(merged[p] for p in ("p_pos", "p_neu", "p_neg"))
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"config key {key}.models.{model}: p_pos + p_neu + p_neg = {total}, not 1")
        if overrides["pseudo_pairs"] and (spec["unpaired"] == 0 or train["p_neg"] == 0):
            raise ConfigError(
                f"config key {key}.models.{model}.pseudo_pairs: needs unpaired > 0 and a "
                "negative path (train.p_neg > 0) to make the pairs"
            )
        for weights in ("lpips_weights_dir", "musiq_weights_dir"):
            _check_path(merged.get(weights), f"{key}.models.{model}.{weights}", root)
    _check_path(spec["base"]["path"], f"{key}.base.path", root)
