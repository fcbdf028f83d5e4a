"""Optics: capture reading and PSF calibration, simulated masks, metalens PSF grid, the PSF file."""

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from thincam.data.h5io import json_attr, read_h5
from thincam.errors import BadInputError
from thincam.stages.calibrate import calibrate_psf
from thincam.optics.capture import (
    area_downsample,
    calibrate_capture_psf,
    load_image,
    remove_hot_pixels,
)
from thincam.optics.masks import (
    angular_spectrum,
    contour_target,
    phase_contour_psf,
    random_diffuser_psf,
    sparse_dots_psf,
)
from thincam.optics.metalens import fwhm_map, metalens_psf_grid, psf_fwhm

DATA = Path(__file__).parent / "data" / "diffusercam"
PSF_TIF = DATA / "psf_ds4.tif"

# A metalens small enough for tests (about 1 s): the default optics, 13x13 patches, coarser pupil.
SMALL_METALENS = dict(
    psf_size=(13, 13),
    grid=(3, 3),
    wavelengths_nm=(640.0, 550.0, 460.0),
    design_wavelength_nm=550.0,
    focal_mm=0.2,
    aperture_um=50.0,
    pixel_pitch_um=1.5,
    max_field_deg=30.0,
    n_pupil=32,
    oversample=2,
)


