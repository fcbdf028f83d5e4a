"""DeepInverse's DPS, DiffPIR and DDRM as thincam methods: the prior as deepinv's denoiser, the
Fourier SVD of the circular operator, the refusals, and seeded, batch-independent runs.

A tiny randomly initialised UNet at 16 px stands in for the prior: the conversions, the
decomposition and the determinism do not depend on the prior being any good.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thincam.errors import BadInputError
from thincam.models.diffusion import prediction_to_x0
from thincam.physics.operators import LenslessConvolution, ProductConvolution
from thincam.physics.svd import FourierSVD

SIZE = 16


def dots_psf(shape=(SIZE, SIZE), seed: int = 0) -> torch.Tensor:
    """Sparse dots blurred by 0.7 px, unit sum: no exact zeros in |H| (smallest about 1e-3 at 16 px)."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    image = np.zeros(shape)
    image[rng.integers(0, shape[0], 8), rng.integers(0, shape[1], 8)] = rng.uniform(0.5, 1.0, 8)
    image = gaussian_filter(image, 0.7, mode="wrap")
    return torch.from_numpy(np.repeat((image / image.sum())[None], 3, 0).astype(np.float32))


def circular(shape=(SIZE, SIZE)) -> LenslessConvolution:
    return LenslessConvolution(dots_psf(shape), boundary="circular", pinv={"kind": "tikhonov", "lam": 1e-2})


def linear() -> LenslessConvolution:
    return LenslessConvolution(
        dots_psf((8, 8)), scene_shape=(SIZE, SIZE), sensor_shape=(SIZE, SIZE), boundary="linear"
    )


def metalens() -> ProductConvolution:
    grid = torch.stack([torch.stack([dots_psf((5, 5), seed=3 * i + j) for j in range(2)]) for i in range(2)])
    return ProductConvolution(grid, image_shape=(SIZE, SIZE))


@pytest.fixture(scope="module")
def prior():
    """A random UNet of a small layout and a 1000-step linear DDPM scheduler."""
    from diffusers import DDPMScheduler

    from thincam.models.prior import DEFAULT_PRIOR_CFG, build_unet

    torch.manual_seed(0)
    cfg = dict(DEFAULT_PRIOR_CFG, block_out_channels=[16, 32])
    unet = build_unet((3, SIZE, SIZE), cfg).eval().requires_grad_(False)
    return unet, DDPMScheduler(num_train_timesteps=1000)


@pytest.fixture(scope="module")
def denoiser(prior):
    from thincam.solvers.deepinv_prior import PriorDenoiser

    return PriorDenoiser(*prior)


@pytest.fixture(scope="module")
def prior_dir(prior, tmp_path_factory):
    path = tmp_path_factory.mktemp("prior")
    prior[0].save_pretrained(path / "unet")
    prior[1].save_pretrained(path / "scheduler")
    return path


def scenes(n: int = 2) -> torch.Tensor:
    """Smooth scenes in [0.1, 0.9]."""
    from scipy.ndimage import gaussian_filter

    noise = np.random.default_rng(1).standard_normal((n, 3, SIZE, SIZE))
    smooth = gaussian_filter(noise, (0, 0, 2, 2), mode="wrap")
    return torch.from_numpy((0.5 + 0.4 * smooth / np.abs(smooth).max()).astype(np.float32))


# --- the prior as deepinv's denoiser ------------------------------------------------------------


def test_denoiser_is_the_identity_at_zero_noise(denoiser):
    u = scenes()
    with torch.no_grad():
        assert torch.allclose(denoiser(u, 0.0), u, atol=1e-6)  # up to (2u - 1 + 1) / 2 rounding
        # D(u, sigma) = u - sigma eps: within sigma * |eps| (eps of a random UNet is O(1))
        assert (denoiser(u, 1e-4) - u).abs().max() < 1e-3
        assert (denoiser(u, 0.3) - u).abs().max() > 1e-2


