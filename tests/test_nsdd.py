"""NSDD student: null-space structure, distillation from target shards only, save/load, resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.errors import BadInputError, CorruptFileError, MissingWeightsError

SIZE = 32
OPERATOR = {
    "kind": "lensless",
    "scene_shape": [SIZE, SIZE],
    "sensor_shape": [SIZE, SIZE],
    "boundary": "circular",
    "pinv": {"kind": "tikhonov", "lam": 1e-2},
}
CFG = {
    "steps": 12,
    "batch_size": 4,
    "lr": 2e-3,
    "t_fixed": 100,
    "adapter_channels": 8,
    "mode": "null",
    "checkpoint_every": 5,
    "lpips_weight": 0.0,
    "lpips_weights_dir": None,
}


def sparse_dots_psf(seed: int = 0, dots: int = 12) -> np.ndarray:
    """A few random delta dots blurred by a 0.7 px Gaussian, unit sum, [3, 32, 32]."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    psf = np.zeros((SIZE, SIZE))
    np.add.at(psf, (rng.integers(0, SIZE, dots), rng.integers(0, SIZE, dots)), rng.uniform(0.5, 1.0, dots))
    psf = gaussian_filter(psf, 0.7, mode="wrap")
    return np.repeat((psf / psf.sum())[None], 3, axis=0).astype(np.float32)


def faces(n: int, start: int = 0) -> np.ndarray:
    """lfw faces resized to 32x32, gray repeated to 3 channels, float32 in [0, 1]."""
    from skimage import data
    from skimage.transform import resize

    gray = np.stack([resize(f, (SIZE, SIZE), anti_aliasing=True) for f in data.lfw_subset()[start : start + n]])
    return np.repeat(gray[:, None], 3, axis=1).clip(0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def psf_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("psf") / "dots.h5"
    atomic_write_h5(path, {"psf": sparse_dots_psf()}, {"source": "test sparse dots"}, contract="psf")
    return str(path)


@pytest.fixture(scope="module")
def physics(psf_path):
    from thincam.stages.common import load_operator

    return load_operator(psf_path, OPERATOR)


@pytest.fixture(scope="module")
def prior_path(tmp_path_factory):
    from diffusers import DDPMScheduler

    from thincam.models.prior import build_unet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior")
    build_unet((3, SIZE, SIZE), {"block_out_channels": [8, 16], "layers_per_block": 1}).save_pretrained(path / "unet")
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(path / "scheduler")
    return str(path)


def write_shards(folder, physics, prior_path, sizes, poison_x: bool = False) -> list[str]:
    """Target shards as the teacher rule writes them; the stand-in teacher target is a blurred face,
    not the face itself. ``poison_x`` adds a NaN ground truth the student must never touch."""
    from scipy.ndimage import gaussian_filter

    from thincam.models.prior import prior_id

    folder.mkdir(parents=True, exist_ok=True)
    x = faces(sum(sizes))
    rng = np.random.default_rng(1)
    with torch.no_grad():
        y = physics.A(torch.from_numpy(x)).numpy() + 0.01 * rng.standard_normal((len(x), 3, SIZE, SIZE))
        y = y.astype(np.float32)
        anchor = physics.A_dagger(torch.from_numpy(y)).numpy()
    target = gaussian_filter(x, (0, 0, 0.6, 0.6)).astype(np.float32)
    paths, start = [], 0
    for k, n in enumerate(sizes):
        sl = slice(start, start + n)
        datasets = {"y": y[sl], "anchor": anchor[sl], "target": target[sl], "index": np.arange(start, start + n)}
        if poison_x:
            datasets["x"] = np.full_like(x[sl], np.nan)
        attrs = {
            "seed": 0,
            "teacher": {"name": "stand-in"},
            "prior_id": prior_id(prior_path),
            "dataset": "faces",
            "range_null_residual": 0.0,
            "operator": OPERATOR,
        }
        paths.append(str(atomic_write_h5(folder / f"shard-{k:04d}.h5", datasets, attrs, contract="targets")))
        start += n
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory, physics, prior_path):
    return write_shards(tmp_path_factory.mktemp("targets"), physics, prior_path, [4, 4, 3])  # 3 batches of 4 per epoch


