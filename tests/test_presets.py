"""The paper-scale presets on miniature replicas of their data and weights (tests/make_replicas.py).

Dry runs use each preset unchanged; the slow runs scale it down with tests/preset_overrides/.
The ADM loader and the 256 px code path are tested here too; the release readers in test_releases.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from make_replicas import make_replicas, write_adm_checkpoints
from thincam.errors import BadInputError, MissingWeightsError
from workflow_helpers import REPO, planned_jobs, preset, preset_on_replica, run_snakemake, scaled_preset

PRESETS = sorted(p.stem for p in (REPO / "presets").glob("*.yaml"))


@pytest.fixture(scope="module")
def replica(tmp_path_factory) -> Path:
    return make_replicas(tmp_path_factory.mktemp("replica"))


def workdir_on(replica: Path, workdir: Path) -> Path:
    """A fresh project directory whose data/ and weights/ are the replica's."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("data", "weights"):
        (workdir / name).symlink_to(replica / name)
    return workdir


def _splits(method: str, variants: dict) -> int:
    """Test, and val too where a table chooses among several variants."""
    from thincam.registry import METHODS

    return 2 if len(variants) > 1 and not METHODS[method].every_variant_reported else 1


def n_reconstructions(config: dict) -> int:
    """Reconstructions (rows of metrics.csv): every variant on each of its method's splits."""
    return sum(
        len(variants) * _splits(method, variants)
        for dataset in config["datasets"].values()
        for method, variants in dataset.get("methods", {}).items()
    )


def n_reconstruct_jobs(config: dict) -> int:
    """Reconstruct jobs: one per method and split, running all its variants."""
    return sum(
        _splits(method, variants)
        for dataset in config["datasets"].values()
        for method, variants in dataset.get("methods", {}).items()
    )


def test_presets_are_complete_and_cover_the_papers():
    assert PRESETS == ["diffusercam_mirflickr", "dmdiff_metalens", "nsdd_lensless_ffhq", "nsdd_phlatcam"]
    ffhq = preset("nsdd_lensless_ffhq")["datasets"]["ffhq_lensless"]
    assert ffhq["image_size"] == [256, 256] and ffhq["methods"]["ddnm"]["s100"]["steps"] == 100
    assert {"wiener", "admm", "dps", "ddnm", "nsdd", "nsdd_full"} <= set(ffhq["methods"])
    dmdiff = preset("dmdiff_metalens")["datasets"]["metalens_pairs"]["dmdiff"]
    assert (dmdiff["train"]["rank_vae"], dmdiff["train"]["rank_unet"], dmdiff["train"]["map_size"]) == (16, 32, 7)
    assert dmdiff["train"]["lpips_weight"] == 2.5
    for name in PRESETS:
        header = (REPO / "presets" / f"{name}.yaml").read_text().split("\nseed:")[0]
        assert "Data" in header and "Weights" in header and "GPU hours" in header


