"""Cross-field config checks, called directly (no Snakemake): each bad combination names its keys."""

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tifffile
import yaml

from thincam.config_checks import ConfigError, check_config, check_unique_keys, coerce_numeric_strings
from thincam.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def _config():
    return copy.deepcopy(DEFAULT)


def test_default_config_passes():
    check_config(_config(), root=REPO)


def _no_test_images(config):
    config["datasets"]["faces_phlatcam"]["splits"]["test"] = 0


def _dark_frame_with_corner_background(config):
    config["cameras"]["diffusercam"]["dark_path"] = "tests/data/diffusercam/hand_ds4.tif"


def _dark_background_without_frame(config):
    config["cameras"]["diffusercam"]["background"] = "dark"


def _tsvd_on_the_linear_operator(config):
    config["datasets"]["diffusercam_hand"]["operator"]["pinv"] = {"kind": "tsvd", "threshold": 0.01}


def _tsvd_on_the_metalens(config):
    config["datasets"]["natural_metalens"]["operator"]["pinv"] = {"kind": "tsvd", "threshold": 0.01}


def _tsvd_override_on_a_linear_teacher(config):
    faces = config["datasets"]["faces_phlatcam"]
    faces["operator"] = {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 0.01}}
    faces["nsdd"]["operator"] = {"pinv": {"kind": "tsvd", "threshold": 0.1}}


def _ddrm_on_the_linear_operator(config):
    config["datasets"]["diffusercam_hand"]["methods"]["ddrm"] = {"s20": {"steps": 20, "sigma_y": 0.01}}


def _ddrm_on_the_metalens(config):
    config["datasets"]["natural_metalens"]["methods"]["ddrm"] = {"s20": {"steps": 20, "sigma_y": 0.01}}


def _svd_ddnm_on_the_metalens(config):
    config["datasets"]["natural_metalens"]["methods"]["ddnm"]["s50"]["form"] = "svd"


def _svd_teacher_on_the_metalens(config):
    config["datasets"]["natural_metalens"]["nsdd"]["teacher"]["form"] = "svd"


def _tikhonov_ddnm_with_a_tsvd_pinv(config):
    faces = config["datasets"]["faces_phlatcam"]
    faces["operator"]["pinv"] = {"kind": "tsvd", "threshold": 0.1}
    faces["methods"]["ddnm"]["s50"]["form"] = "tikhonov"


def _unet_without_restorer(config):
    del config["datasets"]["natural_metalens"]["dmdiff"]["restorer"]


def _models_from_another_camera(config):
    config["datasets"]["diffusercam_hand"]["camera"] = "diffusercam"
    config["datasets"]["diffusercam_hand"]["captures"]["downsample"] = 1  # the PSF's pixel scale
    noise = config["datasets"]["diffusercam_sim"]["noise"]  # else its noise source fails first
    del noise["gaussian_sigma_from"]
    noise["gaussian_sigma"] = 1e-5


def _models_from_another_scene(config):
    config["datasets"]["diffusercam_hand"]["image_size"] = [30, 40]


def _models_from_another_operator(config):
    config["datasets"]["diffusercam_hand"]["operator"]["pinv"]["lam"] = 0.01


def _models_from_with_its_own_prior(config):
    config["datasets"]["diffusercam_hand"]["prior"] = "faces"


def _models_from_a_dataset_without_student(config):
    sim = config["datasets"]["diffusercam_sim"]
    del sim["nsdd"], sim["methods"]["nsdd"]


def _models_from_nowhere(config):
    config["datasets"]["diffusercam_hand"]["models_from"] = "no_such_dataset"


def _noise_from_a_peak_normalised_capture(config):
    config["datasets"]["diffusercam_hand"]["captures"]["normalise"] = "peak"


def _noise_from_a_simulated_dataset(config):
    config["datasets"]["diffusercam_sim"]["noise"]["gaussian_sigma_from"] = "faces_phlatcam"


