"""Operators: adjointness, A+ quality (range-null residual), noise model, operator building."""

import numpy as np
import pytest
import torch

from thincam.physics.noise import effective_sigma, sensor_noise
from thincam.physics.operators import (
    LenslessConvolution,
    ProductConvolution,
    partition_of_unity,
    range_null_residual,
)

# Bounds the tests enforce on ||A A+ A x - A x|| / ||A x|| (measured values in comments, float64).
RANGE_NULL_BOUND = {"circular": 0.05, "linear": 0.06, "metalens": 0.05}


def _psf(channels, h, w, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    psf = torch.rand(channels, h, w, generator=g, dtype=dtype) ** 4
    return psf / psf.sum(dim=(-2, -1), keepdim=True)


def _image(shape, seed=1, dtype=torch.float64):
    from skimage.data import astronaut
    from skimage.transform import resize

    img = resize(astronaut() / 255.0, shape[-2:], anti_aliasing=True)
    x = torch.from_numpy(np.moveaxis(img, -1, 0)).to(dtype)[None]
    return x.expand(shape[0], -1, -1, -1).contiguous()


def _adjoint_error(op, x_shape, y_shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(x_shape, generator=g, dtype=torch.float64)
    y = torch.rand(y_shape, generator=g, dtype=torch.float64)
    lhs = (op.A(x) * y).sum()
    rhs = (x * op.A_adjoint(y)).sum()
    return float(abs(lhs - rhs) / abs(lhs))


@pytest.mark.parametrize("scene,sensor", [((24, 30), (32, 40)), ((32, 40), (32, 40)), ((40, 48), (24, 30))])
def test_lensless_linear_adjoint(scene, sensor):
    op = LenslessConvolution(_psf(3, 32, 40), scene_shape=scene, sensor_shape=sensor)
    assert _adjoint_error(op, (2, 3, *scene), (2, 3, *sensor)) < 1e-5


def test_lensless_circular_adjoint():
    op = LenslessConvolution(_psf(3, 32, 32), boundary="circular")
    assert _adjoint_error(op, (2, 3, 32, 32), (2, 3, 32, 32)) < 1e-5


def test_metalens_adjoint_and_partition_of_unity():
    windows = partition_of_unity((30, 36), (3, 4))
    assert torch.allclose(windows.sum(0), torch.ones(30, 36))
    assert (windows >= 0).all()
    grid = torch.stack([torch.stack([_psf(3, 9, 9, seed=3 * i + j) for j in range(4)]) for i in range(3)])
    op = ProductConvolution(grid, (30, 36))
    assert _adjoint_error(op, (2, 3, 30, 36), (2, 3, 30, 36)) < 1e-5


def test_delta_psf_is_identity():
    """Known answer: a centred delta PSF images the scene unchanged (linear and circular)."""
    psf = torch.zeros(1, 17, 17, dtype=torch.float64)
    psf[0, 8, 8] = 1
    x = _image((1, 3, 17, 17))
    assert torch.allclose(LenslessConvolution(psf).A(x), x, atol=1e-12)
    assert torch.allclose(LenslessConvolution(psf, boundary="circular").A(x), x, atol=1e-12)
    grid = psf[None, None].expand(2, 2, 1, 17, 17)
    assert torch.allclose(ProductConvolution(grid, (17, 17)).A(x), x, atol=1e-12)


def test_linear_matches_scipy_convolution():
    """Known answer: A equals scipy's full convolution cropped at the documented offset."""
    from scipy.signal import fftconvolve

    psf = _psf(1, 12, 10)
    x = _image((1, 3, 16, 14))
    op = LenslessConvolution(psf, scene_shape=(16, 14), sensor_shape=(12, 10))
    full = fftconvolve(x[0].numpy(), psf.numpy(), axes=(-2, -1))
    r0, c0 = op.geometry.offset
    assert np.allclose(op.A(x)[0].numpy(), full[:, r0 : r0 + 12, c0 : c0 + 10], atol=1e-12)


def _sparse_dots(size=32, n=12, seed=0):
    g = np.random.default_rng(seed)
    psf = np.zeros((size, size))
    psf[g.integers(0, size, n), g.integers(0, size, n)] = g.uniform(0.5, 1, n)
    from scipy.ndimage import gaussian_filter

    psf = gaussian_filter(psf, 0.7, mode="wrap")
    return torch.from_numpy(psf / psf.sum())[None].expand(3, -1, -1).contiguous()


def test_range_null_residual_measured():
    """||A A+ A x - A x|| / ||A x|| for each operator at the default lam, with enforced bounds."""
    x = _image((2, 3, 32, 32))
    circular = LenslessConvolution(_sparse_dots(), boundary="circular", pinv_lam=1e-2)
    linear = LenslessConvolution(_psf(3, 32, 32), scene_shape=(32, 32), pinv_lam=1e-2, pinv_iters=50)
    grid = torch.stack([torch.stack([_psf(3, 7, 7, seed=3 * i + j) for j in range(3)]) for i in range(3)])
    metalens = ProductConvolution(grid, (32, 32), pinv_lam=1e-2, pinv_iters=50)
    measured = {
        "circular": range_null_residual(circular, x),
        "linear": range_null_residual(linear, x),
        "metalens": range_null_residual(metalens, x),
    }
    print("range-null residuals:", measured)
    for name, value in measured.items():
        assert value < RANGE_NULL_BOUND[name], (name, value)
    # A+ is a *regularised* inverse: a smaller lam must shrink the residual.
    circular.pinv_lam = 1e-4
    assert range_null_residual(circular, x) < measured["circular"] / 5


def test_null_projection_is_invisible():
    """A (I - A+A) r ~ 0 up to the Tikhonov residual; exact for circular with lam -> 0."""
    op = LenslessConvolution(_sparse_dots(), boundary="circular", pinv_lam=1e-10)
    r = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.linalg.vector_norm(op.A(op.null_project(r))) < 1e-6 * torch.linalg.vector_norm(op.A(r))


def test_bad_geometry_and_boundary():
    with pytest.raises(ValueError, match="circular boundary needs"):
        LenslessConvolution(_psf(1, 8, 8), scene_shape=(6, 6), boundary="circular")
    with pytest.raises(ValueError, match="boundary must be"):
        LenslessConvolution(_psf(1, 8, 8), boundary="reflect")
    with pytest.raises(ValueError, match="does not fit"):
        LenslessConvolution(_psf(1, 4, 4), scene_shape=(4, 4), sensor_shape=(20, 20))


def test_sensor_noise_statistics_and_quantisation():
    y = torch.full((1, 3, 64, 64), 0.5)
    noisy = sensor_noise(y, poisson_gain=0.0, gaussian_sigma=0.02, bit_depth=8, generator=torch.Generator().manual_seed(0))
    levels = noisy * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    assert abs(float((noisy - y).std()) - 0.02) < 0.002
    shot = sensor_noise(y, poisson_gain=0.01, gaussian_sigma=0.0, bit_depth=16, generator=torch.Generator().manual_seed(0))
    assert abs(float((shot - y).std()) - (0.01 * 0.5) ** 0.5) < 0.005
    sigma = effective_sigma(poisson_gain=0.01, gaussian_sigma=0.0, bit_depth=16, mean_signal=0.5)
    assert abs(sigma - 0.0707) < 1e-3
    again = sensor_noise(y, poisson_gain=0.01, gaussian_sigma=0.0, bit_depth=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(shot, again)