def test_denoiser_at_a_prior_timestep_is_thincams_x0(prior, denoiser):
    """At the noise level of timestep t, D(u, sigma_t) is the x0|t thincam's DPS and DDNM+ compute
    from x_t = sqrt(abar_t) (2u - 1), mapped to [0, 1]."""
    unet, scheduler = prior
    u = scenes()
    for t in (0, 137, 500, 999):
        abar = float(scheduler.alphas_cumprod[t])
        sigma = ((1 - abar) / abar) ** 0.5 / 2  # the [-1, 1] noise-to-signal ratio, halved
        x_t = abar**0.5 * (2 * u - 1)
        with torch.no_grad():
            eps = unet(x_t, torch.full((len(u),), t)).sample
            expected = (prediction_to_x0(x_t, eps, abar) + 1) / 2
            assert denoiser.timesteps(torch.full((len(u),), sigma)).tolist() == [t] * len(u)
            assert torch.allclose(denoiser(u, sigma), expected, atol=1e-5)
            # one sigma per image works too
            per_image = denoiser(u, torch.full((len(u),), sigma))
            assert torch.allclose(per_image, expected, atol=1e-5)


def test_denoiser_timesteps_span_the_schedule(denoiser):
    sigma = torch.tensor([0.0, 1e-3, 0.05, 0.5, 5.0, 1e4])
    steps = denoiser.timesteps(sigma).tolist()
    assert steps[0] == 0 and steps[-1] == 999 and steps == sorted(steps)


# --- the Fourier SVD ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(SIZE, SIZE), (15, 17)])
def test_fourier_svd_is_the_operator(shape):
    """U diag(s) V^T = A and V diag(s) U^T = A^T on random inputs (odd sizes too); the singular
    values are |H| and real; V^T is an isometry's left inverse (V V^T = I)."""
    physics = circular(shape)
    svd = FourierSVD.of(physics, noise_sigma=0.01)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((2, 3, *shape), generator=generator)
    y = torch.randn((2, 3, *shape), generator=generator)
    def largest(t):
        return float(t.abs().max())

    assert largest(svd.A(x) - physics.A(x)) < 1e-6 * largest(physics.A(x))
    assert largest(svd.A_adjoint(y) - physics.A_adjoint(y)) < 1e-6 * largest(physics.A_adjoint(y))
    assert torch.allclose(svd.V(svd.V_adjoint(x)), x, atol=1e-5)
    assert not svd.mask.is_complex() and (svd.mask >= 0).all()
    assert torch.allclose(svd.mask[0, ..., 0], physics.singular_values())
    assert float(svd.noise_model.sigma) == pytest.approx(0.01)
    # deepinv's closed-form prox through the SVD solves (gamma A^T A + I) x = gamma A^T y + z
    gamma = 3.0
    prox = svd.prox_l2(x, y, gamma)
    normal = gamma * physics.A_adjoint(physics.A(prox)) + prox
    assert torch.allclose(normal, gamma * physics.A_adjoint(y) + x, atol=1e-4)


@pytest.mark.parametrize("physics, named", [(linear, "lensless operator (linear boundary)"), (metalens, "metalens operator (zero boundary)")])
def test_fourier_svd_refuses_other_operators(physics, named):
    with pytest.raises(ValueError) as err:
        FourierSVD.of(physics())
    assert f"the {named} has no singular value decomposition" in str(err.value)


@pytest.mark.parametrize("physics, named", [(linear, "lensless operator (linear boundary)"), (metalens, "metalens operator (zero boundary)")])
def test_ddrm_refuses_an_operator_without_svd_before_any_work(physics, named, tmp_path):
    """make_solver names the method, the operator and the missing property, before it loads the
    prior (which does not exist here: loading it would raise MissingWeightsError instead)."""
    from thincam.solvers import ddrm

    context = {"dataset": "d", "seed": 0, "device": "cpu", "models": {"prior": str(tmp_path / "none")}}
    with pytest.raises(BadInputError) as err:
        ddrm.make_solver(physics(), {"steps": 4, "sigma_y": 0.01}, context)
    message = str(err.value)
    assert "method 'ddrm'" in message and named in message and "singular value decomposition" in message


