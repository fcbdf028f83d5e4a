"""Classic baselines: Wiener (lensless + metalens) and ADMM-TV, with known answers."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from thincam.physics.operators import LenslessConvolution, ProductConvolution
from thincam.solvers.admm import admm_tv, scaled_tutorial_params
from thincam.solvers.wiener import wiener

ROOT = Path(__file__).resolve().parents[1]
# Tuned on the faces_dots val split (32x32, sigma 0.01): 33.6 dB circular, 29.6 dB linear.
ADMM_DOTS = {"mu1": 0.01, "mu2": 0.01, "mu3": 0.01, "tau": 1e-3}
TUTORIAL = {"mu1": 1e-6, "mu2": 1e-5, "mu3": 4e-5, "tau": 1e-4}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: a second OpenMP thread only adds synchronisation, and on a
    shared, oversubscribed machine it made 200 iterations at 32x32 take 4-8 s instead of 0.1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _images(size=32, n=2):
    """Real photographs in [0, 1], [n,1,size,size]: camera man and the astronaut's luminance."""
    from skimage.color import rgb2gray
    from skimage.data import astronaut, camera
    from skimage.transform import resize

    imgs = [camera() / 255.0, rgb2gray(astronaut())]
    x = np.stack([resize(i, (size, size), anti_aliasing=True) for i in imgs[:n]])
    return torch.from_numpy(x[:, None].astype(np.float32))


def _dots_psf(size=32, n_dots=12, blur=0.7, seed=1):
    """Sparse random dots blurred by a Gaussian, unit sum: well conditioned at 32x32."""
    rng = np.random.default_rng(seed)
    dots = np.zeros(size * size)
    dots[rng.choice(size * size, n_dots, replace=False)] = rng.uniform(0.5, 1.0, n_dots)
    psf = gaussian_filter(dots.reshape(size, size), blur, mode="constant")
    return torch.from_numpy((psf / psf.sum())[None].astype(np.float32))