def _unit_sum(psf):
    assert psf.dtype == np.float32
    assert np.isfinite(psf).all() and (psf >= 0).all()
    np.testing.assert_allclose(psf.sum(axis=(-2, -1)), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- load_image


def test_load_png_8bit_rgb_rgba_gray(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    iio.imwrite(tmp_path / "rgba.png", np.dstack([rgb, np.full((5, 7), 9, np.uint8)]))
    iio.imwrite(tmp_path / "gray.png", rgb[..., 0])
    out = load_image(tmp_path / "rgb.png")
    assert out.shape == (3, 5, 7) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-7)
    np.testing.assert_allclose(load_image(tmp_path / "rgba.png"), out)
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (1, 5, 7)
    np.testing.assert_allclose(gray[0], rgb[..., 0] / 255.0, atol=1e-7)


def test_load_bmp_8bit_rgb_and_gray(tmp_path):
    """.bmp is a listed image type (data.layouts.IMAGE_SUFFIXES), so the reader takes it."""
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgb.bmp", rgb)
    iio.imwrite(tmp_path / "gray.bmp", rgb[..., 1])
    np.testing.assert_allclose(load_image(tmp_path / "rgb.bmp"), np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-7)
    np.testing.assert_allclose(load_image(tmp_path / "gray.bmp", bit_depth=8)[0], rgb[..., 1] / 255.0, atol=1e-7)


def test_load_tiff_16bit_inferred_and_declared(tmp_path):
    raw = np.array([[0, 1000], [4095, 65535]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raw)
    np.testing.assert_allclose(load_image(tmp_path / "a.tif")[0], raw / 65535.0, atol=1e-7)
    twelve = np.array([[0, 1000], [4095, 7]], dtype=np.uint16)
    tifffile.imwrite(tmp_path / "b.tiff", twelve)
    np.testing.assert_allclose(load_image(tmp_path / "b.tiff", bit_depth=12)[0], twelve / 4095.0)
    rgb = np.zeros((4, 6, 3), np.uint16)
    rgb[..., 2] = 65535
    tifffile.imwrite(tmp_path / "c.tif", rgb)
    out = load_image(tmp_path / "c.tif")
    assert out.shape == (3, 4, 6) and out[2].min() == 1.0 and out[:2].max() == 0.0


def test_load_npy_float_and_channels_first(tmp_path):
    hwc = np.random.default_rng(1).random((6, 5, 3)).astype(np.float32)
    np.save(tmp_path / "hwc.npy", hwc)
    np.save(tmp_path / "chw.npy", np.moveaxis(hwc, -1, 0))
    np.testing.assert_array_equal(load_image(tmp_path / "hwc.npy"), np.moveaxis(hwc, -1, 0))
    np.testing.assert_array_equal(load_image(tmp_path / "chw.npy"), np.moveaxis(hwc, -1, 0))
    np.save(tmp_path / "counts.npy", np.array([[0.0, 511.0]]))
    np.testing.assert_allclose(load_image(tmp_path / "counts.npy", bit_depth=9), [[[0.0, 1.0]]])


@pytest.mark.parametrize(
    "name, make, kwargs, message",
    [
        (
            "deep.tif",
            lambda p: tifffile.imwrite(p, np.full((4, 4), 4000, np.uint16)),
            {"bit_depth": 8},
            "bit depth 8 disagrees with data max 4000",
        ),
        ("nan.npy", lambda p: np.save(p, np.array([[0.5, np.nan]])), {}, "NaN/inf"),
        ("inf.npy", lambda p: np.save(p, np.array([[0.5, np.inf]])), {}, "NaN/inf"),
        ("scene.gif", lambda p: p.write_bytes(b"GIF89a"), {}, "unknown image format"),
        ("broken.bmp", lambda p: p.write_bytes(b"BM...."), {}, "cannot read"),
        (
            "eight.png",
            lambda p: iio.imwrite(p, np.full((4, 4), 200, np.uint8)),
            {"bit_depth": 16, "bit_depth_key": "cameras.cam.bit_depth"},
            "8-bit file (uint8) but config key cameras.cam.bit_depth says 16-bit",
        ),
        ("broken.tif", lambda p: p.write_bytes(b"not a tiff at all"), {}, "cannot read"),
        ("stack.npy", lambda p: np.save(p, np.zeros((2, 2, 3, 3))), {}, "got shape (2, 2, 3, 3)"),
        ("big.npy", lambda p: np.save(p, np.array([[0.0, 3.0]])), {}, "exceeds 1"),
        ("neg.npy", lambda p: np.save(p, np.array([[0.0, -0.5]])), {}, "negative"),
    ],
)
def test_load_image_rejects_bad_files_naming_them(tmp_path, name, make, kwargs, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(BadInputError) as err:
        load_image(path, **kwargs)
    assert name in str(err.value) and message in str(err.value)


def test_load_image_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="absent.tif"):
        load_image(tmp_path / "absent.tif")


# ---------------------------------------------------------------- capture calibration


def test_area_downsample_known_answer():
    image = np.arange(25, dtype=np.float64).reshape(1, 5, 5)
    # 5x5 is cropped to 4x4, then 2x2 block means
    np.testing.assert_array_equal(area_downsample(image, 2)[0], [[3.0, 5.0], [13.0, 15.0]])
    assert area_downsample(image, 1) is image


def test_calibrate_downsamples_by_area(tmp_path):
    raw = np.zeros((8, 8), np.uint16)
    raw[2:4, 4:6] = 1000  # exactly one 2x2 block of the downsampled grid
    raw[5, 1] = 400  # a quarter of another block's area, at 0.4 of the level
    tifffile.imwrite(tmp_path / "blocks.tif", raw)
    psf, info = calibrate_capture_psf(
        tmp_path / "blocks.tif", background="none", hot_pixel_sigma=1e9, downsample=2
    )
    expected = np.zeros((4, 4))
    expected[1, 2] = 4000 / 4
    expected[2, 0] = 400 / 4
    np.testing.assert_allclose(psf[0], expected / expected.sum(), rtol=1e-6)
    assert info["downsample"] == 2


def test_hot_pixels_removed_but_blobs_and_thin_caustics_kept():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:40, :40]
    blob = np.exp(-((yy - 20.0) ** 2 + (xx - 15.0) ** 2) / (2 * 3.0**2))
    image = (0.01 + 0.5 * blob + 0.002 * rng.standard_normal((40, 40)))[None]
    # a one-pixel-wide caustic line, noisy along its length; caustic lines form networks without
    # free ends (an end looks locally like a defect pair), so this one spans the frame
    image[0, :, 30] += 0.4 + 0.05 * rng.random(40)
    dirty = image.copy()
    dirty[0, 8, 22] = 0.9  # an isolated defect
    dirty[0, 0, 0], dirty[0, 0, 1] = 0.5, 0.8  # an adjacent pair at the border (as in the sample)
    clean, n_hot = remove_hot_pixels(dirty, sigma=6.0)
    assert n_hot == 3
    for y, x in [(8, 22), (0, 0), (0, 1)]:
        assert abs(clean[0, y, x] - 0.01) < 0.01
    mask = np.ones_like(image, bool)
    mask[0, [8, 0, 0], [22, 0, 1]] = False
    np.testing.assert_array_equal(clean[mask], dirty[mask])  # blob peak and line untouched
    # quantised data: one-LSB noise leaves most 5x5 windows with MAD 0; it is not a defect
    counts = 100.0 + (rng.random((1, 40, 40)) < 0.1)
    counts[0, 20, 20] = 150.0
    clean, n_hot = remove_hot_pixels(counts, sigma=6.0)
    assert n_hot == 1 and clean[0, 20, 20] == 100.0


def test_calibrate_committed_diffusercam_psf():
    raw = load_image(PSF_TIF)[0]
    psf, info = calibrate_capture_psf(PSF_TIF, background="corner", downsample=2, size=(128, 176))
    _unit_sum(psf)
    assert psf.shape == (1, 128, 176) and info["energy_kept"] > 0.99
    # the sensor defect at (0,0) (2817 DN after downsampling, against ~36 DN) and nothing else
    assert info["n_hot_pixels"] == 1
    # background: the corner level of the raw 16-bit frame, about 36 DN
    assert 25 / 65535 < info["background"][0] < 50 / 65535
    # crop is centred on the intensity centroid
    rows, cols = np.indices(psf.shape[1:])
    assert abs((rows * psf[0]).sum() - 64) < 8 and abs((cols * psf[0]).sum() - 88) < 8
    # background removed: the uncropped corners are ~0 relative to the PSF, though raw ones are not
    full, _ = calibrate_capture_psf(PSF_TIF, background="corner")
    k = 15
    corners = np.concatenate(
        [full[0, :k, :k], full[0, -k:, -k:], full[0, :k, -k:], full[0, -k:, :k]]
    )
    raw_corners = np.concatenate([raw[:k, :k], raw[-k:, -k:], raw[:k, -k:], raw[-k:, :k]])
    assert corners.mean() / full.mean() < 0.3 * raw_corners.mean() / raw.mean()


def test_calibrate_removes_a_constant_offset(tmp_path):
    """A uniform pedestal (dark level) must not change the calibrated PSF."""
    half = tifffile.imread(PSF_TIF) // 2  # headroom: the sample saturates at 65520
    tifffile.imwrite(tmp_path / "half.tif", half)
    tifffile.imwrite(tmp_path / "offset.tif", half + np.uint16(3000))
    a, _ = calibrate_capture_psf(tmp_path / "half.tif")
    b, info = calibrate_capture_psf(tmp_path / "offset.tif")
    np.testing.assert_allclose(a, b, atol=1e-4 * a.max())
    np.testing.assert_allclose(np.array(info["background"]) * 65535, 18 + 3000, atol=8)


def test_calibrate_with_dark_frame(tmp_path):
    rng = np.random.default_rng(5)
    dark = rng.integers(90, 110, (32, 32)).astype(np.uint16)
    signal = np.zeros((32, 32), np.uint16)
    signal[10:13, 20:22] = 5000
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    tifffile.imwrite(tmp_path / "point.tif", dark + signal)
    psf, info = calibrate_capture_psf(
        tmp_path / "point.tif", dark_path=tmp_path / "dark.tif", background="dark"
    )
    np.testing.assert_allclose(psf[0], signal / signal.sum(), atol=1e-6)
    assert abs(info["background"][0] * 65535 - dark.mean()) < 1e-3


def _noise_and_hot_pixels(shape=(300, 400), seed=7):
    """A point-source capture with no point source: read noise around a dark level, six hot pixels
    and an adjacent defect pair, as a 16-bit frame."""
    rng = np.random.default_rng(seed)
    frame = np.clip(np.round(100 + 20 * rng.standard_normal(shape)), 0, 65535)
    frame[rng.integers(0, shape[0], 6), rng.integers(0, shape[1], 6)] = 65535
    frame[10, 10] = frame[10, 11] = 40000
    return frame.astype(np.uint16)


def test_psf_energy_concentration_accepts_the_real_psf_and_rejects_noise(tmp_path):
    """The committed DiffuserCam PSF puts ~99% of its above-background energy 5 sigma above the
    noise; a frame of noise and hot pixels under 1% and is refused by name, whatever the
    background handling."""
    from thincam.optics.condition import psf_energy_concentration

    _, info = calibrate_capture_psf(PSF_TIF, bit_depth=16, background="corner")
    assert info["energy_concentration"][0] > 0.95
    for seed in range(4):
        frame, _ = remove_hot_pixels(_noise_and_hot_pixels(seed=seed)[None] / 65535.0)
        assert psf_energy_concentration(frame - np.median(frame))[0] < 0.01
    # Depending on the draw the corner level lies above the mean (no positive sum left) or below.
    noise = tmp_path / "noise_psf.tif"
    for seed in range(4):
        tifffile.imwrite(noise, _noise_and_hot_pixels(seed=seed))
        with pytest.raises(BadInputError, match="noise_psf.tif: no PSF"):
            calibrate_capture_psf(noise, bit_depth=16, background="corner")
    tifffile.imwrite(tmp_path / "dark.tif", _noise_and_hot_pixels(seed=8))
    with pytest.raises(BadInputError, match="noise_psf.tif: no PSF"):
        calibrate_capture_psf(noise, dark_path=tmp_path / "dark.tif", bit_depth=16, background="dark")
    # Noise below one quantisation level (most neighbour differences 0) is still noise.
    faint = np.full((64, 64), 30, np.uint16) + (np.random.default_rng(1).random((64, 64)) < 0.1)
    tifffile.imwrite(tmp_path / "faint.tif", faint.astype(np.uint16))
    with pytest.raises(BadInputError, match="faint.tif: no PSF"):
        calibrate_capture_psf(tmp_path / "faint.tif", background="corner")
    # The real PSF dimmed 30x into the same noise (peak 110 sigma) still passes: 67% measured.
    raw = tifffile.imread(PSF_TIF).astype(np.float64)
    dim = np.clip(np.round(100 + (raw - 30) / 30 + 20 * np.random.default_rng(2).standard_normal(raw.shape)), 0, None)
    tifffile.imwrite(tmp_path / "dim.tif", dim.astype(np.uint16))
    _, info = calibrate_capture_psf(tmp_path / "dim.tif", bit_depth=16, background="corner")
    assert info["energy_concentration"][0] > 0.5


def test_psf_spectrum_spread_known_answers():
    from thincam.optics.condition import psf_spectrum_spread

    delta = np.zeros((1, 8, 8))
    delta[0, 3, 5] = 1.0
    spread = psf_spectrum_spread(delta)
    assert spread["min"] == pytest.approx(1.0) and spread["median"] == pytest.approx(1.0)
    assert spread["condition"] == pytest.approx(1.0) and spread["max_abs"] == [pytest.approx(1.0)]
    assert spread["below_0.01"] == 0.0
    # Two equal neighbours: |H| = |cos(pi fx)| on an 8-wide grid is 0 at fx = 1/2 (one column of 8)
    pair = np.zeros((8, 8))
    pair[0, :2] = 0.5
    spread = psf_spectrum_spread(pair, thresholds=(0.5,))
    assert spread["min"] < 1e-15 and spread["condition"] > 1e15
    cos = np.abs(np.cos(np.pi * np.fft.fftfreq(8)))
    assert spread["below_0.5"] == pytest.approx((cos <= 0.5).mean())
    assert spread["median"] == pytest.approx(np.median(np.repeat(cos[None], 8, 0)))


def test_all_zero_psf_names_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "black.tif", np.zeros((16, 16), np.uint16))
    with pytest.raises(BadInputError, match="black.tif"):
        calibrate_capture_psf(tmp_path / "black.tif", background="none")
    # a flat frame is all background: nothing left after the corner subtraction
    tifffile.imwrite(tmp_path / "flat.tif", np.full((16, 16), 700, np.uint16))
    with pytest.raises(BadInputError, match="flat.tif.*no PSF signal"):
        calibrate_capture_psf(tmp_path / "flat.tif", background="corner")