def test_unknown_parameter_is_named(prior_dir):
    from thincam.solvers import diffpir

    context = {"dataset": "d", "seed": 0, "device": "cpu", "models": {"prior": str(prior_dir)}}
    with pytest.raises(BadInputError, match=r"'diffpir' does not take parameter\(s\) \['lam'\]"):
        diffpir.make_solver(circular(), {"steps": 4, "sigma_y": 0.01, "lam": 7.0}, context)


# --- the three samplers -------------------------------------------------------------------------

RUNS = {
    "deepinv_dps": {"steps": 4, "weight": 1.0},
    "diffpir": {"steps": 4, "sigma_y": 0.01},
    "ddrm": {"steps": 4, "sigma_y": 0.01},
}
OPERATORS = {"circular": circular, "linear": linear, "metalens": metalens}


@pytest.mark.parametrize(
    "method, operator",
    [(m, o) for m in RUNS for o in OPERATORS if m != "ddrm" or o == "circular"],
)
def test_solver_runs_seeded_and_batch_independent(method, operator, prior_dir):
    """Through make_solver, as the reconstruct stage calls it: the shape, values in [0, 1], the
    same bits for the same seed, an image's result independent of its batch, a new seed differs."""
    import importlib

    physics = OPERATORS[operator]()
    module = importlib.import_module(f"thincam.solvers.{method}")
    context = {"dataset": "faces", "seed": 0, "device": "cpu", "models": {"prior": str(prior_dir)}}
    solve = module.make_solver(physics, dict(RUNS[method]), context)
    y = physics.A(scenes(3))
    index = np.array([4, 7, 9])
    xhat = solve(y, index)
    assert xhat.shape == (3, 3, SIZE, SIZE) and xhat.dtype == torch.float32
    assert torch.isfinite(xhat).all() and xhat.min() >= 0 and xhat.max() <= 1
    assert torch.equal(solve(y, index), xhat)
    assert torch.equal(solve(y[1:2], index[1:2]), xhat[1:2])
    reseeded = module.make_solver(physics, dict(RUNS[method]), {**context, "seed": 1})
    assert not torch.equal(reseeded(y, index), xhat)


def test_noiseless_ddrm_inverts_the_operator(denoiser):
    """With sigma_y = 0 every frequency counts as measured, DDRM's last step puts the measured
    coefficients U^T y / s in place and D(., 0) is the identity: xhat = A^-1 y = x. A wrong phase
    in U, or U and V swapped, would break this."""
    from thincam.solvers.ddrm import ddrm

    physics = circular()
    x = scenes()
    xhat = ddrm(physics, physics.A(x), denoiser, [1, 2], steps=4, sigma_y=0.0)
    assert torch.allclose(xhat, x, atol=1e-3)


def test_dps_guidance_pulls_towards_the_measurement(denoiser):
    """Same seeds, same UNet: deepinv's DPS guidance alone must lower the residual ||A xhat - y||."""
    from thincam.solvers.deepinv_dps import deepinv_dps

    physics = circular()
    y = physics.A(scenes())

    def residual(weight):
        xhat = deepinv_dps(physics, y, denoiser, [1, 2], steps=8, weight=weight)
        return float(torch.linalg.vector_norm(physics.A(xhat) - y) / torch.linalg.vector_norm(y))

    assert residual(3.0) < 0.8 * residual(0.0)


def test_diffpir_data_step_pulls_towards_the_measurement(denoiser):
    """A larger lambda_ weakens DiffPIR's proximal data step, so the residual grows with it."""
    from thincam.solvers.diffpir import diffpir

    physics = circular()
    y = physics.A(scenes())

    def residual(lambda_):
        xhat = diffpir(physics, y, denoiser, [1, 2], steps=6, sigma_y=0.01, lambda_=lambda_)
        return float(torch.linalg.vector_norm(physics.A(xhat) - y) / torch.linalg.vector_norm(y))

    assert residual(1.0) < 0.7 * residual(1e5)
