"""Cross-field config checks that a JSON schema cannot express: references, input paths and
combinations of keys that would silently do the wrong thing.

Run by the Snakefile right after schema validation, so a bad config fails before any job; the
checks that read an input file (a PSF frame, the first capture, a prior's config files) call the
library functions the jobs will, without their slow parts. docs/checks.md lists them.
``coerce_numeric_strings`` runs before validation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from thincam.data.ingest import read_release_frame
from thincam.data.layouts import find_pairs
from thincam.errors import ThincamError
from thincam.models.prior import ADM_FACTS, prior_facts, trained_prior_facts
from thincam.optics.calibrate import check_capture_camera
from thincam.optics.capture import read_psf_frame
from thincam.registry import METHODS, SPLITS

# Exponent notation ('1e-6', '3E5'): YAML 1.1 (PyYAML) reads it as text unless it has both a dot
# and a signed exponent, although every YAML 1.2 reader and every user means a number.
_EXPONENT_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """The config names something that does not exist, or combines keys that cannot work."""


def _duplicate_keys(node: yaml.Node, path: str, seen: set) -> list[str]:
    """'key (lines a and b)' for every key written twice in one mapping under ``node``."""
    if id(node) in seen:  # an alias repeats its anchor's node: check it once
        return []
    seen.add(id(node))
    found = []
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *anchor' keys may be overridden: that is what a merge is for
            key, line = key_node.value, key_node.start_mark.line + 1
            dotted = f"{path}.{key}" if path else str(key)
            if key in first:
                found.append(f"{dotted} (lines {first[key]} and {line})")
            first.setdefault(key, line)
            found += _duplicate_keys(value_node, dotted, seen)
    elif isinstance(node, yaml.SequenceNode):
        for k, item in enumerate(node.value):
            found += _duplicate_keys(item, f"{path}[{k}]", seen)
    return found


def check_unique_keys(path: str | Path) -> None:
    """Refuse a config file that writes a key twice in one mapping.

    YAML loaders keep the last of two equal keys without a word, so a second ``wiener:`` block
    would silently replace the first and its variants vanish from the tables.
    """
    path = Path(path)
    duplicates = _duplicate_keys(yaml.compose(path.read_text(), Loader=yaml.SafeLoader), "", set())
    if duplicates:
        raise ConfigError(f"config file {path}: key written twice: {'; '.join(duplicates)}; keep one")


def _resolve(value, root: Path) -> Path | None:
    """A config path as Snakemake reads it: relative to the workdir ``root``."""
    return None if value is None else root / Path(value)


def _check_path(value, key: str, root: Path) -> None:
    if value is None:
        return
    path = _resolve(value, root)
    if not path.exists():
        raise ConfigError(f"config key {key}: input path {value!r} does not exist")


def coerce_numeric_strings(config: Any) -> Any:
    """A copy of ``config`` with exponent-notation strings ('1e-6') turned into numbers.

    PyYAML reads ``mu1: 1e-6`` as the string '1e-6', which the schema then rejects; no thincam key
    takes such text as a string. Integral values become int, so ``n_iter: 1e3`` counts; dict
    keys (variant names like ``K1e-2``) are left alone.
    """
    if isinstance(config, Mapping):
        return {key: coerce_numeric_strings(value) for key, value in config.items()}
    if isinstance(config, list):
        return [coerce_numeric_strings(value) for value in config]
    if isinstance(config, str) and _EXPONENT_NUMBER.fullmatch(config.strip()):
        number = float(config)
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    return config


def _check_capture_background(camera: Mapping[str, Any], key: str) -> None:
    """A dark frame is used only by ``background: dark``; with any other background it is ignored."""
    background, dark_path = camera["background"], camera.get("dark_path")
    if dark_path is not None and background != "dark":
        raise ConfigError(
            f"config keys {key}.dark_path and {key}.background: a dark frame is only subtracted "
            f"with background 'dark', not {background!r}; set background: dark or dark_path: null"
        )
    if dark_path is None and background == "dark":
        raise ConfigError(f"config key {key}.background: 'dark' needs {key}.dark_path")


def _check_operator(name: str, dataset: Mapping[str, Any]) -> None:
    """The truncated-SVD A+ and the methods that need the SVD (DDRM) exist in closed form only
    for the circular lensless operator."""
    operators = {f"datasets.{name}.operator": dataset["operator"]}
    override = (dataset.get("nsdd") or {}).get("operator")
    if override:
        operators[f"datasets.{name}.nsdd.operator"] = {**dataset["operator"], **override}
    for key, operator in operators.items():
        circular = operator["kind"] == "lensless" and operator.get("boundary", "linear") == "circular"
        if operator["pinv"]["kind"] == "tsvd" and not circular:
            raise ConfigError(
                f"config key {key}.pinv.kind: 'tsvd' needs the lensless operator with boundary "
                "'circular' (the only one whose SVD is known); use kind 'tikhonov'"
            )
    operator = dataset["operator"]
    if operator["kind"] == "lensless" and operator.get("boundary", "linear") == "circular":
        return
    for method in dataset.get("methods", {}):
        if METHODS[method].needs_svd:
            raise ConfigError(
                f"config key datasets.{name}.methods.{method}: {METHODS[method].label} needs the "
                f"operator's singular value decomposition, which the {operator['kind']} operator "
                f"(boundary {operator.get('boundary', 'linear')!r}) lacks; only the lensless "
                "operator with boundary 'circular' has one"
            )


def _check_ddnm_forms(name: str, dataset: Mapping[str, Any]) -> None:
    """DDNM+'s svd form needs the circular operator's SVD; its tikhonov form a Tikhonov A+.

    Checked for every DDNM+ variant (the dataset's operator) and the NSDD teacher (with the
    ``nsdd.operator`` overrides), so a wrong form fails before hours of sampling.
    """
    uses = [
        (f"datasets.{name}.methods.ddnm.{variant}.form", params["form"], dataset["operator"])
        for variant, params in dataset.get("methods", {}).get("ddnm", {}).items()
    ]
    nsdd = dataset.get("nsdd")
    if nsdd:
        operator = {**dataset["operator"], **(nsdd.get("operator") or {})}
        uses.append((f"datasets.{name}.nsdd.teacher.form", nsdd["teacher"]["form"], operator))
    for key, form, operator in uses:
        circular = operator["kind"] == "lensless" and operator.get("boundary", "linear") == "circular"
        if form == "svd" and not circular:
            raise ConfigError(
                f"config key {key}: 'svd' needs the lensless operator with boundary 'circular' "
                f"(diagonal in Fourier); the {operator['kind']} operator here has no SVD: use 'tikhonov'"
            )
        if form == "tikhonov" and operator["pinv"]["kind"] != "tikhonov":
            raise ConfigError(
                f"config key {key}: 'tikhonov' takes its lam floor and CG steps from a Tikhonov "
                f"pinv, not {operator['pinv']['kind']!r}: use 'svd' or 'scalar'"
            )


def check_config(config: Mapping[str, Any], root: Path) -> None:
    """Raise ConfigError naming the key of the first dangling reference or missing input path."""
    cameras = config["cameras"]
    first_captures: dict = {}  # each capture dataset's first frame, read once
    for name, camera in cameras.items():
        if camera["kind"] == "capture":
            _check_path(camera["path"], f"cameras.{name}.path", root)
            _check_path(camera.get("dark_path"), f"cameras.{name}.dark_path", root)
            _check_capture_background(camera, f"cameras.{name}")
            paths = {"path": _resolve(camera["path"], root), "dark_path": _resolve(camera.get("dark_path"), root)}
            check_capture_camera({**camera, **paths}, f"cameras.{name}")
        _check_simulated_camera(name, camera)
    for name, dataset in config["datasets"].items():
        if dataset["camera"] not in cameras:
            raise ConfigError(
                f"config key datasets.{name}.camera: no camera {dataset['camera']!r} "
                f"(configured: {sorted(cameras)})"
            )
        if "captures" in dataset:
            _check_path(dataset["captures"]["path"], f"datasets.{name}.captures.path", root)
            _check_capture_scale(name, dataset, cameras[dataset["camera"]], root, first_captures)
        source = dataset.get("source", {})
        if source.get("kind") == "folder":
            _check_path(source.get("path"), f"datasets.{name}.source.path", root)
        _check_split_sizes(name, dataset)
        kind = cameras[dataset["camera"]]["kind"]
        if (kind == "metalens") != (dataset["operator"]["kind"] == "metalens"):
            raise ConfigError(
                f"config key datasets.{name}.operator.kind: {dataset['operator']['kind']!r} "
                f"does not fit camera {dataset['camera']!r} of kind {kind!r}"
            )
        _check_operator(name, dataset)
        _check_ddnm_forms(name, dataset)
        methods = dataset.get("methods", {})
        if methods and dataset["splits"]["test"] == 0:
            raise ConfigError(
                f"config key datasets.{name}.splits.test: 0 test images, but methods "
                f"{sorted(methods)} are configured to reconstruct them"
            )
        _check_choice_split(name, dataset, methods)
        _check_dmdiff(name, dataset, kind, methods, root)
        if "dmdiff" in dataset:
            _check_dmdiff_size(name, dataset["dmdiff"], _scene_size(dataset, config))
        for method in dataset.get("sweeps", {}):
            if method not in methods:
                raise ConfigError(f"config key datasets.{name}.sweeps.{method}: method not configured")
    for name, prior in (config.get("priors") or {}).items():
        _check_path(prior.get("path"), f"priors.{name}.path", root)
        if prior.get("kind") == "adm" and not str(prior["path"]).endswith((".pt", ".pth")):
            raise ConfigError(f"config key priors.{name}.path: an ADM checkpoint is a .pt/.pth file, got {prior['path']!r}")
    for name, dataset in config["datasets"].items():
        prior = dataset.get("prior")
        if prior is not None and prior not in (config.get("priors") or {}):
            raise ConfigError(f"config key datasets.{name}.prior: no prior {prior!r} configured")
        _check_models_from(name, config)
        _check_noise_source(name, config)
    _check_priors(config, root, first_captures)
    _check_path((config.get("metrics") or {}).get("weights_dir"), "metrics.weights_dir", root)
    for dataset, recons in config["figures"]["capture_figures"].items():
        for recon in recons:
            method, _, variant = recon.partition("/")
            if variant not in config["datasets"].get(dataset, {}).get("methods", {}).get(method, {}):
                raise ConfigError(
                    f"config key figures.capture_figures.{dataset}: no reconstruction {recon!r}"
                )


# What a trained model depends on: the camera (its PSF), the scene grid and the operator.
SHARED_GEOMETRY = ("camera", "image_size", "operator")
# The keys a dataset with models_from leaves to the dataset it takes its models from.
MODEL_KEYS = ("prior", "nsdd", "dmdiff")
# The trained models models_from serves, by the method's need, and the key that provides each.
MODEL_SOURCE_KEYS = {"prior": "prior", "student": "nsdd"}


def _scene_size(dataset: Mapping[str, Any], config: Mapping[str, Any]) -> list:
    """A dataset's scene grid: image_size, else (captures) the camera's PSF size."""
    return list(dataset.get("image_size") or config["cameras"][dataset["camera"]]["size"])


def _check_models_from(name: str, config: Mapping[str, Any]) -> None:
    """A dataset that borrows its trained models must share what they were trained on."""
    datasets = config["datasets"]
    dataset = datasets[name]
    source = dataset.get("models_from")
    if source is None:
        return
    key = f"datasets.{name}.models_from"
    if source not in datasets or source == name:
        raise ConfigError(f"config key {key}: no other dataset {source!r} (configured: {sorted(datasets)})")
    if datasets[source].get("models_from") is not None:
        raise ConfigError(f"config key {key}: {source!r} takes its own models from another dataset; name that one")
    own = [k for k in MODEL_KEYS if k in dataset]
    if own:
        raise ConfigError(
            f"config keys {key} and datasets.{name}.{own[0]}: a dataset with models_from uses "
            f"the models of {source!r}; remove {own[0]}"
        )
    for part in SHARED_GEOMETRY:
        mine = _scene_size(dataset, config) if part == "image_size" else dataset[part]
        theirs = _scene_size(datasets[source], config) if part == "image_size" else datasets[source][part]
        if mine != theirs:
            raise ConfigError(
                f"config keys datasets.{name}.{part} and datasets.{source}.{part}: {name!r} takes "
                f"its models from {source!r}, so they must be equal ({mine!r} vs {theirs!r})"
            )
    for method in dataset.get("methods", {}):
        needs = METHODS[method].needs
        if needs is not None and needs not in MODEL_SOURCE_KEYS:
            raise ConfigError(
                f"config key datasets.{name}.methods.{method}: models_from serves methods that "
                f"need a prior or an NSDD student, not a {needs}"
            )
        if needs is not None and MODEL_SOURCE_KEYS[needs] not in datasets[source]:
            raise ConfigError(
                f"config key datasets.{name}.methods.{method}: needs a {needs}, but "
                f"datasets.{source} (its models_from) has no {MODEL_SOURCE_KEYS[needs]}"
            )


def _check_noise_source(name: str, config: Mapping[str, Any]) -> None:
    """noise.gaussian_sigma_from names a capture set of this camera on the scene's [0, 1] scale."""
    source = (config["datasets"][name].get("noise") or {}).get("gaussian_sigma_from")
    if source is None:
        return
    key = f"datasets.{name}.noise.gaussian_sigma_from"
    captures = config["datasets"].get(source, {}).get("captures")
    if captures is None:
        raise ConfigError(f"config key {key}: {source!r} is not a dataset with captures")
    if config["datasets"][source]["camera"] != config["datasets"][name]["camera"]:
        raise ConfigError(
            f"config keys {key} and datasets.{source}.camera: the noise must come from a capture "
            f"of the same camera ({config['datasets'][name]['camera']!r})"
        )
    if captures.get("normalise", "peak") != "anchor":
        raise ConfigError(
            f"config keys {key} and datasets.{source}.captures.normalise: the estimate is in "
            "the capture's units, which match a simulated scene's [0, 1] scale only with "
            "normalise: anchor"
        )