def test_dark_shape_mismatch_names_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "cap.tif", np.ones((16, 16), np.uint16))
    tifffile.imwrite(tmp_path / "dark_small.tif", np.ones((8, 16), np.uint16))
    with pytest.raises(BadInputError, match="dark_small.tif.*does not match"):
        calibrate_capture_psf(
            tmp_path / "cap.tif", dark_path=tmp_path / "dark_small.tif", background="dark"
        )


def test_nan_capture_names_the_file(tmp_path):
    np.save(tmp_path / "nanpsf.npy", np.array([[0.1, np.nan], [0.2, 0.3]]))
    with pytest.raises(BadInputError, match="nanpsf.npy"):
        calibrate_capture_psf(tmp_path / "nanpsf.npy")


# ---------------------------------------------------------------- angular spectrum


def _gaussian_beam(n, pitch, w0):
    coords = (np.arange(n) - n / 2) * pitch
    x, y = np.meshgrid(coords, coords)
    return x, y, np.exp(-(x**2 + y**2) / w0**2).astype(np.complex128)


def _beam_radius(x, y, field):
    """1/e^2 intensity radius: <x^2> = w^2 / 4 for a Gaussian beam."""
    intensity = np.abs(field) ** 2
    return 2.0 * np.sqrt((intensity * x**2).sum() / intensity.sum())