@pytest.mark.workflow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_dry_run(replica, tmp_path, name):
    config = preset_on_replica(name)
    result = run_snakemake(workdir_on(replica, tmp_path / name), config, "-n", timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    jobs = planned_jobs(result)
    assert jobs["reconstruct"] == n_reconstruct_jobs(config)
    for dataset in config["datasets"].values():
        if "nsdd" in dataset:
            assert jobs["ddnm_targets"] == dataset["nsdd"]["n_shards"] and jobs["distill_nsdd"] == 2
        if "prior" in dataset:
            assert jobs["register_adm_prior"] == 1 and "train_prior" not in jobs
        if "dmdiff" in dataset:
            assert jobs["train_dmdiff"] == len(dataset["dmdiff"]["models"]) + 1
            assert "pretrain_dmdiff_base" not in jobs  # the local SD-Turbo folder is the base


@pytest.mark.slow
@pytest.mark.workflow
@pytest.mark.parametrize("name", PRESETS)
def test_preset_scaled_run(replica, tmp_path, name):
    import pandas as pd

    config = scaled_preset(name)
    workdir = workdir_on(replica, tmp_path / name)
    result = run_snakemake(workdir, config, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    metrics = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert len(metrics) == n_reconstructions(config)
    assert np.isfinite(metrics.psnr).all() and (metrics.latency_s > 0).all()
    for kind, dataset in config["tables"].items():
        if dataset is not None:
            assert (workdir / f"results/tables/{kind}.csv").stat().st_size > 0
    for prior in config.get("priors", {}):
        assert (workdir / f"results/prior/{prior}/adm.json").is_file()


def test_adm_checkpoint_errors_name_file_and_key(tmp_path):
    from thincam.models.adm import load_adm_checkpoint

    files = write_adm_checkpoints(tmp_path)
    state = torch.load(files["ffhq"], weights_only=True)
    first = next(iter(state))
    del state[first]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(MissingWeightsError, match=rf"partial\.pt: key '{first}'.*missing"):
        load_adm_checkpoint(tmp_path / "partial.pt", "ffhq_256")
    with pytest.raises(BadInputError, match=r"ffhq_10m\.pt: key 'time_embed\.0\.weight' has shape \(512, 128\)"):
        load_adm_checkpoint(files["ffhq"], "imagenet_256_uncond")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(BadInputError, match=r"text\.pt: not a readable torch state dict"):
        load_adm_checkpoint(tmp_path / "text.pt", "ffhq_256")


def test_registered_adm_prior_behaves_like_the_diffusers_prior(tmp_path):
    from thincam.models.adm import ADMUNet
    from thincam.models.prior import load_prior, prior_id, register_adm_prior
    from thincam.solvers.sampling import predict_eps

    files = write_adm_checkpoints(tmp_path)
    register_adm_prior(files["ffhq"], "ffhq_256", tmp_path / "prior")
    unet, scheduler = load_prior(tmp_path / "prior")
    assert isinstance(unet, ADMUNet) and not any(p.requires_grad for p in unet.parameters())
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.beta_schedule == "linear"
    assert scheduler.betas[0].item() == pytest.approx(1e-4) and scheduler.betas[-1].item() == pytest.approx(0.02)
    x = torch.randn(2, 3, 32, 32)
    eps = predict_eps(unet, x, 500)
    full = unet.net(x, torch.full((2,), 500), type_t="timestep")
    assert full.shape[1] == 6 and torch.equal(eps, full[:, :3])  # learned sigma: the first 3 are epsilon
    assert prior_id(tmp_path / "prior") == __import__("hashlib").sha256(files["ffhq"].read_bytes()).hexdigest()


@pytest.mark.slow
def test_256px_ddnm_steps_and_nsdd_forward_with_the_adm_architecture():
    """The paper-scale code path on the CPU: FFHQ ADM (93.6 M parameters, random) at 256 px."""
    from thincam.models.adm import ADMUNet, adm_scheduler
    from thincam.models.nsdd import build_student
    from thincam.physics.operators import LenslessConvolution
    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.sampling import initial_noise

    torch.manual_seed(0)
    psf = torch.zeros(3, 256, 256)
    psf[:, torch.randint(256, (6,)), torch.randint(256, (6,))] = 1.0  # sparse dots: well conditioned
    psf /= psf.sum(dim=(-2, -1), keepdim=True)
    physics = LenslessConvolution(psf, boundary="circular", pinv={"kind": "tsvd", "threshold": 1e-3})
    x = torch.rand(1, 3, 256, 256)
    y = physics.A(x) + 0.01 * torch.randn(1, 3, 256, 256)
    unet, scheduler = ADMUNet("ffhq_256").eval().requires_grad_(False), adm_scheduler()
    xhat = ddnm_plus(
        physics, y, unet, scheduler, steps=2, eta=0.85, sigma_y=0.01, form="svd", x_T=initial_noise(x.shape, [0])
    )
    assert xhat.shape == x.shape and torch.isfinite(xhat).all()
    student = build_student(unet, scheduler, {"t_fixed": 100, "adapter_channels": 16, "mode": "null"}).eval()
    with torch.no_grad():
        anchor = physics.A_dagger(y)
        out = student(y, physics, anchor)
        # The null-space student keeps the anchor's range content: A xhat = A A+ y.
        assert out.shape == x.shape and torch.isfinite(out).all()
        assert torch.allclose(physics.A(out), physics.A(anchor), atol=1e-3)