def _check_choice_split(name: str, dataset: Mapping[str, Any], methods) -> None:
    """Tables choose among a method's variants on val: several variants need val images."""
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
        for method in ("dmdiff", "unet"):  # the UNet baseline trains on DMDiff's pairs and loss
            if method in methods:
                raise ConfigError(f"config key datasets.{name}.methods.{method}: the dataset has no dmdiff block")
        return
    key = f"datasets.{name}.dmdiff"
    if "unet" in methods and "restorer" not in spec:
        raise ConfigError(f"config key {key}.restorer: needed by methods.unet (the supervised UNet baseline)")
    if kind != "metalens":
        raise ConfigError(f"config key {key}: DMDiff needs a metalens camera (its FWHM grid), not {kind!r}")
    for variant, params in methods.get("dmdiff", {}).items():
        if params["model"] not in spec["models"]:
            raise ConfigError(
                f"config key datasets.{name}.methods.dmdiff.{variant}.model: no model "
                f"{params['model']!r} (configured: {sorted(spec['models'])})"
            )
    n_train = dataset["splits"]["train"]
    release = spec["unpaired"] == "release"
    if release and (dataset.get("captures") or {}).get("format") != "dmdiff":
        raise ConfigError(
            f"config key {key}.unpaired: 'release' takes the pseudo pairs a release marks (captures.format dmdiff)"
        )
    if not release and not 0 <= spec["unpaired"] < n_train:
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


