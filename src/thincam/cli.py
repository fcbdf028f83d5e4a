"""The ``thincam`` command: calibrate a PSF frame, reconstruct captures, say what a results file holds.

A thin layer over the functions the workflow's rules call (``stages.calibrate``,
``stages.measurements.ingest_captures``, ``stages.reconstruct``), so a capture reconstructed here
passes the same checks and runs the same code as in a workflow run; its errors are the
workflow's, with the config keys they name translated to this command's options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from thincam.data.layouts import LAYOUTS
from thincam.errors import BadInputError, ThincamError
from thincam.registry import METHODS

# The config keys the library's errors name for a CLI camera and capture set: read back as options.
CAMERA_KEY = "cameras.cli"
CAPTURES_KEY = "datasets.cli.captures"
# A reconstruction timed once, on its first image: the command reports, not benchmarks.
TIMING = {"warmup": 0, "repeats": 1, "n_images": 1, "min_timed_s": 0.0}


def _as_options(message: str) -> str:
    """An error of the library with the config keys it names (``cameras.cli.size``) as options (``--size``)."""
    pattern = rf"(?:config keys? )?(?:{re.escape(CAMERA_KEY)}|{re.escape(CAPTURES_KEY)})\.(\w+)"
    return re.sub(pattern, lambda m: "--" + m.group(1).replace("_", "-"), message)


class _OptionNames(logging.Filter):
    """Log records (the calibration's saturation note, say) with config keys read as options."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = _as_options(record.getMessage()), ()
        return True


def _size_option(group, flag: str, help: str) -> None:
    group.add_argument(flag, type=int, nargs=2, metavar=("H", "W"), help=help)


def _psf_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PSF frame calibration (as a capture camera in config.yaml)")
    group.add_argument(
        "--downsample",
        type=int,
        default=1,
        help="area-downsampling factor of the frame (and, in reconstruct, of the captures; default 1)",
    )
    _size_option(group, "--size", "sensor size after downsampling (default: the whole frame)")
    group.add_argument("--bit-depth", type=int, help="sensor bit depth (default: from the file's integer type)")
    group.add_argument(
        "--background",
        choices=("corner", "dark", "none"),
        default="corner",
        help="background to subtract (default corner)",
    )
    group.add_argument("--dark", help="dark frame, for --background dark")
    group.add_argument("--channels", type=int, choices=(1, 3), help="PSF channels (default: the frame's)")
    group.add_argument(
        "--hot-pixel-sigma", type=float, default=6.0, help="hot-pixel threshold in robust sigmas (default 6)"
    )
    group.add_argument(
        "--center", action="store_true", help="crop around the PSF's centroid (default: the frame's centre)"
    )
    group.add_argument(
        "--max-saturated",
        type=float,
        default=None,
        help="largest share of values at full scale accepted (default 1e-3)",
    )
    group.add_argument("--pixel-pitch-um", type=float, default=1.0, help="recorded in the PSF file (default 1)")


def _camera(args: argparse.Namespace, frame: Path) -> dict[str, Any]:
    """The capture camera config entry the options describe (sizes default to the whole frame)."""
    from thincam.data.images import load_image

    if args.size is None or args.channels is None:
        shape = load_image(frame, args.bit_depth, "--bit-depth").shape
    camera = {
        "kind": "capture",
        "channels": args.channels or shape[0],
        "size": args.size or [shape[1] // args.downsample, shape[2] // args.downsample],
        "pixel_pitch_um": args.pixel_pitch_um,
        "seed": 0,
        "path": str(frame),
        "dark_path": args.dark,
        "bit_depth": args.bit_depth,
        "background": args.background,
        "downsample": args.downsample,
        "hot_pixel_sigma": args.hot_pixel_sigma,
        "center": args.center,
    }
    if args.max_saturated is not None:
        camera["max_saturated"] = args.max_saturated
    return camera


def _calibrate(args: argparse.Namespace, frame: Path, out: Path) -> None:
    from thincam.stages.calibrate import calibrate_psf

    calibrate_psf(_camera(args, frame), out, key=CAMERA_KEY)


def calibrate_command(args: argparse.Namespace) -> None:
    from thincam.stages.calibrate import psf_diagnostic_figure

    frame = Path(args.frame)
    out = Path(args.out or frame.with_suffix(".h5").name)
    _calibrate(args, frame, out)
    figure = out.with_name(out.stem + "_diagnostic.png")
    psf_diagnostic_figure(out, figure)
    print(f"wrote {out} (calibrated PSF) and {figure} (+ .pdf, diagnostic)")
    _print_description(out)


def _value(text: str) -> Any:
    """A parameter value: a number (1e-4 too, which YAML reads as a string), else YAML (true, lists, words)."""
    import yaml

    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _params(pairs: list[str]) -> dict[str, Any]:
    """``--param key=value`` pairs, as a variant's entry in config.yaml."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInputError(f"--param {pair!r}: expected key=value")
        params[key] = _value(value)
    return params


def _trained_model(method: str, model: str | None) -> tuple[dict[str, str], dict[str, Any]]:
    """(the models context of ``method`` from ``--model``, the operator a student was distilled with)."""
    needs = METHODS[method].needs
    if needs is None:
        if model is not None:
            raise BadInputError(f"--model {model}: method {method!r} reads no trained model")
        return {}, {}
    if model is None:
        raise BadInputError(f"--method {method} needs --model: a trained {needs} folder from a workflow run")
    path = Path(model)
    if not path.exists():
        raise BadInputError(f"--model {model}: does not exist")
    if needs == "student":
        from thincam.models.nsdd import MARKER, load_student

        identity = load_student(path).config.operator_identity or {}
        operator = {key: identity[key] for key in ("kind", "boundary", "pinv", "scene_shape") if key in identity}
        return {"student": str(path / MARKER)}, operator
    if needs == "dmdiff":
        return _dmdiff_models(path), {}
    return {needs: str(path)}, {}  # a prior or the UNet restorer: the folder itself


def _dmdiff_models(path: Path) -> dict[str, str]:
    """A DMDiff model folder (results/dmdiff/<dataset>/<model>[/model]) and the base it was
    trained on, whose recorded path is relative to the run's folder (the one holding results/)."""
    from thincam.models.dmdiff.model import CONFIG_FILE

    model = path / "model" if (path / "model" / CONFIG_FILE).is_file() else path
    if not (model / CONFIG_FILE).is_file():
        raise BadInputError(f"--model {path}: not a trained DMDiff model (no {CONFIG_FILE})")
    base = Path(json.loads((model / CONFIG_FILE).read_text())["base_dir"])
    if not base.is_absolute():
        runs = [folder.parent for folder in model.resolve().parents if folder.name == "results"]
        base = (runs[0] if runs else Path.cwd()) / base
    if not base.is_dir():
        raise BadInputError(f"--model {path}: the DMDiff base it was trained on, {base}, is missing")
    return {"dmdiff": str(model), "dmdiff_base": str(base)}


def _capture_files(paths: list[str]) -> list[Path]:
    from thincam.data.images import IMAGE_SUFFIXES
    from thincam.data.layouts import image_files

    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = image_files(path, nested=False)  # a broken link is refused, naming it, as in the workflow
            if not found:
                raise BadInputError(f"{path}: no capture files ({', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise BadInputError(f"{path}: capture file or folder does not exist")
    return files


def _write_images(xhat: np.ndarray, stem: Path) -> list[Path]:
    """``stem``.png (8-bit) and ``stem``.tif (16-bit) of an image [C,H,W] in [0, 1], atomically."""
    import imageio.v3 as iio
    import tifffile

    from thincam.data.atomic import atomic_file

    image = np.clip(xhat, 0.0, 1.0).transpose(1, 2, 0)
    image = image[..., 0] if image.shape[-1] == 1 else image
    png, tif = stem.with_suffix(".png"), stem.with_suffix(".tif")
    with atomic_file(png) as tmp:
        iio.imwrite(tmp, np.round(image * 255).astype(np.uint8), extension=".png")
    with atomic_file(tif) as tmp:
        tifffile.imwrite(tmp, np.round(image * 65535).astype(np.uint16))
    return [png, tif]


def _operator(args: argparse.Namespace, psf_attrs: dict, psf_shape, trained: dict[str, Any]) -> tuple[dict, list[int]]:
    """(the operator config, the scene size): a metalens one for a metalens PSF file, else lensless;
    a student's own operator and scene size win over the options."""
    kind = "metalens" if psf_attrs["kind"] == "metalens" else "lensless"
    operator = {"kind": kind, "pinv": {"kind": "tikhonov", "lam": args.lam, "iters": args.cg_iters}}
    if kind == "lensless":
        operator["boundary"] = args.boundary
    operator.update(trained)
    scene_shape = operator.pop("scene_shape", None)
    if kind == "metalens" and not (args.image_size or scene_shape):
        raise BadInputError(f"--image-size: {args.psf} is a metalens PSF file, whose patch is not the image size")
    return operator, list(args.image_size or scene_shape or psf_shape)


def _captures_config(args: argparse.Namespace, capture: Path, operator: dict, image_size: list[int]) -> dict:
    """One capture as a dataset of config.yaml with only a test split (named "cli" in errors)."""
    background = args.capture_background or ("none" if operator["kind"] == "metalens" else "corner")
    return {
        "camera": "cli",
        "image_size": image_size,
        "operator": operator,
        "captures": {
            "format": args.format,
            "path": str(capture),
            "bit_depth": args.bit_depth,
            "background": background,
            "downsample": args.capture_downsample or args.downsample,
            "normalise": args.normalise,
        },
        "splits": {"train": 0, "val": 0, "test": 1},
    }


def reconstruct_command(args: argparse.Namespace) -> None:
    from thincam.data.h5io import read_h5
    from thincam.stages.measurements import ingest_captures
    from thincam.stages.reconstruct import reconstruct

    method, out = args.method, Path(args.out)
    params = _params(args.param)
    models, trained_operator = _trained_model(method, args.model)
    captures = _capture_files(args.captures)
    psf_path = Path(args.psf)
    if psf_path.suffix.lower() not in (".h5", ".hdf5"):  # a PSF frame: calibrate it as `calibrate` does
        frame, psf_path = psf_path, out / "psf.h5"
        _calibrate(args, frame, psf_path)
    psf_arrays, psf_attrs = read_h5(psf_path, names=["psf"], contract="psf")
    operator, image_size = _operator(args, psf_attrs, psf_arrays["psf"].shape[-2:], trained_operator)
    out.mkdir(parents=True, exist_ok=True)
    for capture in captures:
        name = capture.stem
        result = out / f"{name}_{method}.h5"
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=out) as folder:  # its dataset and recon files
            data = {split: f"{folder}/{split}.h5" for split in ("train", "val", "test")}
            ingest_captures(
                str(psf_path), _captures_config(args, capture, operator, image_size), "cli", data, args.seed
            )
            reconstruct(
                data["test"], str(psf_path), f"{folder}/recon",
                dataset="cli", method=method, variants={name: params}, timing=TIMING,
                seed=args.seed, device=args.device, batch_size=1, models={name: models},
            )  # fmt: skip
            os.replace(f"{folder}/recon/{name}.h5", result)
        xhat = read_h5(result, names=["xhat"], contract="recon")[0]["xhat"][0]
        png, tif = _write_images(xhat, result.with_suffix(""))
        print(f"{capture} -> {result}, {png}, {tif} ({method}, {xhat.shape[1]}x{xhat.shape[2]} px)")


def _print_description(path: Path) -> None:
    from thincam.data.h5io import describe

    about = describe(path)
    print(f"{path}: thincam {about['contract'] or 'unknown-contract'} file")
    for name, (shape, dtype) in about["datasets"].items():
        print(f"  {name}: {dtype} {list(shape)}")
    print(f"  checks: {about['checks']}")
    for key, value in sorted(about["attrs"].items()):
        text = value if isinstance(value, str) else json.dumps(value)
        print(f"  {key} = {text if len(text) <= 160 else text[:157] + '...'}")


def info_command(args: argparse.Namespace) -> None:
    for name in args.files:
        path = Path(name)
        if path.is_dir():
            found = sorted(path.rglob("*.h5"))
            if not found:
                raise BadInputError(f"{path}: no .h5 results files in this folder")
            for file in found:
                _print_description(file)
        elif path.suffix.lower() == ".csv":
            import pandas as pd

            table = pd.read_csv(path)
            print(f"{path}: table of {len(table)} rows; columns {list(table.columns)}")
        elif path.is_file():
            _print_description(path)
        else:
            raise BadInputError(f"{path}: does not exist")


def _methods_by_model() -> str:
    """ "prior: dps, ddnm, ...; student: nsdd, nsdd_full; ...": the registry's methods by the model they read."""
    readers: dict[str, list[str]] = {}
    for name, method in METHODS.items():
        if method.needs:
            readers.setdefault(method.needs, []).append(name)
    return "; ".join(f"{needs}: {', '.join(names)}" for needs, names in readers.items())


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="thincam",
        description="Lensless and metalens reconstruction: the workflow's steps for one camera and its captures.",
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    calibrate = commands.add_parser(
        "calibrate",
        help="PSF frame -> calibrated PSF file (.h5) and a one-page diagnostic figure",
        description="Calibrate a captured point-source frame as the workflow's calibrate_psf rule does "
        "(saturation check, dark/corner background, hot pixels, area downsampling, crop keeping "
        ">= 90% of the energy, unit sum), and draw its diagnostic figure (PNG and PDF).",
    )
    calibrate.add_argument("frame", metavar="PSF_FRAME", help="the point-source frame (.tif, .png, .npy, ...)")
    calibrate.add_argument("-o", "--out", help="the PSF file to write (default: PSF_FRAME's name with .h5, here)")
    _psf_options(calibrate)
    calibrate.set_defaults(run=calibrate_command)

    recon = commands.add_parser(
        "reconstruct",
        help="captures + PSF + method (or trained model) -> images (PNG, 16-bit TIFF) and HDF5",
        description="Reconstruct captures as the workflow's ingest_captures and reconstruct rules do. "
        f"Methods: {', '.join(METHODS)}. Methods with a trained model ({_methods_by_model()}) "
        "take its folder from a workflow run "
        "with --model (e.g. results/prior/<prior>, results/nsdd/<dataset>, results/dmdiff/<dataset>/<model>, "
        "results/unet/<dataset>/model); a student brings the operator it was distilled with. "
        "The operator is a metalens one for a metalens PSF file, else lensless.",
    )
    recon.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture files, or folders of them")
    recon.add_argument(
        "--psf", required=True, help="a calibrated PSF file (.h5) or a PSF frame (calibrated with the options below)"
    )
    recon.add_argument(
        "--method", required=True, choices=list(METHODS), metavar="METHOD", help=f"one of {', '.join(METHODS)}"
    )
    recon.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method parameter (repeat); e.g. --param n_iter=300",
    )
    recon.add_argument(
        "--model",
        help="the trained model folder the method reads (a prior, NSDD student, DMDiff model or UNet from a run)",
    )
    recon.add_argument("-o", "--out", default="thincam_out", help="output folder (default thincam_out)")
    capture = recon.add_argument_group("captures and operator")
    capture.add_argument("--capture-downsample", type=int, help="the captures' downsampling (default: --downsample)")
    capture.add_argument(
        "--capture-background",
        choices=("corner", "none"),
        help="the captures' background to subtract (default: none for a metalens PSF file, else corner)",
    )
    capture.add_argument(
        "--normalise",
        choices=("peak", "anchor"),
        default="peak",
        help="capture scale: peak at 1, or the 99.5th percentile of A+y at 1 (default peak)",
    )
    capture.add_argument(
        "--format",
        default="diffusercam",
        choices=sorted(LAYOUTS),
        help="the release whose loader reads the captures (channel order, orientation; default diffusercam)",
    )
    _size_option(capture, "--image-size", "scene size (default: a student's, else the sensor's)")
    capture.add_argument(
        "--boundary", choices=("linear", "circular"), default="linear", help="convolution boundary (default linear)"
    )
    capture.add_argument("--lam", type=float, default=1e-4, help="Tikhonov A+ regulariser (default 1e-4)")
    capture.add_argument("--cg-iters", type=int, default=30, help="CG iterations of A+ (default 30)")
    capture.add_argument("--device", default="cpu", help="torch device (default cpu)")
    capture.add_argument("--seed", type=int, default=0, help="seed of the diffusion methods' noise (default 0)")
    _psf_options(recon)
    recon.set_defaults(run=reconstruct_command)

    info = commands.add_parser(
        "info",
        help="what a results file holds: datasets, shapes, provenance, checks",
        description="Describe thincam results: an HDF5 file's contract, datasets (shapes, dtypes), "
        "attributes (provenance) and whether its checksums verify; a folder's .h5 files; a CSV table's columns.",
    )
    info.add_argument("files", nargs="+", metavar="FILE", help="a results file (.h5, .csv) or folder")
    info.set_defaults(run=info_command)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one command; a thincam error is printed (naming the file or option) with exit status 2."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("thincam").setLevel(logging.INFO)  # its own checks and progress, no dependency's chatter
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OptionNames) for f in handler.filters):
            handler.addFilter(_OptionNames())
    try:
        args.run(args)
    except ThincamError as err:
        print(f"thincam {args.command}: error: {_as_options(str(err))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