def shard_loss(student, physics, paths) -> float:
    arrays = [read_h5(p, contract="targets")[0] for p in paths]
    y, anchor, target = (torch.from_numpy(np.concatenate([a[k] for a in arrays])) for k in ("y", "anchor", "target"))
    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(student(y, physics, anchor=anchor), target))


def test_place_on_grid_puts_sensor_centre_on_scene_centre():
    from thincam.models.nsdd import place_on_grid

    y = torch.zeros(1, 1, 24, 24)
    y[..., 12, 12] = 1.0
    padded = place_on_grid(y, (32, 32))
    assert padded.shape[-2:] == (32, 32) and padded[0, 0, 16, 16] == 1.0 and padded.sum() == 1.0
    cropped = place_on_grid(padded, (24, 24))
    assert torch.equal(cropped, y)


def test_null_mode_keeps_the_anchors_range_for_any_r(prior_path):
    """A xhat = A A+ y for arbitrary student weights (random r); mode "full" breaks it."""
    from thincam.models.nsdd import build_student
    from thincam.models.prior import load_prior
    from thincam.physics.operators import LenslessConvolution

    # A real null space: the sparse-dots PSF band-limited to |f| < 0.2 cycles/px (70% of the
    # spectrum is invisible); a negligible lam makes the closed-form A+ a generalised inverse.
    spectrum = np.fft.rfft2(np.fft.ifftshift(sparse_dots_psf().astype(np.float64), axes=(-2, -1)))
    fy, fx = np.fft.fftfreq(SIZE)[:, None], np.fft.rfftfreq(SIZE)[None, :]
    spectrum[:, np.hypot(fy, fx) >= 0.2] = 0.0
    psf = np.fft.fftshift(np.fft.irfft2(spectrum, s=(SIZE, SIZE)), axes=(-2, -1))
    physics = LenslessConvolution(torch.from_numpy(psf), boundary="circular", pinv={"kind": "tikhonov", "lam": 1e-20})
    unet, scheduler = load_prior(prior_path)
    gen = torch.Generator().manual_seed(3)
    y = physics.A(torch.rand(2, 3, SIZE, SIZE, dtype=torch.float64, generator=gen))
    anchor = physics.A_dagger(y)
    a_anchor = physics.A(anchor)
    rel = {}
    for mode in ("null", "full"):
        student = build_student(unet, scheduler, {**CFG, "mode": mode}).double()
        with torch.no_grad():
            for p in student.parameters():  # arbitrary weights -> arbitrary r
                p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype, generator=gen))
            xhat = student(y, physics, anchor=anchor)
            r = student.residual(y, anchor)
        assert torch.linalg.vector_norm(physics.null_project(r)) > 0.1 * torch.linalg.vector_norm(r)
        rel[mode] = float(torch.linalg.vector_norm(physics.A(xhat) - a_anchor) / torch.linalg.vector_norm(a_anchor))
    assert rel["null"] < 1e-12
    assert rel["full"] > 1e-2


