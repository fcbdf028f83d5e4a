"""Cross-field config checks, called directly (no Snakemake): each bad combination names its keys."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from thincam.config_checks import ConfigError, check_config, coerce_numeric_strings

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


def test_dark_frame_with_dark_background_passes():
    config = _config()
    config["cameras"]["diffusercam"].update(dark_path="tests/data/diffusercam/hand_ds4.tif", background="dark")
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