def _noisy(physics, x, sigma=0.01, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = physics.A(x)
    return y + sigma * torch.randn(y.shape, generator=g)


def _psnr(xhat, x):
    mse = ((xhat.clamp(0, 1) - x) ** 2).mean()
    return float(10 * torch.log10(1.0 / mse))


def _best_scaled(z, x):
    """z rescaled by the least-squares gain onto x: the fairest reading of an unnormalised A^T y."""
    return z * (z * x).sum() / (z * z).sum()


def _tv_objective(physics, x, y, tau):
    residual = physics.A(x) - y
    tv = (x - torch.roll(x, 1, -2)).abs().sum() + (x - torch.roll(x, 1, -1)).abs().sum()
    return float(0.5 * (residual**2).sum() + tau * tv)


# ---------------------------------------------------------------- Wiener


def _delta_plus_gaussian(n, sigma=1.5):
    """0.5 delta + 0.5 Gaussian, both centred: H = phase * (0.5 + 0.5 G), G > 0, so |H| >= 0.5."""
    r = torch.arange(n) - n // 2
    gauss = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    delta = torch.zeros(n, n)
    delta[n // 2, n // 2] = 1.0
    return (0.5 * gauss / gauss.sum() + 0.5 * delta)[None]


def test_wiener_circular_recovers_scene_exactly():
    physics = LenslessConvolution(_delta_plus_gaussian(32), boundary="circular")
    assert float(physics.H.abs().min()) > 0.49
    x = _images(32)
    xhat = wiener(physics, physics.A(x), K=1e-9)
    assert _psnr(xhat, x) > 70.0


def test_wiener_linear_recovers_scene_from_uncropped_sensor():
    """Sensor = the whole linear convolution (16 + 17 - 1 = 32): nothing lost, Wiener is exact."""
    psf = _delta_plus_gaussian(17)
    physics = LenslessConvolution(psf, scene_shape=(16, 16), sensor_shape=(32, 32))
    assert physics.geometry.full == (32, 32) and float(physics.H.abs().min()) > 0.49
    x = _images(16)
    xhat = wiener(physics, physics.A(x), K=1e-9)
    assert _psnr(xhat, x) > 70.0


def test_wiener_linear_places_the_sensor_window():
    """A centred delta PSF with the linear model is the identity: Wiener must give x back."""
    psf = torch.zeros(1, 32, 32)
    psf[0, 16, 16] = 1.0
    physics = LenslessConvolution(psf, boundary="linear")
    x = _images(32)
    y = physics.A(x)
    assert torch.allclose(y, x, atol=1e-5)
    assert torch.allclose(wiener(physics, y, K=1e-6), x, atol=1e-4)


def _metalens_grid(channels=1, size=9):
    """2x2 grid of Gaussian blurs of growing width: a lens sharp on axis, softer off axis."""
    r = torch.arange(size) - size // 2
    grid = []
    for sigma in (0.8, 1.1, 1.4, 1.8):
        k = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
        grid.append((k / k.sum()).expand(channels, -1, -1))
    return torch.stack(grid).reshape(2, 2, channels, size, size)


def test_wiener_metalens_reduces_error():
    """Better than the blurred capture everywhere, clearly so away from the borders (the
    zero-filled unmeasured border of the convolution makes Wiener ring at the image edges)."""
    physics = ProductConvolution(_metalens_grid(), (32, 32))
    x = _images(32)
    y = _noisy(physics, x, sigma=0.002)
    xhat = wiener(physics, y, K=1e-2)
    inner = (..., slice(6, -6), slice(6, -6))
    assert _psnr(xhat, x) > _psnr(y, x) + 1.0
    assert _psnr(xhat[inner], x[inner]) > _psnr(y[inner], x[inner]) + 3.0


def test_wiener_metalens_blend_is_exact_for_one_psf():
    """With every grid PSF equal the partition-of-unity blend must equal the lensless Wiener."""
    grid = _metalens_grid()[:1, :1].expand(2, 3, -1, -1, -1)
    metalens = ProductConvolution(grid, (32, 32))
    lensless = LenslessConvolution(grid[0, 0], scene_shape=(32, 32), sensor_shape=(32, 32))
    y = _noisy(lensless, _images(32))
    assert torch.allclose(wiener(metalens, y, 1e-3), wiener(lensless, y, 1e-3), atol=1e-5)


# ---------------------------------------------------------------- ADMM


@pytest.fixture(scope="module")
def dots_problem():
    physics = LenslessConvolution(_dots_psf(), boundary="linear")
    x = _images(32)
    return physics, x, _noisy(physics, x)


def test_admm_improves_on_adjoint_and_wiener(dots_problem):
    physics, x, y = dots_problem
    xhat = admm_tv(physics, y, n_iter=100, **ADMM_DOTS)
    psnr = _psnr(xhat, x)  # measured 20.8 dB; adjoint 11.0, Wiener 10.4 (the crop defeats it)
    assert psnr > _psnr(_best_scaled(physics.A_adjoint(y), x), x) + 8.0
    assert psnr > _psnr(wiener(physics, y, K=1e-2), x) + 8.0
    assert psnr > 19.0


def test_admm_decreases_objective(dots_problem):
    physics, x, y = dots_problem
    tau = ADMM_DOTS["tau"]
    objective = [
        _tv_objective(physics, admm_tv(physics, y, n_iter=n, **ADMM_DOTS), y, tau) for n in (5, 100)
    ]
    baseline = _tv_objective(physics, _best_scaled(physics.A_adjoint(y), x), y, tau)
    assert objective[1] < objective[0] < _tv_objective(physics, torch.zeros_like(x), y, tau)
    assert objective[1] < 0.2 * baseline  # measured 0.32 vs 3.18


@pytest.mark.parametrize("boundary", ["linear", "circular"])
def test_admm_without_tv_fits_noiseless_data(boundary):
    """tau = 0 on y = A x: least squares + positivity, so A xhat must reproduce y. Without the
    support constraint the linear model puts part of the fit outside the scene window (a null
    space of the crop), which the returned window cannot show (measured 0.13 vs 0.009)."""
    physics = LenslessConvolution(_dots_psf(), boundary=boundary)
    x = _images(32)
    y = physics.A(x)

    def consistency(support):
        xhat = admm_tv(physics, y, **{**ADMM_DOTS, "tau": 0.0}, n_iter=200, support=support)
        return float(torch.linalg.vector_norm(physics.A(xhat) - y) / torch.linalg.vector_norm(y))

    assert consistency(True) < 0.015
    if boundary == "linear":
        assert consistency(False) > 5 * consistency(True)


def test_admm_nonnegativity_and_dtype(dots_problem):
    physics, _, y = dots_problem
    for y_in in (y, y.double()):
        xhat = admm_tv(physics, y_in, n_iter=20, **ADMM_DOTS)
        assert xhat.dtype == torch.float32 and xhat.shape == (2, 1, 32, 32)
        assert float(xhat.min()) >= 0.0
    free = admm_tv(physics, y, n_iter=20, nonneg=False, **ADMM_DOTS)
    assert float(free.min()) < 0.0  # the constraint is what keeps the estimate non-negative
    assert wiener(physics, y.double(), 1e-2).dtype == torch.float32


def test_admm_deterministic_and_batch_independent(dots_problem):
    physics, _, y = dots_problem
    first = admm_tv(physics, y, n_iter=30, **ADMM_DOTS)
    assert torch.equal(first, admm_tv(physics, y, n_iter=30, **ADMM_DOTS))
    single = admm_tv(physics, y[1:], n_iter=30, **ADMM_DOTS)
    assert torch.allclose(single, first[1:], atol=1e-6)


def test_admm_matches_numpy_transcription():
    """Our fused torch updates against the plain NumPy transcription in the benchmark script,
    on a geometry with scene, PSF and sensor all of different sizes."""
    script = ROOT / "bench" / "admm_vs_lensless.py"
    spec = importlib.util.spec_from_file_location("bench_admm", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = torch.Generator().manual_seed(3)
    psf = torch.rand(1, 16, 12, generator=g) ** 6
    psf = psf / psf.sum()
    physics = LenslessConvolution(psf, scene_shape=(24, 20), sensor_shape=(20, 18))
    x = torch.rand(1, 1, 24, 20, generator=g)
    y = physics.A(x) + 0.01 * torch.randn(1, 1, 20, 18, generator=g)
    params = {"mu1": 0.05, "mu2": 0.02, "mu3": 0.03, "tau": 2e-3, "n_iter": 60}
    ours = admm_tv(physics, y, **params)[0].numpy()
    reference = bench.numpy_admm(psf.numpy(), y[0].numpy(), scene_shape=(24, 20), **params)
    assert np.abs(ours - reference).max() < 1e-4 * np.abs(reference).max()


def test_scaled_tutorial_params_give_the_same_iterates():
    """Unit-L2 PSF and y with the tutorial's parameters vs unit-sum PSF and max-normalised y
    with the rescaled ones: the same estimate up to the factor c * d."""
    raw_psf = _dots_psf(blur=1.5)[0].double()
    physics_raw = LenslessConvolution(raw_psf[None])
    y_raw = _noisy(physics_raw, _images(32, n=1))[0, 0].double().clamp_min(0)
    psf_l2, y_l2 = raw_psf / raw_psf.norm(), y_raw / y_raw.norm()
    psf_unit, y_unit = raw_psf / raw_psf.sum(), y_raw / y_raw.max()
    physics_l2, physics_unit = (LenslessConvolution(p[None].float()) for p in (psf_l2, psf_unit))
    tutorial = admm_tv(physics_l2, y_l2[None, None], n_iter=50, **TUTORIAL)
    params = scaled_tutorial_params(psf_unit, y_unit, **TUTORIAL)
    ours = admm_tv(physics_unit, y_unit[None, None], n_iter=50, **params)
    c_d = float(raw_psf.sum() / raw_psf.norm() * y_unit.norm())
    assert torch.allclose(ours, c_d * tutorial, rtol=1e-3, atol=1e-4 * float(ours.max()))


def test_admm_reconstructs_real_diffusercam_hand():
    """The committed DiffuserCam capture (2x further downsampled), tutorial parameters rescaled:
    the estimate explains the capture and its light sits where the hand is (rows 60-230,
    columns 140-370 of the 300x400 frame, read off a 300-iteration reconstruction). A wrong
    scene window (e.g. the tutorial's centre crop of v) would move the hand out of the box."""
    from thincam.data.ingest import prepare_capture
    from thincam.data.images import area_downsample
    from thincam.optics.capture import calibrate_capture_psf

    data = ROOT / "tests" / "data" / "diffusercam"
    psf, _ = calibrate_capture_psf(data / "psf_ds4.tif", background="corner")
    y = prepare_capture(
        data / "hand_ds4.tif", bit_depth=None, background="corner", downsample=1,
        sensor_shape=(300, 400), channels=1,
    ).y
    psf, y = area_downsample(psf, 2), area_downsample(y, 2)
    psf_t, y_t = torch.from_numpy(psf / psf.sum()), torch.from_numpy(y / y.max())[None]
    physics = LenslessConvolution(psf_t)
    xhat = admm_tv(physics, y_t, n_iter=150, **scaled_tutorial_params(psf_t, y_t, **TUTORIAL))
    consistency = float(torch.linalg.vector_norm(physics.A(xhat) - y_t) / y_t.norm())
    assert consistency < 0.05  # measured 0.029
    energy = xhat[0, 0] ** 2
    inside = float(energy[30:115, 70:185].sum() / energy.sum())
    assert inside > 0.9  # measured 0.998; the box is 33% of the frame