def test_angular_spectrum_gaussian_beam_width_and_energy():
    wavelength, pitch, w0 = 550e-9, 1e-6, 10e-6
    x, y, field = _gaussian_beam(256, pitch, w0)
    z_rayleigh = np.pi * w0**2 / wavelength
    for z in (0.5e-3, 1e-3):
        out = angular_spectrum(field, wavelength, pitch, z)
        expected = w0 * np.sqrt(1 + (z / z_rayleigh) ** 2)
        assert abs(_beam_radius(x, y, out) / expected - 1) < 0.02
        np.testing.assert_allclose((np.abs(out) ** 2).sum(), (np.abs(field) ** 2).sum(), rtol=1e-6)
    # a tilted beam travels at its angle: exp(i k sin(a) x) moves the centre by z tan(a)
    angle = np.deg2rad(2.0)
    tilted = field * np.exp(2j * np.pi / wavelength * np.sin(angle) * x)
    out = np.abs(angular_spectrum(tilted, wavelength, pitch, 1e-3)) ** 2
    assert abs((out * x).sum() / out.sum() - 1e-3 * np.tan(angle)) < 0.2e-6


def test_angular_spectrum_round_trip():
    _, _, field = _gaussian_beam(128, 2e-6, 20e-6)
    back = angular_spectrum(angular_spectrum(field, 460e-9, 2e-6, 2e-3), 460e-9, 2e-6, -2e-3)
    np.testing.assert_allclose(back, field, atol=1e-6)


