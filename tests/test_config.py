"""Bad config fails at validation, before any job, naming the key or path."""

import pytest

from workflow_helpers import run_snakemake, tiny_config

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
    config["datasets"]["faces_dots"]["noise"]["gaussian_sigmaa"] = 0.1
    _dry_run_fails(tmp_path, config, "gaussian_sigmaa")


def test_wrong_type(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_dots"]["splits"]["train"] = "many"
    _dry_run_fails(tmp_path, config, "'many' is not of type 'integer'")


def test_missing_input_path(tmp_path):
    config = tiny_config()
    config["cameras"]["diffusercam"]["path"] = "nowhere/psf.tif"
    _dry_run_fails(tmp_path, config, "cameras.diffusercam.path", "nowhere/psf.tif")


def test_dangling_camera(tmp_path):
    config = tiny_config()
    config["datasets"]["faces_dots"]["camera"] = "hubble"
    _dry_run_fails(tmp_path, config, "datasets.faces_dots.camera", "hubble")


def test_undefined_variant_is_named(tmp_path):
    result = run_snakemake(tmp_path, tiny_config(), "-n", "results/recon/faces_dots/wiener/K42.h5")
    assert result.returncode != 0
    assert "no variant 'K42'" in result.stdout + result.stderr