@pytest.mark.parametrize(
    "breaks, message",
    [
        (
            _models_from_another_camera,
            "config keys datasets.diffusercam_hand.camera and datasets.diffusercam_sim.camera",
        ),
        (
            _models_from_another_scene,
            "config keys datasets.diffusercam_hand.image_size and datasets.diffusercam_sim.image_size",
        ),
        (
            _models_from_another_operator,
            "config keys datasets.diffusercam_hand.operator and datasets.diffusercam_sim.operator",
        ),
        (
            _models_from_with_its_own_prior,
            "config keys datasets.diffusercam_hand.models_from and datasets.diffusercam_hand.prior",
        ),
        (
            _models_from_a_dataset_without_student,
            "config key datasets.diffusercam_hand.methods.nsdd: needs a student, but datasets.diffusercam_sim",
        ),
        (_models_from_nowhere, "config key datasets.diffusercam_hand.models_from: no other dataset 'no_such_dataset'"),
        (
            _noise_from_a_peak_normalised_capture,
            "config keys datasets.diffusercam_sim.noise.gaussian_sigma_from and "
            "datasets.diffusercam_hand.captures.normalise",
        ),
        (
            _noise_from_a_simulated_dataset,
            "config key datasets.diffusercam_sim.noise.gaussian_sigma_from: 'faces_phlatcam' is not a dataset with captures",
        ),
        (_no_test_images, "config key datasets.faces_phlatcam.splits.test: 0 test images, but methods"),
        (
            _dark_frame_with_corner_background,
            "config keys cameras.diffusercam.dark_path and cameras.diffusercam.background",
        ),
        (_dark_background_without_frame, "cameras.diffusercam.background: 'dark' needs cameras.diffusercam.dark_path"),
        (_tsvd_on_the_linear_operator, "datasets.diffusercam_hand.operator.pinv.kind: 'tsvd' needs"),
        (_tsvd_on_the_metalens, "datasets.natural_metalens.operator.pinv.kind: 'tsvd' needs"),
        (_tsvd_override_on_a_linear_teacher, "datasets.faces_phlatcam.nsdd.operator.pinv.kind"),
        (_svd_ddnm_on_the_metalens, "config key datasets.natural_metalens.methods.ddnm.s50.form: 'svd' needs"),
        (_svd_teacher_on_the_metalens, "config key datasets.natural_metalens.nsdd.teacher.form: 'svd' needs"),
        (_tikhonov_ddnm_with_a_tsvd_pinv, "datasets.faces_phlatcam.methods.ddnm.s50.form: 'tikhonov' takes"),
        (_unet_without_restorer, "config key datasets.natural_metalens.dmdiff.restorer: needed by methods.unet"),
        (
            _ddrm_on_the_linear_operator,
            "config key datasets.diffusercam_hand.methods.ddrm: DDRM (deepinv) needs the operator's "
            "singular value decomposition, which the lensless operator (boundary 'linear') lacks",
        ),
        (_ddrm_on_the_metalens, "datasets.natural_metalens.methods.ddrm: DDRM (deepinv) needs the operator's"),
    ],
)
def test_bad_combinations_name_their_keys(breaks, message):
    config = _config()
    breaks(config)
    jsonschema.validate(config, SCHEMA)  # each is schema-valid: only the cross-field check sees it
    with pytest.raises(ConfigError) as err:
        check_config(config, root=REPO)
    assert message in str(err.value)


def test_dark_frame_with_dark_background_passes(tmp_path):
    tifffile.imwrite(tmp_path / "dark.tif", np.full((300, 400), 30, np.uint16))
    config = _config()
    config["cameras"]["diffusercam"].update(dark_path=str(tmp_path / "dark.tif"), background="dark")
    check_config(config, root=REPO)


