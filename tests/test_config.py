"""Bad config fails at validation, before any job, naming the key or path."""

import pytest

import test_config_checks as cases
from workflow_helpers import REPO, config_with_absolute_paths, run_snakemake, tiny_config

pytestmark = pytest.mark.workflow


def _dry_run_fails(tmp_path, config, *expected):
    result = run_snakemake(tmp_path, config, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for text in expected:
        assert text in output, output
    assert not (tmp_path / "results").exists()


def test_default_config_plans(tmp_path):
    result = run_snakemake(tmp_path, tiny_config(), "-n")
    assert result.returncode == 0, result.stderr
    assert "calibrate_psf" in result.stdout and "reconstruct" in result.stdout


def test_unknown_key(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_phlatcam"]["noise"]["gaussian_sigmaa"] = 0.1
    _dry_run_fails(tmp_path, config, "gaussian_sigmaa")


def test_wrong_type(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_phlatcam"]["splits"]["train"] = "many"
    _dry_run_fails(tmp_path, config, "'many' is not of type 'integer'")


@pytest.mark.parametrize(
    ("block", "key", "value", "message"),
    [
        (("priors", "faces", "train"), "ema_decay", 1.5, "1.5 is greater than or equal to the maximum of 1"),
        (("datasets", "natural_metalens", "dmdiff", "restorer"), "lr_decay", "linear", "'linear' is not one of"),
        (("datasets", "faces_phlatcam", "nsdd", "student"), "ema_deacy", 0.99, "ema_deacy"),
    ],
)
def test_training_keys_are_checked_in_every_training_block(tmp_path, block, key, value, message):
    config = tiny_config()
    target = config
    for part in block:
        target = target[part]
    target[key] = value
    _dry_run_fails(tmp_path, config, message)


def test_missing_input_path(tmp_path):
    config = tiny_config()
    config["cameras"]["diffusercam"]["path"] = "nowhere/psf.tif"
    _dry_run_fails(tmp_path, config, "cameras.diffusercam.path", "nowhere/psf.tif")


def test_dangling_camera(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_phlatcam"]["camera"] = "hubble"
    _dry_run_fails(tmp_path, config, "datasets.faces_phlatcam.camera", "hubble")


def test_undefined_method_is_named(tmp_path):
    result = run_snakemake(tmp_path, tiny_config(), "-n", "results/recon/faces_phlatcam/test/wienr")
    assert result.returncode != 0
    assert "defines no method 'wienr'" in result.stdout + result.stderr


def _dmdiff_config():
    config = tiny_config()
    return config, config["datasets"]["natural_metalens"]


def _breaks_model_reference(dataset):
    dataset["methods"]["dmdiff"]["full"]["model"] = "fulll"


def _breaks_pseudo_pairs(dataset):
    dataset["dmdiff"]["unpaired"] = 0


def _breaks_probabilities(dataset):
    dataset["dmdiff"]["models"]["no_negative"]["p_neu"] = 0.5


def _breaks_unpaired_count(dataset):
    dataset["dmdiff"]["unpaired"] = dataset["splits"]["train"]


def _breaks_camera(dataset):
    dataset["camera"] = "dots"
    dataset["operator"] = {"kind": "lensless", "pinv": {"kind": "tikhonov", "lam": 0.01}}


@pytest.mark.parametrize(
    "breaks, key",
    [
        (_breaks_model_reference, "datasets.natural_metalens.methods.dmdiff.full.model"),
        (_breaks_pseudo_pairs, "datasets.natural_metalens.dmdiff.models.full.pseudo_pairs"),
        (_breaks_probabilities, "datasets.natural_metalens.dmdiff.models.no_negative"),
        (_breaks_unpaired_count, "datasets.natural_metalens.dmdiff.unpaired"),
        (_breaks_camera, "datasets.natural_metalens.dmdiff: DMDiff needs a metalens camera"),
    ],
)
def test_dmdiff_cross_field_errors_name_the_key(breaks, key):
    from thincam.config_checks import ConfigError, check_config

    config, dataset = _dmdiff_config()
    check_config(config, root=REPO)
    breaks(dataset)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_config(config, root=REPO)


def test_dmdiff_reserved_model_name_fails_before_any_job(tmp_path):
    config, dataset = _dmdiff_config()
    dataset["dmdiff"]["models"]["negative_path"] = {"pseudo_pairs": False}
    _dry_run_fails(tmp_path, config, "negative_path")


def test_threads_beyond_the_largest_node_fail_before_any_job(tmp_path):
    config = tiny_config()
    config["threads"]["train_prior"] = 8
    config["max_threads_per_job"] = 2
    _dry_run_fails(tmp_path, config, "rule train_prior asks for 8 threads", "max_threads_per_job is 2")


def test_committed_test_config_is_the_tiny_default():
    """.test/config.yaml has every dataset and camera of config.yaml (only sizes differ)."""
    import yaml

    default = yaml.safe_load((REPO / "config.yaml").read_text())
    tiny = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    assert tiny["cameras"].keys() == default["cameras"].keys()
    assert tiny["datasets"].keys() == default["datasets"].keys()
    assert tiny["tables"] == default["tables"]
    assert tiny["claims"] == default["claims"]


def test_claims_need_three_seeds(tmp_path):
    config = tiny_config()
    config["claims"]["seeds"] = [0, 1]
    _dry_run_fails(tmp_path, config, "[0, 1] is too short")


def _dry_run_text(tmp_path, config, edit):
    """A dry run of ``config`` whose YAML text ``edit`` changed first (as a user's file reads)."""
    import subprocess

    from workflow_helpers import snakemake_command

    command = snakemake_command(tmp_path, config, "-n")
    path = tmp_path / "config.yaml"
    path.write_text(edit(path.read_text()))
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_numbers_in_exponent_notation_reach_the_rules(tmp_path):
    """mu1: 1e-4 (YAML 1.1 text) is the number 1e-4 for validation and every rule."""
    config = tiny_config()
    config["datasets"]["diffusercam_hand"]["methods"]["admm"]["tau0"]["mu1"] = "EXPONENT"
    result = _dry_run_text(tmp_path, config, lambda text: text.replace("EXPONENT", "1e-4"))
    assert "mu1: 1e-4" in (tmp_path / "config.yaml").read_text()
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_key_written_twice_fails_before_any_job(tmp_path):
    config = tiny_config()
    result = _dry_run_text(tmp_path, config, lambda text: text + "seed: 1\n")
    line = next(k for k, text in enumerate((tmp_path / "config.yaml").read_text().splitlines(), 1) if text.startswith("seed:"))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"key written twice: seed (lines {line} and " in output, output
    assert not (tmp_path / "results").exists()


def test_bad_psf_frames_fail_before_any_job(tmp_path):
    config = tiny_config()
    config["cameras"]["diffusercam"]["path"] = str(cases.overexposed_psf(tmp_path / "bright.tif"))
    _dry_run_fails(tmp_path, config, "bright.tif: 3962 pixel values (3.30%) at full scale", "cameras.diffusercam.max_saturated")
    config = tiny_config()
    config["cameras"]["diffusercam"]["size"] = [15, 20]
    _dry_run_fails(tmp_path, config, "config keys cameras.diffusercam.size [15, 20] and cameras.diffusercam.downsample 1")


def test_what_the_prior_cannot_do_fails_before_any_job(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_phlatcam"]["methods"]["ddnm"]["s20"]["steps"] = 5000
    _dry_run_fails(tmp_path, config, "config key datasets.faces_phlatcam.methods.ddnm.s20.steps: 5000 steps")


def _default_config():
    """config.yaml with its input paths made absolute (the dry runs below work elsewhere)."""
    return config_with_absolute_paths(REPO / "config.yaml")


def _absurd_training_budget(config, tmp_path):
    config["priors"]["faces"]["train"]["steps"] = 1_000_000_000


@pytest.mark.parametrize(
    "breaks, message",
    [
        (
            cases._captures_at_another_scale,
            "config keys datasets.diffusercam_hand.captures.downsample (10) and cameras.diffusercam_lowres.downsample (20)",
        ),
        (cases._colour_capture, "config keys datasets.diffusercam_hand.camera and priors.diffusercam_scenes"),
        (cases._odd_image_size, "config keys datasets.faces_phlatcam.image_size and priors.faces"),
        (cases._ddnm_steps_above_training, "config key datasets.faces_phlatcam.methods.ddnm.s100.steps: 2000 steps"),
        (
            cases._pretrained_prior(scheduler=False),
            "config key priors.faces.path: prior {tmp}/pretrained: no scheduler_config.json",
        ),
        (_absurd_training_budget, "On instance['priors']['faces']['train']['steps']"),
    ],
)
def test_issue_21_cases_fail_before_any_job(tmp_path, breaks, message):
    """Each mistake of issue 21 that used to fail inside a job (after training) fails the parse."""
    config = _default_config()
    breaks(config, tmp_path)
    _dry_run_fails(tmp_path / "work", config, message.format(tmp=tmp_path))
