"""The ``thincam`` command on the committed DiffuserCam PSF and hand capture: calibrate, reconstruct
(ADMM), info, its errors (naming the file or option) and each command's --help. NSDD with a model
from the tiny run is in test_workflow.py, which shares that run."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from thincam.cli import main, parser
from thincam.data.h5io import read_h5

DATA = Path(__file__).parent / "data" / "diffusercam"
PSF_FRAME, HAND = DATA / "psf_ds4.tif", DATA / "hand_ds4.tif"
# config.yaml's diffusercam_lowres camera at 1/20 of the frame, and diffusercam_hand's ADMM variant
LOWRES = ["--downsample", "20"]
ADMM = ["--param", "mu1=1e-4", "--param", "mu2=6.72e-7", "--param", "mu3=2.69e-6", "--param", "tau=0"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    out = tmp_path_factory.mktemp("calibrate") / "psf.h5"
    assert main(["calibrate", str(PSF_FRAME), *LOWRES, "-o", str(out)]) == 0
    return out


def test_calibrate_writes_the_psf_and_its_diagnostic(calibrated, capsys):
    arrays, attrs = read_h5(calibrated, contract="psf")
    assert arrays["psf"].shape == (1, 15, 20)
    np.testing.assert_allclose(arrays["psf"].sum(), 1.0, rtol=1e-5)
    assert attrs["n_saturated"] == 0 and attrs["energy_kept"] == pytest.approx(1.0)
    for suffix in (".png", ".pdf"):
        assert (calibrated.parent / f"psf_diagnostic{suffix}").stat().st_size > 0
    assert main(["info", str(calibrated)]) == 0
    printed = capsys.readouterr().out
    assert "thincam psf file" in printed and "psf: float32 [1, 15, 20]" in printed
    assert "all 1 dataset checksums verify" in printed


def test_reconstruct_admm_writes_images_and_hdf5(calibrated, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["reconstruct", str(HAND), "--psf", str(calibrated), *LOWRES, "--method", "admm", *ADMM]
    assert (
        main([*args, "--param", "n_iter=20", "--image-size", "12", "16", "--normalise", "anchor", "-o", str(out)]) == 0
    )
    arrays, attrs = read_h5(out / "hand_ds4_admm.h5", contract="recon")
    assert arrays["xhat"].shape == (1, 1, 12, 16) and attrs["method"] == "admm"
    assert tifffile.imread(out / "hand_ds4_admm.tif").dtype == np.uint16
    assert (out / "hand_ds4_admm.png").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["hand_ds4_admm.h5", "hand_ds4_admm.png", "hand_ds4_admm.tif"]
    assert "hand_ds4_admm.h5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["calibrate", str(PSF_FRAME), "--downsample", "20", "--size", "30", "40"],
            "--size [30, 40] and --downsample 20",
        ),
        (["calibrate", str(DATA / "absent.tif")], "absent.tif: file does not exist"),
        (
            ["reconstruct", str(HAND), "--psf", str(PSF_FRAME), *LOWRES, "--method", "admm"],
            "needs parameter(s) ['mu1', 'mu2', 'mu3', 'tau', 'n_iter']",
        ),
        (["reconstruct", str(HAND), "--psf", str(PSF_FRAME), "--method", "nsdd"], "--method nsdd needs --model"),
        (
            ["reconstruct", str(DATA / "none"), "--psf", str(PSF_FRAME), "--method", "wiener"],
            "none: capture file or folder does not exist",
        ),
        (["info", str(HAND)], "hand_ds4.tif: not a readable HDF5 file"),
    ],
)
def test_errors_name_the_file_or_option(args, message, tmp_path, capsys):
    assert main([*args, "-o", str(tmp_path / "out")] if args[0] != "info" else args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["calibrate", "reconstruct", "info"])
def test_help_explains_each_command(command, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args([command, "--help"])
    text = capsys.readouterr().out
    assert f"usage: thincam {command}" in text and "options:" in text


def test_solvers_docstring_example_runs(calibrated, monkeypatch):
    """The package docstring's example (also in the README), PSF file -> operator -> solver ->
    image, as written: in a folder holding the PSF file `thincam calibrate` wrote and tests/."""
    import textwrap

    import thincam.solvers

    doc = thincam.solvers.__doc__
    code = textwrap.dedent(doc[doc.index("::\n") + 3 :])
    (calibrated.parent / "tests").symlink_to(Path(__file__).parent)
    monkeypatch.chdir(calibrated.parent)
    namespace: dict = {}
    exec(compile(code, "thincam.solvers example", "exec"), namespace)
    xhat = namespace["xhat"]
    assert tuple(xhat.shape) == (1, 1, 15, 20) and 0 <= float(xhat.min()) and float(xhat.max()) <= 1