def test_exponent_strings_become_numbers_before_validation():
    """PyYAML reads `mu1: 1e-6` as text, which the schema refuses; coerced, it validates."""
    text = (REPO / "config.yaml").read_text().replace("mu1: 1.0e-6", "mu1: 1e-6").replace("n_iter: 300", "n_iter: 3e2")
    config = yaml.safe_load(text)
    params = config["datasets"]["diffusercam_sim"]["methods"]["admm"]["tutorial"]
    assert params["mu1"] == "1e-6" and params["n_iter"] == "3e2"
    with pytest.raises(jsonschema.ValidationError, match="'(1e-6|3e2)' is not of type"):
        jsonschema.validate(config, SCHEMA)
    coerced = coerce_numeric_strings(config)
    jsonschema.validate(coerced, SCHEMA)
    fixed = coerced["datasets"]["diffusercam_sim"]["methods"]["admm"]["tutorial"]
    assert fixed["mu1"] == 1e-6 and isinstance(fixed["mu1"], float)
    assert fixed["n_iter"] == 300 and isinstance(fixed["n_iter"], int)
    # Keys, names and other text stay as written; the input is not modified.
    assert "K1e-2" in coerced["datasets"]["faces_phlatcam"]["methods"]["wiener"]
    assert coerced["figures"] == config["figures"] and params["mu1"] == "1e-6"
    assert coerce_numeric_strings({"a": ["3.5E+2", "-.5e-1", "e5", "1e", "1.5", "x1e5"]}) == {
        "a": [350, -0.05, "e5", "1e", "1.5", "x1e5"]
    }


# ---------------------------------------------------------------- bad input, round 3 (issue 21)

PSF_TIF = REPO / "tests" / "data" / "diffusercam" / "psf_ds4.tif"


def overexposed_psf(path, share=0.033):
    """The committed DiffuserCam PSF frame exposed longer, so ``share`` of its pixels clip at 65535."""
    raw = tifffile.imread(PSF_TIF).astype(np.float64)
    gain = 65535 / np.quantile(raw, 1 - share)
    tifffile.imwrite(path, np.minimum(np.round(raw * gain), 65535).astype(np.uint16))
    return path


def test_duplicate_keys_are_named_with_both_lines(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "datasets:\n  faces:\n    methods:\n      wiener:\n        K1: {K: 1}\n"
        "      admm: {}\n      wiener:\n        K2: {K: 2}\n"
        "base: &base {a: 1}\nother:\n  <<: *base\n  a: 2\n"  # a merge key may be overridden
    )
    with pytest.raises(ConfigError) as err:
        check_unique_keys(path)
    assert str(err.value) == (
        f"config file {path}: key written twice: datasets.faces.methods.wiener (lines 4 and 7); keep one"
    )
    check_unique_keys(REPO / "config.yaml")  # anchors and aliases, each key once


def test_saturated_psf_frame_is_refused_unless_accepted(tmp_path):
    config = _config()
    camera = config["cameras"]["diffusercam"]
    camera["path"] = str(overexposed_psf(tmp_path / "bright.tif"))
    with pytest.raises(BadInputError) as err:
        check_config(config, root=REPO)
    assert "bright.tif: 3962 pixel values (3.30%) at full scale" in str(err.value)
    assert "config key cameras.diffusercam.max_saturated (now 0.001)" in str(err.value)
    camera["max_saturated"] = 0.05
    check_config(config, root=REPO)


def _forgotten_downsample(config):
    config["cameras"]["diffusercam"]["size"] = [15, 20]


def _zero_padded_psf(config):
    config["cameras"]["diffusercam_lowres"]["size"] = [120, 160]


@pytest.mark.parametrize(
    "breaks, message",
    [
        (
            _forgotten_downsample,
            "psf_ds4.tif: config keys cameras.diffusercam.size [15, 20] and cameras.diffusercam.downsample 1: "
            "the 15x20 crop of the 300x400 frame after downsampling keeps 0.5% of the PSF's energy",
        ),
        (
            _zero_padded_psf,
            "psf_ds4.tif: config keys cameras.diffusercam_lowres.size [120, 160] and "
            "cameras.diffusercam_lowres.downsample 5: the frame is only 60x80 after downsampling",
        ),
    ],
)
def test_psf_frame_that_does_not_fit_the_sensor_is_refused(breaks, message):
    config = _config()
    breaks(config)
    with pytest.raises(BadInputError) as err:
        check_config(config, root=REPO)
    assert message in str(err.value)