def _first_capture(name: str, dataset: Mapping[str, Any], root: Path, seen: dict) -> tuple[Path, np.ndarray]:
    """(path, [C,H,W] frame before downsampling) of a dataset's first capture, read as ingestion
    reads every capture: what its captures look like. ``seen`` keeps it for the rest of the check:
    a release lists tens of thousands of files, and the pixel-scale and channel checks both ask."""
    if name not in seen:
        seen[name] = _read_first_capture(name, dataset, root)
    return seen[name]


def _read_first_capture(name: str, dataset: Mapping[str, Any], root: Path) -> tuple[Path, np.ndarray]:
    captures = dataset["captures"]
    try:
        first = find_pairs(captures["format"], str(_resolve(captures["path"], root)))[0].measurement
        frame = read_release_frame(
            first, captures["format"], bit_depth=captures.get("bit_depth"), window=captures.get("window")
        )
    except ThincamError as err:
        raise ConfigError(f"config key datasets.{name}.captures.path: {err}") from err
    return first, frame


def _check_capture_scale(
    name: str, dataset: Mapping[str, Any], camera: Mapping[str, Any], root: Path, seen: dict
) -> None:
    """Captures and a captured PSF must be at one pixel scale, so their whole frames, each after
    its own downsample, are the same size (a release may ship its captures downsampled already).
    At another scale the PSF blurs the scene by the wrong amount, though a crop can make the
    sensor sizes agree."""
    if camera["kind"] != "capture":
        return
    first, capture = _first_capture(name, dataset, root, seen)
    psf = read_psf_frame(
        _resolve(camera["path"], root), camera["bit_depth"], f"cameras.{dataset['camera']}",
        camera.get("format"), camera.get("window"),
    )
    mine, theirs = dataset["captures"].get("downsample", 1), camera["downsample"]
    capture_frame = [side // mine for side in capture.shape[-2:]]
    psf_frame = [side // theirs for side in psf.shape[-2:]]
    if capture_frame != psf_frame:
        raise ConfigError(
            f"config keys datasets.{name}.captures.downsample ({mine}) and "
            f"cameras.{dataset['camera']}.downsample ({theirs}): after them the capture {first} is "
            f"{capture_frame[0]}x{capture_frame[1]}, the PSF frame {psf_frame[0]}x{psf_frame[1]}: "
            "they must be at one pixel scale, or the PSF blurs the scene by the wrong amount"
        )


# Samplers that step through the prior's own DDIM schedule: it has no more steps than it was trained with.
DDIM_SAMPLERS = ("ddnm", "dps")


def _prior_facts(name: str, config: Mapping[str, Any], root: Path) -> dict[str, int]:
    """``models.prior.prior_facts`` of a configured prior: from its folder, or as it will be trained."""
    prior = config["priors"][name]
    key = f"priors.{name}"
    if prior.get("kind") == "adm":
        return ADM_FACTS
    if prior.get("path") is not None:
        try:
            return prior_facts(_resolve(prior["path"], root))
        except ThincamError as err:
            raise ConfigError(f"config key {key}.path: {err}") from err
    dataset = config["datasets"].get(prior["dataset"])
    if dataset is None:
        raise ConfigError(f"config key {key}.dataset: no dataset {prior['dataset']!r} to train on")
    try:
        return trained_prior_facts(prior.get("train"), config["cameras"][dataset["camera"]]["channels"])
    except ThincamError as err:
        raise ConfigError(f"config key {key}.train: {err}") from err


def _image_channels(name: str, config: Mapping[str, Any], root: Path, seen: dict) -> tuple[int, str]:
    """(channels of a dataset's images, what decides them): the camera's, or 3 where the first
    capture is in colour (a 1-channel PSF is then shared by the three channels)."""
    dataset = config["datasets"][name]
    channels = int(config["cameras"][dataset["camera"]]["channels"])
    why = f"camera {dataset['camera']!r}"
    if "captures" in dataset:
        first, capture = _first_capture(name, dataset, root, seen)
        if capture.shape[0] > channels:
            channels, why = 3, f"capture {first}"
    return channels, why


def _check_priors(config: Mapping[str, Any], root: Path, seen: dict) -> None:
    """What a prior can do, against what each dataset asks of it: channels, an image its UNet can
    halve, and no more sampling steps than its training timesteps."""
    datasets = config["datasets"]
    facts = {name: _prior_facts(name, config, root) for name in config.get("priors") or {}}
    for name, dataset in datasets.items():
        source = dataset.get("models_from", name)
        prior = datasets[source].get("prior")
        trains = [p for p, spec in (config.get("priors") or {}).items() if spec.get("dataset") == name]
        needs = {METHODS[m].needs for m in dataset.get("methods", {})}
        uses = prior is not None and (needs & {"prior", "student"} or "nsdd" in dataset)
        for p in trains + ([prior] if uses else []):
            _check_halvings(name, dataset, p, facts[p], config)
        if not uses:
            continue
        via = f" (through datasets.{name}.models_from)" if source != name else ""
        channels, why = _image_channels(name, config, root, seen)
        if channels != facts[prior]["channels"]:
            raise ConfigError(
                f"config keys datasets.{name}.camera and priors.{prior}{via}: the images have "
                f"{channels} channels ({why}), the prior {facts[prior]['channels']}"
            )
        _check_steps(name, dataset, prior, facts[prior]["num_train_timesteps"])


def _check_halvings(name: str, dataset: Mapping[str, Any], prior: str, facts, config) -> None:
    """The prior's UNet halves the scene at each of its downsamplings: each side must divide."""
    factor = 2 ** facts["halvings"]
    size = _scene_size(dataset, config)
    if any(side % factor for side in size):
        key = f"datasets.{name}.image_size" if dataset.get("image_size") else f"cameras.{dataset['camera']}.size"
        raise ConfigError(
            f"config keys {key} and priors.{prior}: the prior's UNet halves the image "
            f"{facts['halvings']} times, so each side of {size} must be a multiple of {factor}"
        )


def _check_steps(name: str, dataset: Mapping[str, Any], prior: str, n_train: int) -> None:
    """DDIM sampling steps and the NSDD timesteps lie within the prior's training timesteps."""
    uses = [
        (f"datasets.{name}.methods.{method}.{variant}.steps", params["steps"])
        for method in DDIM_SAMPLERS
        for variant, params in dataset.get("methods", {}).get(method, {}).items()
    ]
    nsdd = dataset.get("nsdd")
    if nsdd:
        uses.append((f"datasets.{name}.nsdd.teacher.steps", nsdd["teacher"]["steps"]))
    for key, steps in uses:
        if steps > n_train:
            raise ConfigError(
                f"config key {key}: {steps} steps, but prior {prior!r} was trained with "
                f"{n_train} timesteps (at most one sampling step each)"
            )
    if nsdd and nsdd["student"]["t_fixed"] >= n_train:
        raise ConfigError(
            f"config key datasets.{name}.nsdd.student.t_fixed: {nsdd['student']['t_fixed']} is not "
            f"below the {n_train} training timesteps of prior {prior!r}"
        )


def _check_simulated_camera(name: str, camera: Mapping[str, Any]) -> None:
    """What a PSF simulator would refuse (optics.calibrate), from the camera's keys alone."""
    key = f"cameras.{name}"
    if camera["kind"] == "metalens" and list(camera["size"]) != list(camera["psf_size"]):
        raise ConfigError(
            f"config keys {key}.size {camera['size']} and {key}.psf_size {camera['psf_size']}: the "
            "written PSF is the centre cell of the grid, so they must be equal"
        )
    if camera["kind"] == "sparse_dots" and camera["n_dots"] > camera["size"][0] * camera["size"][1]:
        raise ConfigError(f"config key {key}.n_dots: {camera['n_dots']} dots do not fit {camera['size']} pixels")


def _check_split_sizes(name: str, dataset: Mapping[str, Any]) -> None:
    """A source of a known size (``source.n_images``) must hold the images the splits ask for."""
    n_images = dataset.get("source", {}).get("n_images")
    wanted = sum(dataset["splits"].get(split, 0) for split in SPLITS)
    if n_images is not None and wanted > n_images:
        raise ConfigError(
            f"config keys datasets.{name}.splits and datasets.{name}.source.n_images: the splits "
            f"ask for {wanted} images, the source makes {n_images}"
        )


def _check_dmdiff_size(name: str, spec: Mapping[str, Any], size: list) -> None:
    """The scene must pass the UNet restorer's and the tiny base's downsamplings (and, for the
    base's pretraining, be square): models.restorer and models.dmdiff.pretrain refuse it after
    the measurements are simulated."""
    key = f"datasets.{name}.image_size"
    restorer = spec.get("restorer")
    if restorer is not None:
        factor = 2 ** (len(restorer["block_channels"]) - 1)
        if any(side % factor for side in size):
            raise ConfigError(
                f"config keys {key} and datasets.{name}.dmdiff.restorer.block_channels: the UNet "
                f"restorer halves the image {factor.bit_length() - 1} times, so each side of {size} "
                f"must be a multiple of {factor}"
            )
    if spec["base"]["path"] is not None:
        return
    pretrain = spec["base"]["pretrain"]
    factor = 2 ** (len(pretrain["vae_channels"]) - 1 + len(pretrain["unet_channels"]) - 1)
    if size[0] != size[1] or size[0] % factor:
        raise ConfigError(
            f"config keys {key} and datasets.{name}.dmdiff.base.pretrain: the tiny base pretrains "
            f"on square images whose side is a multiple of {factor} (its VAE and UNet "
            f"downsamplings), not {size}"
        )