# ---------------------------------------------------------------- simulated masks


def test_sparse_dots_psf():
    psf = sparse_dots_psf((32, 32), n_dots=12, blur_px=0.7, seed=4, channels=3)
    _unit_sum(psf)
    assert psf.shape == (3, 32, 32)
    np.testing.assert_array_equal(psf[0], psf[2])  # an amplitude mask is achromatic
    np.testing.assert_array_equal(psf, sparse_dots_psf((32, 32), seed=4))
    assert not np.array_equal(psf, sparse_dots_psf((32, 32), seed=5))
    sharp = sparse_dots_psf((32, 32), n_dots=7, blur_px=0.05, seed=4, channels=1)
    assert (sharp[0] > 1e-3).sum() == 7
    # the reason it is the tiny default: |H| stays away from zero (docs/default.md)
    assert np.median(np.abs(np.fft.fft2(psf[0]))) > 0.04


def test_phase_contour_psf_reproduces_its_target():
    kw = dict(size=(32, 32), pixel_pitch_um=10.0, distance_mm=2.0, seed=7, n_iter=15)
    psf = phase_contour_psf(**kw)
    _unit_sum(psf)
    assert psf.shape == (3, 32, 32)
    np.testing.assert_array_equal(psf, phase_contour_psf(**kw))
    assert not np.array_equal(psf, phase_contour_psf(**{**kw, "seed": 8}))
    target = contour_target((32, 32), 7, (4, 4), (0.0,))
    green = np.corrcoef(psf[1].ravel(), target.ravel())[0, 1]
    assert green > 0.9  # Gerchberg-Saxton found a mask drawing the contours
    assert np.abs(psf[0] - psf[1]).sum() > 0.2  # other wavelengths see a mis-scaled phase