def _captures_at_another_scale(config, tmp_path):
    """Captures downsampled by 10 and cropped to the size of a PSF downsampled by 20."""
    config["cameras"]["diffusercam_lowres"].update(downsample=20, size=[15, 20])
    config["datasets"]["diffusercam_hand"]["captures"].update(downsample=10, crop=[15, 20])


def _colour_capture(config, tmp_path):
    gray = tifffile.imread(REPO / "tests" / "data" / "diffusercam" / "hand_ds4.tif")
    tifffile.imwrite(tmp_path / "rgb_hand.tif", np.stack([gray] * 3, axis=-1))
    config["datasets"]["diffusercam_hand"]["captures"]["path"] = str(tmp_path / "rgb_hand.tif")


def _odd_image_size(config, tmp_path):
    config["datasets"]["faces_phlatcam"]["image_size"] = [30, 30]


def _ddnm_steps_above_training(config, tmp_path):
    config["datasets"]["faces_phlatcam"]["methods"]["ddnm"]["s100"]["steps"] = 2000


def _teacher_steps_above_training(config, tmp_path):
    config["priors"]["natural"]["train"]["num_train_timesteps"] = 200
    config["datasets"]["natural_metalens"]["nsdd"]["teacher"]["steps"] = 300


def _student_time_beyond_training(config, tmp_path):
    config["priors"]["faces"]["train"]["num_train_timesteps"] = 100


def _prior_of_no_dataset(config, tmp_path):
    config["priors"]["natural"]["dataset"] = "natural_metalenz"


def _unknown_beta_schedule(config, tmp_path):
    config["priors"]["faces"]["train"]["beta_schedule"] = "cosin"