@pytest.mark.slow
def test_distillation_reduces_loss_without_ground_truth(tmp_path, monkeypatch, physics, psf_path, prior_path):
    """Shards carry a NaN ground truth `x`: training must neither read it nor need it."""
    import h5py

    from thincam.stages.nsdd import distill_nsdd
    from thincam.models.nsdd import build_student, load_student
    from thincam.models.prior import load_prior

    paths = write_shards(tmp_path / "targets", physics, prior_path, [8, 8, 5], poison_x=True)
    read = []
    original = h5py.Dataset.__getitem__

    def recording(self, key):
        read.append(self.name)
        return original(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    out = tmp_path / "out"
    distill_nsdd(paths, psf_path, OPERATOR, prior_path, str(out), {**CFG, "steps": 20}, seed=0)
    monkeypatch.undo()

    assert {"/y", "/anchor", "/target"} <= set(read)
    assert "/x" not in read
    marker = json.loads((out / "training.json").read_text())
    assert marker["phases"]["nsdd"]["steps"] == 20 and marker["loss"] == "l2"
    assert not (out / "checkpoint").exists()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    curve = list(csv.DictReader((out / "loss.csv").read_text().splitlines()))
    assert len(curve) == 20 and all(np.isfinite(float(row["loss"])) for row in curve)

    unet, scheduler = load_prior(prior_path)
    torch.manual_seed(0)
    before = shard_loss(build_student(unet, scheduler, CFG), physics, paths)
    after = shard_loss(load_student(out), physics, paths)
    assert after < 0.7 * before, (before, after)


def test_save_load_gives_identical_outputs(tmp_path, physics, prior_path):
    from thincam.models.nsdd import build_student, load_student, nsdd_reconstruct
    from thincam.models.prior import load_prior

    torch.manual_seed(0)
    student = build_student(*load_prior(prior_path), {**CFG, "t_fixed": 250})
    with torch.no_grad():  # a non-zero adapter output, as after training
        student.adapter[-1].weight.normal_(0.0, 0.05)
    student.save_pretrained(tmp_path / "model")
    again = load_student(tmp_path / "model")
    y = physics.A(torch.from_numpy(faces(5)))
    xa, xb = nsdd_reconstruct(student, physics, y), nsdd_reconstruct(again, physics, y)
    assert torch.equal(xa, xb) and xa.dtype == torch.float32 and xa.min() >= 0 and xa.max() <= 1
    # Batch composition changes only float round-off (convolution blocking), not the result.
    torch.testing.assert_close(nsdd_reconstruct(again, physics, y, batch_size=2), xa, rtol=0, atol=1e-5)
    assert again.config.mode == "null" and again.config.t_fixed == 250

    # An output folder without its marker (a killed run) is not a student.
    with pytest.raises(CorruptFileError, match="incomplete"):
        load_student(tmp_path)
    with pytest.raises(MissingWeightsError, match="nowhere"):
        load_student(tmp_path / "nowhere")


@pytest.mark.slow
def test_resume_after_kill_is_bit_identical(tmp_path, shards, psf_path, prior_path):
    """SIGKILL after the checkpoint at step 2 (mid-epoch: 3 batches an epoch), run again to 7."""
    from resume_helpers import killed_and_resumed, same_files

    cfg = {**CFG, "steps": 7, "checkpoint_every": 2}
    checkpoint = tmp_path / "checkpoint"
    code = f"""
from thincam.stages.nsdd import distill_nsdd
distill_nsdd({[str(p) for p in shards]!r}, r"{psf_path}", {OPERATOR!r}, r"{prior_path}", r"OUT", {cfg!r},
             seed=5, checkpoint_path=r"{checkpoint}")
"""
    killed_and_resumed(code, tmp_path / "whole", tmp_path / "cut", checkpoint)
    same_files(tmp_path / "whole", tmp_path / "cut")
    same_files(tmp_path / "whole", tmp_path / "cut", "loss.csv")


def test_corrupted_shard_is_rejected_naming_the_file(tmp_path, physics, psf_path, prior_path):
    import h5py

    from thincam.stages.nsdd import distill_nsdd

    paths = write_shards(tmp_path / "targets", physics, prior_path, [4, 4])
    with h5py.File(paths[1], "r+") as handle:
        handle["target"][0, 0, 0, 0] += 0.5
    with pytest.raises(CorruptFileError, match="shard-0001.h5.*target"):
        distill_nsdd(paths, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), {**CFG, "steps": 3}, seed=0)
    assert not (tmp_path / "out" / "training.json").exists()

    # Targets made with another prior than the one the student starts from are refused too.
    arrays, attrs = read_h5(paths[0], contract="targets")
    atomic_write_h5(paths[1], arrays, {**attrs, "prior_id": "0" * 64}, contract="targets")
    with pytest.raises(CorruptFileError, match="shard-0001.h5.*prior"):
        distill_nsdd(paths, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), {**CFG, "steps": 3}, seed=0)


def test_shards_from_another_operator_are_rejected(tmp_path, physics, psf_path, prior_path):
    from thincam.stages.nsdd import distill_nsdd

    paths = write_shards(tmp_path / "targets", physics, prior_path, [4])
    other = {**OPERATOR, "pinv": {"kind": "tikhonov", "lam": 0.3}}
    with pytest.raises(BadInputError, match="shard-0000.h5.*A\\+y"):
        distill_nsdd(paths, psf_path, other, prior_path, str(tmp_path / "out"), {**CFG, "steps": 2}, seed=0)