def test_random_diffuser_psf_makes_caustics():
    kw = dict(size=(32, 32), pixel_pitch_um=10.0, distance_mm=2.0, seed=2)
    psf = random_diffuser_psf(**kw, correlation_px=3.0, phase_strength=10.0)
    _unit_sum(psf)
    np.testing.assert_array_equal(
        psf, random_diffuser_psf(**kw, correlation_px=3.0, phase_strength=10.0)
    )
    flat = random_diffuser_psf(**kw, correlation_px=3.0, phase_strength=0.0)
    peak = lambda p: p[1].max() * p[1].size  # noqa: E731  peak over mean
    assert peak(flat) < 2.0 and peak(psf) > 8.0


# ---------------------------------------------------------------- metalens


@pytest.fixture(scope="module")
def small_grid():
    return metalens_psf_grid(**SMALL_METALENS)


def test_psf_fwhm_gaussian_known_answer():
    yy, xx = np.mgrid[:41, :41]
    for sigma, offset in [(1.0, 0.0), (2.0, 0.3), (3.0, 0.5)]:
        g = np.exp(-((yy - 20 - offset) ** 2 + (xx - 20 + offset) ** 2) / (2 * sigma**2))
        assert abs(psf_fwhm(g) / (2.3548 * sigma) - 1) < 0.05


def test_metalens_on_axis_is_airy_limited():
    """On axis at the design wavelength the hyperbolic lens is perfect: FWHM = 1.029 lambda f/D."""
    grid = metalens_psf_grid(
        psf_size=(21, 21),
        grid=(1, 1),
        wavelengths_nm=(550.0,),
        focal_mm=0.2,
        aperture_um=50.0,
        pixel_pitch_um=0.25,
        n_pupil=32,
        oversample=1,
    )
    psf = grid[0, 0, 0]
    expected_um = 1.029 * 0.55 * 200.0 / 50.0
    assert abs(psf_fwhm(psf) * 0.25 / expected_um - 1) < 0.05
    # and the whole pattern is the Airy disc [2 J1(v) / v]^2, v = pi D rho / (lambda f)
    from scipy.special import j1

    rows, cols = np.indices(psf.shape)
    v = np.pi * 50.0 * 0.25 * np.hypot(rows - 10, cols - 10) / (0.55 * 200.0)
    airy = np.where(v > 0, (2 * j1(np.maximum(v, 1e-12)) / np.maximum(v, 1e-12)) ** 2, 1.0)
    np.testing.assert_allclose(psf, airy / airy.sum(), atol=0.01 * psf.max())  # measured 0.3%