def _pretrained_prior(unet=None, scheduler=True):
    """A breaker pointing priors.faces at a local diffusers folder with this UNet config."""

    def breaks(config, tmp_path):
        folder = tmp_path / "pretrained"
        (folder / "unet").mkdir(parents=True)
        (folder / "unet" / "config.json").write_text(json.dumps(unet or {}))
        (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
        if scheduler:
            (folder / "scheduler").mkdir()
            (folder / "scheduler" / "scheduler_config.json").write_text("{}")
        config["priors"]["faces"]["path"] = str(folder)

    return breaks


@pytest.mark.parametrize(
    "breaks, message",
    [
        (
            _captures_at_another_scale,
            "config keys datasets.diffusercam_hand.captures.downsample (10) and "
            "cameras.diffusercam_lowres.downsample (20): after them the capture "
            f"{REPO}/tests/data/diffusercam/hand_ds4.tif is 30x40, the PSF frame 15x20: they must be "
            "at one pixel scale",
        ),
        (
            _colour_capture,
            "config keys datasets.diffusercam_hand.camera and priors.diffusercam_scenes (through "
            "datasets.diffusercam_hand.models_from): the images have 3 channels (capture {tmp}/rgb_hand.tif), "
            "the prior 1",
        ),
        (
            _odd_image_size,
            "config keys datasets.faces_phlatcam.image_size and priors.faces: the prior's UNet halves "
            "the image 2 times, so each side of [30, 30] must be a multiple of 4",
        ),
        (
            _ddnm_steps_above_training,
            "config key datasets.faces_phlatcam.methods.ddnm.s100.steps: 2000 steps, but prior 'faces' "
            "was trained with 1000 timesteps",
        ),
        (
            _teacher_steps_above_training,
            "config key datasets.natural_metalens.nsdd.teacher.steps: 300 steps, but prior 'natural' "
            "was trained with 200 timesteps",
        ),
        (
            _student_time_beyond_training,
            "config key datasets.faces_phlatcam.nsdd.student.t_fixed: 100 is not below the 100",
        ),
        (_prior_of_no_dataset, "config key priors.natural.dataset: no dataset 'natural_metalenz'"),
        (_unknown_beta_schedule, "config key priors.faces.train: prior cfg: beta_schedule must be one of"),
        (
            _pretrained_prior(scheduler=False),
            "config key priors.faces.path: prior {tmp}/pretrained: no scheduler_config.json in "
            "{tmp}/pretrained/scheduler",
        ),
        (
            _pretrained_prior(unet={"in_channels": 1}),
            "config keys datasets.faces_phlatcam.camera and priors.faces: the images have 3 channels "
            "(camera 'phlatcam'), the prior 1",
        ),
        (
            _pretrained_prior(unet={"down_block_types": ["DownBlock2D"] * 7}),
            "config keys datasets.faces_phlatcam.image_size and priors.faces: the prior's UNet halves "
            "the image 6 times, so each side of [32, 32] must be a multiple of 64",
        ),
    ],
)
def test_what_a_prior_cannot_do_is_refused_naming_the_keys(tmp_path, breaks, message):
    _refused(tmp_path, breaks, message)


def _refused(tmp_path, breaks, message):
    """``breaks`` makes a schema-valid config that check_config refuses with ``message``."""
    config = _config()
    breaks(config, tmp_path)
    jsonschema.validate(config, SCHEMA)
    with pytest.raises(ConfigError) as err:
        check_config(config, root=REPO)
    assert message.format(tmp=tmp_path) in str(err.value)


def test_absurd_budgets_fail_validation_naming_the_key():
    config = _config()
    config["priors"]["faces"]["train"]["steps"] = 1_000_000_000
    with pytest.raises(jsonschema.ValidationError) as err:
        jsonschema.validate(config, SCHEMA)
    assert "1000000000 is greater than the maximum of 1000000" in str(err.value)
    assert "['priors']['faces']['train']['steps']" in str(err.value)


def _metalens_size_not_its_psf_size(config, tmp_path):
    config["cameras"]["metalens"]["size"] = [21, 21]


def _more_dots_than_pixels(config, tmp_path):
    config["cameras"]["dots"]["n_dots"] = 2000


def _splits_beyond_the_source(config, tmp_path):
    config["datasets"]["natural_metalens"]["source"]["n_images"] = 100


def _restorer_cannot_halve(config, tmp_path):
    config["datasets"]["natural_metalens"]["dmdiff"]["restorer"]["block_channels"] = [16, 32, 32, 32, 32, 32, 32]


def _oblong_dmdiff_scene(config, tmp_path):
    config["datasets"]["natural_metalens"]["image_size"] = [32, 48]


@pytest.mark.parametrize(
    "breaks, message",
    [
        (_metalens_size_not_its_psf_size, "config keys cameras.metalens.size [21, 21] and cameras.metalens.psf_size [17, 17]"),
        (_more_dots_than_pixels, "config key cameras.dots.n_dots: 2000 dots do not fit [32, 32] pixels"),
        (
            _splits_beyond_the_source,
            "config keys datasets.natural_metalens.splits and datasets.natural_metalens.source.n_images: "
            "the splits ask for 184 images, the source makes 100",
        ),
        (
            _restorer_cannot_halve,
            "config keys datasets.natural_metalens.image_size and "
            "datasets.natural_metalens.dmdiff.restorer.block_channels: the UNet restorer halves the image 6 times",
        ),
        (
            _oblong_dmdiff_scene,
            "config keys datasets.natural_metalens.image_size and datasets.natural_metalens.dmdiff.base.pretrain: "
            "the tiny base pretrains on square images whose side is a multiple of 4",
        ),
    ],
)
def test_what_a_job_would_refuse_later_is_refused_naming_the_keys(tmp_path, breaks, message):
    _refused(tmp_path, breaks, message)
