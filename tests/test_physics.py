"""Operators: adjointness, A+ quality (range-null residual, null projector), noise model,
operator identity."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from thincam.errors import BadInputError
from thincam.physics.noise import effective_sigma, sensor_noise
from thincam.physics.operators import (
    LenslessConvolution,
    ProductConvolution,
    PseudoInverse,
    check_same_operator,
    null_leakage,
    partition_of_unity,
    projector_error,
    range_null_residual,
)

CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
# The tiny workflow runs the NSDD branch with the exact tsvd A+ (the default chose Tikhonov on val).
TINY_CONFIG = yaml.safe_load((Path(__file__).resolve().parents[1] / ".test" / "config.yaml").read_text())
TIKHONOV = {"kind": "tikhonov", "lam": 1e-2, "iters": 50}

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
    circular = LenslessConvolution(_sparse_dots(), boundary="circular", pinv=TIKHONOV)
    linear = LenslessConvolution(_psf(3, 32, 32), scene_shape=(32, 32), pinv=TIKHONOV)
    grid = torch.stack([torch.stack([_psf(3, 7, 7, seed=3 * i + j) for j in range(3)]) for i in range(3)])
    metalens = ProductConvolution(grid, (32, 32), pinv=TIKHONOV)
    measured = {
        "circular": range_null_residual(circular, x),
        "linear": range_null_residual(linear, x),
        "metalens": range_null_residual(metalens, x),
    }
    print("range-null residuals:", measured)
    for name, value in measured.items():
        assert value < RANGE_NULL_BOUND[name], (name, value)
    # A+ is a *regularised* inverse: a smaller lam must shrink the residual.
    sharper = LenslessConvolution(_sparse_dots(), boundary="circular", pinv={**TIKHONOV, "lam": 1e-4})
    assert range_null_residual(sharper, x) < measured["circular"] / 5


def test_null_projection_is_invisible():
    """A (I - A+A) r ~ 0 up to the Tikhonov residual; exact for circular with lam -> 0."""
    op = LenslessConvolution(_sparse_dots(), boundary="circular", pinv={"kind": "tikhonov", "lam": 1e-10})
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


def _configured(dataset: str, config: dict = CONFIG):
    """(PSF as float64 [C,H,W], operator dict) of a dataset in config.yaml, PSF from its camera."""
    from thincam.optics.calibrate import camera_psf

    entry = config["datasets"][dataset]
    camera = dict(config["cameras"][entry["camera"]])
    if "path" in camera:
        camera["path"] = str(Path(__file__).resolve().parents[1] / camera["path"])
    psf = camera_psf(camera, where=dataset, key=f"cameras.{entry['camera']}")[0]["psf"]
    return torch.from_numpy(np.asarray(psf, dtype=np.float64)), entry["operator"]


def test_configured_tsvd_makes_an_exact_null_projector():
    """Known answer: the truncated-SVD A+ of the circular operator gives P = I - A+A with P^2 = P
    (equivalently A+A P = 0: the residual changes no kept frequency) and P = P^T to float
    precision, at the threshold .test/config.yaml sets. A P r is not 0, since the dropped |H| are small,
    not zero: it lies only in the dropped frequencies and ||A P r|| <= threshold ||P r||."""
    psf, operator = _configured("faces_phlatcam", TINY_CONFIG)
    assert operator["pinv"]["kind"] == "tsvd" and operator["boundary"] == "circular"
    threshold = operator["pinv"]["threshold"]
    op = LenslessConvolution(psf, boundary="circular", pinv=operator["pinv"])
    r = torch.rand(2, 3, *psf.shape[-2:], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    p = op.null_project(r)
    assert projector_error(op, r) < 1e-13
    assert abs(float((p * (r - p)).sum())) < 1e-12 * float((r * r).sum())  # orthogonal: P r _|_ (I - P) r
    kept = op.singular_values() > threshold  # unit-sum PSF: max |H| = 1
    seen = torch.fft.rfft2(op.A(p))
    assert float(seen[kept.expand_as(seen)].abs().max()) < 1e-12 * float(seen.abs().max())
    assert float(torch.linalg.vector_norm(op.A(p))) <= threshold * float(torch.linalg.vector_norm(p))
    leakage = null_leakage(op, r)
    print(f"tsvd {threshold}: dropped {1 - float(kept.double().mean()):.3f} of the rfft grid, leakage {leakage:.3g}")
    # Not trivially zero: the dropped frequencies carry part of r.
    assert 0.2 < 1 - float(kept.double().mean()) < 0.99
    assert float(torch.linalg.vector_norm(p) / torch.linalg.vector_norm(r)) > 0.05
    # In float32 the same holds to float32 rounding.
    op32 = LenslessConvolution(psf.float(), boundary="circular", pinv=operator["pinv"])
    assert projector_error(op32, r.float()) < 1e-6


def test_tsvd_of_a_band_limited_psf_has_no_leakage():
    """Known answer: where the dropped singular values are exactly zero (a PSF band-limited to
    |f| < 0.2 cycles/px), the tsvd P is the projector onto the true null space: A P = 0."""
    spectrum = torch.fft.rfft2(torch.fft.ifftshift(_sparse_dots(), dim=(-2, -1)))
    fy, fx = torch.fft.fftfreq(32)[:, None], torch.fft.rfftfreq(32)[None, :]
    spectrum[:, torch.hypot(fy, fx) >= 0.2] = 0
    psf = torch.fft.fftshift(torch.fft.irfft2(spectrum, s=(32, 32)), dim=(-2, -1))
    op = LenslessConvolution(psf, boundary="circular", pinv={"kind": "tsvd", "threshold": 1e-6})
    r = torch.rand(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert projector_error(op, r) < 1e-13 and null_leakage(op, r) < 1e-12


def test_tikhonov_null_projection_is_not_a_projector():
    """Known answer: with the Tikhonov A+ the circular P scales frequency k by lam / (|H_k|^2 + lam);
    so P^2 - P = p (p - 1) != 0 and the measured frequencies leak through."""
    psf, _ = _configured("faces_phlatcam")
    lam = 1e-2
    op = LenslessConvolution(psf, boundary="circular", pinv={"kind": "tikhonov", "lam": lam})
    r = torch.rand(1, 3, *psf.shape[-2:], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eigen = lam / (op.H.abs() ** 2 + lam)
    assert torch.allclose(torch.fft.rfft2(op.null_project(r)), torch.fft.rfft2(r) * eigen, atol=1e-12)
    shape = psf.shape[-2:]
    known = torch.linalg.vector_norm(torch.fft.irfft2(torch.fft.rfft2(r) * (eigen**2 - eigen), s=shape))
    error = projector_error(op, r)
    assert error == pytest.approx(float(known / torch.linalg.vector_norm(r)), rel=1e-9)
    assert error > 1e-2 and null_leakage(op, r) > 1e-2
    assert 0.0099 < float(eigen.min()) < 0.011 and float(eigen.max()) < 1.0


# Bounds on the Tikhonov/CG null projection of the cropped linear operator at the configured
# diffusercam_hand values (lam 1e-4, 30 CG steps; the 60x80 DiffuserCam PSF; astronaut image).
LINEAR_PROJECTOR_BOUND = 0.1  # measured 0.060 (0.076 at lam 1e-3 with the 300x400 PSF)
LINEAR_LEAKAGE_BOUND = 0.02  # measured 0.0024 (0.010 at lam 1e-3 with the 300x400 PSF)


def test_configured_linear_null_projection_is_approximate():
    """The cropped operator has no cheap SVD, so its A+ is CG-solved Tikhonov: P = I - A+A is only
    approximately a projector. ||P^2 r - P r|| / ||r|| and ||A P r|| / ||A r|| are measured on a
    natural image at the configured lam and iterations, and bounded."""
    psf, operator = _configured("diffusercam_hand")
    assert operator["boundary"] == "linear" and operator["pinv"]["kind"] == "tikhonov"
    op = LenslessConvolution(psf, boundary="linear", pinv=operator["pinv"])
    r = _image((1, 3, *psf.shape[-2:]))
    measured = projector_error(op, r), null_leakage(op, r)
    print("linear operator: projector error %.3g, leakage %.3g" % measured)
    assert measured[0] < LINEAR_PROJECTOR_BOUND and measured[1] < LINEAR_LEAKAGE_BOUND


def _configured_metalens(dataset: str = "natural_metalens", iters: int | None = None):
    """The configured metalens operator (float64 PSF grid; ``iters`` CG steps instead of the
    configured ones) and a scene batch of its size."""
    from thincam.optics.calibrate import camera_psf

    entry = CONFIG["datasets"][dataset]
    grid = camera_psf(CONFIG["cameras"][entry["camera"]], where=dataset)[0]["psf_grid"]
    shape = tuple(entry["image_size"])
    pinv = {**entry["operator"]["pinv"], **({"iters": iters} if iters else {})}
    op = ProductConvolution(torch.from_numpy(np.asarray(grid, dtype=np.float64)), shape, pinv=pinv)
    return op, _image((2, 3, *shape))


def test_configured_metalens_range_null_identity():
    """NSDD and DDNM+ on the metalens rest on A A+ A x = A x. With the configured Tikhonov A+
    (CG) it holds to the metalens bound, and A (I - A+A) x, what a null-space residual changes
    in the measurement, is the same vector. The configured CG steps have converged: more do not
    change A+."""
    op, x = _configured_metalens()
    assert op.pinv.kind == "tikhonov"
    residual, leakage = range_null_residual(op, x), null_leakage(op, x)
    print(f"metalens lam {op.pinv.lam}, {op.pinv.iters} CG steps: range-null {residual:.3g}, leakage {leakage:.3g}")
    assert 1e-4 < residual < RANGE_NULL_BOUND["metalens"]
    assert leakage == pytest.approx(residual, rel=1e-3)
    longer, _ = _configured_metalens(iters=4 * op.pinv.iters)
    y = op.A(x)
    assert torch.linalg.vector_norm(longer.A_dagger(y) - op.A_dagger(y)) < 1e-3 * torch.linalg.vector_norm(x)


def test_tsvd_needs_the_circular_operator():
    tsvd = {"kind": "tsvd", "threshold": 0.1}
    with pytest.raises(ValueError, match="tsvd.*diagonal in Fourier"):
        LenslessConvolution(_psf(1, 8, 8), pinv=tsvd)
    grid = _psf(1, 5, 5)[None, None].expand(2, 2, 1, 5, 5)
    with pytest.raises(ValueError, match="tsvd.*product-convolution"):
        ProductConvolution(grid, (8, 8), pinv=tsvd)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"kind": "wiener"}, "pinv.kind"),
        ({"kind": "tsvd", "lam": 0.1}, "not \\['lam'\\]"),
        ({"kind": "tsvd", "threshold": 1.5}, "0 < threshold < 1"),
        ({"kind": "tikhonov"}, "lam >= 0"),
    ],
)
def test_bad_pinv_spec_is_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        PseudoInverse.from_config(spec)


def test_operator_identity_and_check_same_operator():
    """A student stores op.identity(); another PSF, geometry or A+ is refused naming both."""
    psf = _sparse_dots()
    tsvd = {"kind": "tsvd", "threshold": 0.1}
    op = LenslessConvolution(psf, boundary="circular", pinv=tsvd)
    stored = json.loads(json.dumps(op.identity()))  # as a checkpoint stores it
    assert stored["pinv"] == tsvd and stored["boundary"] == "circular" and len(stored["psf_sha256"]) == 64
    # The same camera in float32 is the same operator.
    check_same_operator(stored, LenslessConvolution(psf.float(), boundary="circular", pinv=tsvd).identity(), "ckpt")
    others = [
        LenslessConvolution(psf, boundary="circular", pinv={"kind": "tsvd", "threshold": 0.05}),
        LenslessConvolution(psf, boundary="circular", pinv=TIKHONOV),
        LenslessConvolution(_sparse_dots(seed=1), boundary="circular", pinv=tsvd),
    ]
    for other in others:
        with pytest.raises(BadInputError, match="student.pt: trained with operator .*0.1.* but given .*differ in"):
            check_same_operator(stored, other.identity(), "student.pt")
    grid = torch.stack([torch.stack([_psf(3, 7, 7, seed=3 * i + j) for j in range(2)]) for i in range(2)])
    metalens = ProductConvolution(grid, (16, 16), pinv=TIKHONOV).identity()
    assert metalens["kind"] == "metalens" and metalens["pinv"] == TIKHONOV


def test_one_centring_convention_for_crops_and_placements():
    """Sensor crop, student placement and PSF crop put a window's centre pixel on the grid's."""
    from thincam.models.nsdd import place_on_grid
    from thincam.physics.geometry import centred_start

    assert centred_start(8, 4) == 2 and centred_start(7, 3) == 2 and centred_start(4, 8) == -2
    y = torch.zeros(1, 1, 4, 6)
    y[..., 2, 3] = 1.0  # the centre pixel of a 4x6 sensor
    placed = place_on_grid(y, (9, 9))
    assert placed[0, 0, 4, 4] == 1.0 and placed.sum() == 1.0