def test_metalens_grid_shape_fwhm_and_chromatic(small_grid):
    assert small_grid.shape == (3, 3, 3, 13, 13)
    _unit_sum(small_grid)
    fwhm = fwhm_map(small_grid)
    assert fwhm.shape == (3, 3) and fwhm.dtype == np.float32
    assert np.isfinite(fwhm).all() and (fwhm > 0).all()
    green = np.array([[psf_fwhm(small_grid[i, j, 1]) for j in range(3)] for i in range(3)])
    assert green[0, 0] > 1.5 * green[1, 1] and fwhm[0, 0] > fwhm[0, 1] > fwhm[1, 1]
    np.testing.assert_allclose(fwhm, fwhm[::-1, ::-1], rtol=0.02)  # rotational symmetry
    # on axis, red and blue are defocused (f ~ 1/lambda), green is sharp
    centre = [psf_fwhm(small_grid[1, 1, c]) for c in range(3)]
    assert centre[0] > 1.1 * centre[1] and centre[2] > 1.1 * centre[1]
    # every PSF is centred on its window
    rows, cols = np.indices((13, 13))
    total = small_grid.sum(axis=2)
    assert np.abs((total * rows).sum(axis=(-2, -1)) / 3 - 6).max() < 1.0
    assert np.abs((total * cols).sum(axis=(-2, -1)) / 3 - 6).max() < 1.0


def test_metalens_refuses_an_aliasing_pupil():
    with pytest.raises(ValueError, match="n_pupil"):
        metalens_psf_grid(**{**SMALL_METALENS, "n_pupil": 12})


# ---------------------------------------------------------------- calibrate_psf -> psf file

COMMON = {"channels": 3, "pixel_pitch_um": 10.0, "seed": 1}
CAMERAS = {
    "dots": {**COMMON, "kind": "sparse_dots", "size": [32, 32], "n_dots": 12, "blur_px": 0.7},
    "contour": {
        **COMMON,
        "kind": "phase_contour",
        "size": [24, 24],
        "wavelengths_nm": [640, 550, 460],
        "distance_mm": 2.0,
    },
    "diffuser": {
        **COMMON,
        "kind": "random_diffuser",
        "size": [32, 32],
        "wavelengths_nm": [640, 550, 460],
        "distance_mm": 2.0,
        "correlation_px": 3.0,
        "phase_strength": 10.0,
    },
    "capture": {
        **COMMON,
        "kind": "capture",
        "size": [64, 80],
        "path": str(PSF_TIF),
        "dark_path": None,
        "bit_depth": 16,
        "background": "corner",
        "downsample": 4,  # 75x100: the 64x80 crop keeps 99.7% of the PSF's energy
        "hot_pixel_sigma": 6.0,
        "center": True,
    },
    "metalens": {
        **COMMON,
        "kind": "metalens",
        "size": [9, 9],
        "pixel_pitch_um": 1.5,
        "wavelengths_nm": [640, 550, 460],
        "design_wavelength_nm": 550,
        "focal_mm": 0.2,
        "aperture_um": 50.0,
        "grid": [2, 3],
        "psf_size": [9, 9],
        "max_field_deg": 20.0,
    },
}