def test_lpips_term_is_used_when_weights_exist(tmp_path, shards, psf_path, prior_path):
    """Plumbing only: a random AlexNet trunk stands in for the real weights, so no LPIPS number
    from here means anything; a missing trunk file is an error naming it."""
    import torchvision

    from thincam.models.lpips import ALEXNET_FILE
    from thincam.stages.nsdd import distill_nsdd

    cfg = {**CFG, "steps": 2, "lpips_weight": 0.5, "lpips_weights_dir": str(tmp_path)}
    with pytest.raises(MissingWeightsError, match=ALEXNET_FILE):
        distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), cfg, seed=0)

    (tmp_path / ALEXNET_FILE).parent.mkdir(parents=True)
    trunk = torchvision.models.AlexNet().features.state_dict()
    torch.save({f"features.{k}": v for k, v in trunk.items()}, tmp_path / ALEXNET_FILE)
    distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), cfg, seed=0)
    for row in csv.DictReader((tmp_path / "out" / "loss.csv").read_text().splitlines()):
        lp = float(row["perceptual"])
        assert lp > 0 and float(row["loss"]) == pytest.approx(float(row["l2"]) + 0.5 * lp, rel=1e-5)
    assert json.loads((tmp_path / "out" / "training.json").read_text())["loss"] == "l2 + 0.5 * lpips(alex)"


def test_weight_free_term_is_optional_and_off_by_default(tmp_path, shards, psf_path, prior_path):
    """Without LPIPS weights, ``weight_free_weight`` > 0 adds the weight-free term; the default
    (key absent) stays L2 alone, so NSDD's default run does not change."""
    from thincam.models.losses import WEIGHT_FREE_NAME
    from thincam.stages.nsdd import distill_nsdd

    distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "wf"), {**CFG, "steps": 2, "weight_free_weight": 0.2}, seed=0)
    for row in csv.DictReader((tmp_path / "wf" / "loss.csv").read_text().splitlines()):
        perceptual = float(row["perceptual"])
        assert perceptual > 0 and float(row["loss"]) == pytest.approx(float(row["l2"]) + 0.2 * perceptual, rel=1e-5)
    marker = json.loads((tmp_path / "wf" / "training.json").read_text())
    assert marker["loss"] == f"l2 + 0.2 * {WEIGHT_FREE_NAME}" and marker["cfg"]["weight_free_weight"] == 0.2
    distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "l2"), {**CFG, "steps": 2}, seed=0)
    marker = json.loads((tmp_path / "l2" / "training.json").read_text())
    assert marker["loss"] == "l2" and marker["cfg"]["weight_free_weight"] == 0.0


def test_bad_config_names_the_key(tmp_path, shards, psf_path, prior_path):
    from thincam.stages.nsdd import distill_nsdd

    cfg = {k: v for k, v in CFG.items() if k != "t_fixed"}
    with pytest.raises(BadInputError, match="t_fixed"):
        distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), cfg, seed=0)
    with pytest.raises(BadInputError, match="t_fixed"):
        distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), {**CFG, "t_fixed": 1000}, seed=0)


def test_student_refuses_an_operator_it_was_not_distilled_with(tmp_path, shards, psf_path, prior_path):
    """The student stores the camera it learned (PSF checksum, geometry, A+) and names both
    operators when asked to run with another A+."""
    from thincam.solvers.nsdd import make_solver
    from thincam.stages.common import load_operator
    from thincam.stages.nsdd import distill_nsdd

    distill_nsdd(shards, psf_path, OPERATOR, prior_path, str(tmp_path / "out"), {**CFG, "steps": 2}, seed=0)
    context = {"models": {"student": str(tmp_path / "out" / "training.json")}, "device": "cpu"}
    same = load_operator(psf_path, OPERATOR)
    solve = make_solver(same, {}, context)
    y = same.A(torch.from_numpy(faces(2)))
    assert solve(y, np.arange(2)).shape == (2, 3, SIZE, SIZE)
    other = load_operator(psf_path, {**OPERATOR, "pinv": {"kind": "tikhonov", "lam": 0.5, "iters": 50}})
    with pytest.raises(BadInputError, match=r"trained with operator .* but given .*differ in \['pinv'\]"):
        make_solver(other, {}, context)