@pytest.mark.parametrize("name", sorted(CAMERAS))
def test_calibrate_psf_writes_a_verified_psf_file(tmp_path, name):
    camera = CAMERAS[name]
    out = tmp_path / "psf" / f"{name}.h5"
    calibrate_psf(camera, out)
    arrays, attrs = read_h5(out, contract="psf")
    psf = arrays["psf"]
    assert psf.shape == (3, *camera["size"])
    _unit_sum(psf)
    assert attrs["kind"] == camera["kind"] and attrs["pixel_pitch_um"] == camera["pixel_pitch_um"]
    assert json_attr(attrs, "provenance") == camera
    if name == "capture":
        assert attrs["source"] == str(PSF_TIF) and attrs["downsample"] == 4
        assert attrs["n_saturated"] == 0 and attrs["energy_kept"] > 0.99
        background = json.loads(attrs["background"])
        assert len(background) == 1 and 0 < background[0] < 1e-3
        np.testing.assert_array_equal(psf[0], psf[2])  # gray capture replicated to 3 channels
    else:
        assert attrs["source"] == "simulated" and attrs["background"] == "none"
    if name == "metalens":
        assert arrays["psf_grid"].shape == (2, 3, 3, 9, 9)
        assert arrays["fwhm"].shape == (2, 3) and (arrays["fwhm"] > 0).all()
        np.testing.assert_array_equal(psf, arrays["psf_grid"][1, 1])
    else:
        assert set(arrays) == {"psf"}


def test_calibrate_psf_single_channel_from_wavelengths(tmp_path):
    camera = {**CAMERAS["diffuser"], "channels": 1}
    calibrate_psf(camera, tmp_path / "mono.h5")
    psf = read_h5(tmp_path / "mono.h5", contract="psf")[0]["psf"]
    assert psf.shape == (1, 32, 32)
    _unit_sum(psf)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "pinhole"}, "unknown kind 'pinhole'"),
        ({"n_dots": None}, None),
        ({"channels": 2}, "channels"),
    ],
)
def test_calibrate_psf_bad_camera_names_the_file(tmp_path, change, message):
    camera = {**CAMERAS["dots"], **change}
    if message is None:
        del camera["n_dots"]
        message = "missing key.*n_dots"
    with pytest.raises(BadInputError, match=message) as err:
        calibrate_psf(camera, tmp_path / "cam_x.h5")
    assert "cam_x.h5" in str(err.value)
    assert not (tmp_path / "cam_x.h5").exists()


def test_calibrate_psf_capture_errors_name_the_capture(tmp_path):
    camera = {**CAMERAS["capture"], "path": str(tmp_path / "lost_psf.tif")}
    with pytest.raises(BadInputError, match="lost_psf.tif"):
        calibrate_psf(camera, tmp_path / "cap.h5")
    metalens = {**CAMERAS["metalens"], "size": [11, 11]}
    with pytest.raises(BadInputError, match="psf_size"):
        calibrate_psf(metalens, tmp_path / "ml.h5")


def test_saturated_psf_values_are_counted_in_the_file_and_log_or_refused(tmp_path, caplog):
    """A few clipped pixels are accepted with their count in the PSF file and a logged warning;
    more than cameras.<name>.max_saturated of them are refused, naming the file and that key."""
    raw = tifffile.imread(PSF_TIF)
    clipped = raw.copy()
    clipped[np.unravel_index(np.argsort(raw, axis=None)[-60:], raw.shape)] = 65535  # 0.05%
    tifffile.imwrite(tmp_path / "clipped.tif", clipped)
    camera = {**CAMERAS["capture"], "path": str(tmp_path / "clipped.tif")}
    with caplog.at_level("INFO", logger="thincam.stages.calibrate"):
        calibrate_psf(camera, tmp_path / "cam.h5")
    _, attrs = read_h5(tmp_path / "cam.h5", contract="psf")
    assert attrs["n_saturated"] == 60
    warning = next(r for r in caplog.records if r.levelname == "WARNING")
    assert "60 pixel values of" in warning.getMessage() and "cameras.cam.max_saturated" in warning.getMessage()
    with pytest.raises(BadInputError) as err:
        calibrate_psf({**camera, "max_saturated": 1e-4}, tmp_path / "strict.h5")
    assert "clipped.tif: 60 pixel values (0.05%) at full scale" in str(err.value)
    assert "cameras.strict.max_saturated (now 0.0001)" in str(err.value)
    assert not (tmp_path / "strict.h5").exists()
