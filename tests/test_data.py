"""Image sources, splits, simulation and capture ingestion into the dataset layout."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from thincam.data import sources
from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.data.layouts import find_pairs
from thincam.data.sources import lfw_faces, rgb_crops
from thincam.data.splits import split_indices
from thincam.errors import BadInputError
from thincam.stages.measurements import ingest_captures, simulate_measurements


def _psf_file(path, size=16, channels=3):
    psf = np.zeros((channels, size, size), np.float32)
    rng = np.random.default_rng(0)
    psf[:, rng.integers(0, size, 6), rng.integers(0, size, 6)] = 1.0
    psf /= psf.sum(axis=(-2, -1), keepdims=True)
    atomic_write_h5(path, {"psf": psf}, attrs={"kind": "sparse_dots"}, contract="psf")
    return str(path)


def test_sources_shapes_and_range():
    faces = lfw_faces((16, 16))
    assert faces.shape == (200, 3, 16, 16) and faces.dtype == np.float32
    assert 0 <= faces.min() and faces.max() <= 1
    crops = rgb_crops((16, 16), n_images=10, seed=0)
    assert crops.shape == (10, 3, 16, 16)
    assert np.array_equal(crops, rgb_crops((16, 16), n_images=10, seed=0))
    assert not np.array_equal(crops, rgb_crops((16, 16), n_images=10, seed=1))


def test_rgb_crops_have_light_and_texture():
    """The metalens test scenes: no near-black or flat crop (a star field, the sky), by the
    luminance mean and RMS gradient each crop has, measured here independently."""
    crops = rgb_crops((32, 32), n_images=200, seed=0)
    luminance = np.einsum("c,nchw->nhw", [0.299, 0.587, 0.114], crops.astype(np.float64))
    mean = luminance.mean(axis=(1, 2))
    gradient = np.sqrt(
        (np.diff(luminance, axis=2) ** 2).mean(axis=(1, 2))
        + (np.diff(luminance, axis=1) ** 2).mean(axis=(1, 2))
    )
    assert mean.min() >= sources.MIN_CROP_LUMINANCE - 1e-4
    assert gradient.min() >= sources.MIN_CROP_GRADIENT - 1e-4
    assert len({crop.tobytes() for crop in crops}) == 200  # drawn, not the same few positions
    assert np.array_equal(crops, rgb_crops((32, 32), n_images=200, seed=0))


def test_textured_corners_reject_dark_and_flat_windows():
    scene = np.full((40, 60), 0.05)  # dark everywhere but a textured square at rows 10-29, cols 30-49
    scene[10:30, 30:50] = 0.5 + 0.3 * (np.indices((20, 20)).sum(0) % 2)
    corners = {tuple(c) for c in sources.textured_corners(scene, (16, 16))}
    assert (12, 32) in corners  # inside the square
    assert all(10 - 16 < top < 30 and 30 - 16 < left < 50 for top, left in corners)
    assert (0, 0) not in corners and (20, 0) not in corners
    assert len(sources.textured_corners(np.full((40, 60), 0.5), (16, 16))) == 0  # flat


def test_splits_disjoint_seeded_and_bounded():
    splits = split_indices(50, {"train": 30, "val": 5, "test": 10}, seed=3)
    union = np.concatenate(list(splits.values()))
    assert len(union) == len(set(union)) == 45
    assert all(np.array_equal(a, b) for a, b in zip(splits.values(), split_indices(50, {"train": 30, "val": 5, "test": 10}, seed=3).values()))
    with pytest.raises(BadInputError, match="config key splits: splits ask for 60 images .* the source has 50"):
        split_indices(50, {"train": 60, "val": 0, "test": 0}, seed=0)


def _dataset_cfg():
    return {
        "camera": "dots",
        "image_size": [16, 16],
        "source": {"kind": "skimage_faces"},
        "operator": {"kind": "lensless", "boundary": "circular", "pinv": {"kind": "tikhonov", "lam": 0.01}},
        "noise": {"poisson_gain": 0.0, "gaussian_sigma": 0.02, "bit_depth": 10},
        "splits": {"train": 6, "val": 2, "test": 3},
    }


def test_simulation_contract_noise_and_determinism(tmp_path):
    psf = _psf_file(tmp_path / "psf.h5")
    outs = [{s: str(tmp_path / f"{run}-{s}.h5") for s in ("train", "val", "test")} for run in "ab"]
    for out in outs:
        simulate_measurements(psf, _dataset_cfg(), "faces", out, seed=0)
    arrays, attrs = read_h5(outs[0]["test"], contract="dataset")
    assert arrays["x"].shape == (3, 3, 16, 16) and arrays["y"].shape == (3, 3, 16, 16)
    assert attrs["split"] == "test" and "scene_shape" in attrs["operator"]
    levels = arrays["y"] * 1023
    assert np.allclose(levels, np.round(levels), atol=1e-3)
    for split in ("train", "val", "test"):
        assert open(outs[0][split], "rb").read() == open(outs[1][split], "rb").read()

    import torch

    from thincam.data.h5io import json_attr
    from thincam.stages.common import load_operator

    physics = load_operator(psf, json_attr(attrs, "operator"))
    clean = physics.A(torch.from_numpy(arrays["x"])).numpy()
    assert abs(float(np.std(arrays["y"] - clean)) - 0.02) < 0.004


def test_simulation_rejects_nan_source(tmp_path, monkeypatch):
    import thincam.data.sources as sources

    bad = np.full((20, 3, 16, 16), np.nan, np.float32)
    monkeypatch.setattr(sources, "lfw_faces", lambda shape: bad)
    outs = {s: str(tmp_path / f"{s}.h5") for s in ("train", "val", "test")}
    with pytest.raises(BadInputError, match="dataset 'faces'.*NaN"):
        simulate_measurements(_psf_file(tmp_path / "psf.h5"), _dataset_cfg(), "faces", outs, seed=0)
    assert not any((tmp_path / f"{s}.h5").exists() for s in outs)


def _ingest_cfg(path, fmt="pairs", downsample=1):
    return {
        "camera": "cam",
        "captures": {"format": fmt, "path": str(path), "bit_depth": 16, "downsample": downsample},
        "operator": {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 0.01}},
        "splits": {"train": 1, "val": 0, "test": 1},
    }


def test_ingest_pairs_folder(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("measurements", "references"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "set/measurements" / f"{name}.tif", rng.integers(100, 60000, (32, 32), dtype=np.uint16))
        tifffile.imwrite(tmp_path / "set/references" / f"{name}.tif", rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    psf = _psf_file(tmp_path / "psf.h5", size=16, channels=1)
    outs = {s: str(tmp_path / f"{s}.h5") for s in ("train", "val", "test")}
    ingest_captures(psf, _ingest_cfg(tmp_path / "set", downsample=2), "real", outs, seed=0)
    arrays, _ = read_h5(outs["test"], contract="dataset")
    assert arrays["y"].shape == (1, 1, 16, 16) and arrays["x"].shape == (1, 3, 16, 16)
    assert float(arrays["y"].max()) == pytest.approx(1.0)


def test_ingest_single_capture_has_no_ground_truth(tmp_path):
    tifffile.imwrite(tmp_path / "hand.tif", np.random.default_rng(1).integers(0, 4000, (16, 16), dtype=np.uint16))
    outs = {s: str(tmp_path / f"{s}.h5") for s in ("train", "val", "test")}
    cfg = _ingest_cfg(tmp_path / "hand.tif", fmt="diffusercam")
    cfg["splits"] = {"train": 0, "val": 0, "test": 1}
    ingest_captures(_psf_file(tmp_path / "psf.h5", channels=1), cfg, "hand", outs, seed=0)
    arrays, _ = read_h5(outs["test"], contract="dataset")
    assert "x" not in arrays and arrays["y"].shape == (1, 1, 16, 16)


def test_ingest_size_mismatch_and_unpaired_names(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", np.ones((40, 40), np.uint16))
    outs = {s: str(tmp_path / f"{s}.h5") for s in ("train", "val", "test")}
    cfg = {**_ingest_cfg(tmp_path / "big.tif", fmt="diffusercam"), "splits": {"train": 0, "val": 0, "test": 1}}
    with pytest.raises(BadInputError, match=r"big.tif: capture is \(40, 40\).*sensor is \(16, 16\)"):
        ingest_captures(_psf_file(tmp_path / "psf.h5", channels=1), cfg, "x", outs, seed=0)
    for sub, name in (("measurements", "a"), ("references", "b")):
        (tmp_path / "p" / sub).mkdir(parents=True)
        tifffile.imwrite(tmp_path / "p" / sub / f"{name}.tif", np.ones((4, 4), np.uint16))
    with pytest.raises(BadInputError, match="do not pair up"):
        find_pairs("pairs", str(tmp_path / "p"))
    with pytest.raises(BadInputError, match="unknown capture format"):
        find_pairs("no_such_layout", str(tmp_path / "p"))


def test_ingest_bad_inputs_name_the_folder_file_or_key(tmp_path):
    """An empty references/ folder, an 8-bit capture declared 16-bit and splits larger than the
    source each fail naming what to fix, before any file is written."""
    outs = {s: str(tmp_path / f"{s}.h5") for s in ("train", "val", "test")}
    psf = _psf_file(tmp_path / "psf.h5", size=16, channels=1)
    for sub in ("measurements", "references"):
        (tmp_path / "set" / sub).mkdir(parents=True)
    tifffile.imwrite(tmp_path / "set/measurements/a.tif", np.ones((16, 16), np.uint16))
    (tmp_path / "set/references/a.txt").write_text("not an image")
    with pytest.raises(BadInputError, match="set/references: reference folder holds no image"):
        ingest_captures(psf, _ingest_cfg(tmp_path / "set"), "real", outs, seed=0)

    import imageio.v3 as iio

    iio.imwrite(tmp_path / "hand8.png", np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8))
    cfg = {**_ingest_cfg(tmp_path / "hand8.png", fmt="diffusercam"), "splits": {"train": 0, "val": 0, "test": 1}}
    with pytest.raises(BadInputError, match="hand8.png: 8-bit file.*datasets.hand.captures.bit_depth says 16"):
        ingest_captures(psf, cfg, "hand", outs, seed=0)

    tifffile.imwrite(tmp_path / "hand.tif", np.random.default_rng(1).integers(0, 4000, (16, 16), dtype=np.uint16))
    cfg = _ingest_cfg(tmp_path / "hand.tif", fmt="diffusercam")
    cfg["splits"] = {"train": 0, "val": 0, "test": 5}
    with pytest.raises(BadInputError, match="config key datasets.hand.splits: splits ask for 5 images .* source has 1"):
        ingest_captures(psf, cfg, "hand", outs, seed=0)
    assert not any(Path(p).exists() for p in outs.values())


def test_folder_source_reads_bmp(tmp_path):
    """.bmp is listed among the image types, so a folder of bitmaps is a valid source."""
    import imageio.v3 as iio

    from thincam.data.sources import folder_images

    rgb = np.random.default_rng(3).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "a.bmp", rgb)
    iio.imwrite(tmp_path / "b.bmp", rgb[..., 0])
    source = folder_images(str(tmp_path), (12, 12))
    images = source[np.arange(len(source))]
    assert images.shape == (2, 3, 12, 12)
    np.testing.assert_allclose(images[0], np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-6)


def _frame_with_dark_corners(sigma, shape=(200, 240), seed=0):
    """A lensless-like frame: bright centre, smooth light reaching the corners unevenly (the
    DiffuserCam hand's corner means differ 5x), and Gaussian noise of std ``sigma`` everywhere."""
    rows, cols = np.indices(shape, dtype=np.float64)
    light = 0.02 + 0.03 * cols / shape[1] + 0.01 * rows / shape[0]  # a gradient across each corner
    light += 0.5 * np.exp(-((rows - shape[0] / 2) ** 2 + (cols - shape[1] / 2) ** 2) / (2 * 40.0**2))
    noise = sigma * np.random.default_rng(seed).standard_normal(shape)
    return (light + noise)[None]


@pytest.mark.parametrize("sigma", [0.0005, 0.004])
def test_corner_noise_sigma_known_answer(sigma):
    """Known answer: Gaussian noise of std sigma over a frame whose corners also carry a light
    gradient. The estimate is within 5% of sigma (1,200 corner pixels); the plain MAD of the same
    corners, which counts the light as noise, is not."""
    from thincam.data.ingest import MAD_TO_STD, corner_noise_sigma, corner_windows

    frame = _frame_with_dark_corners(sigma)
    assert corner_noise_sigma(frame) == pytest.approx(sigma, rel=0.05)
    corners = np.concatenate([w.ravel() for w in corner_windows(frame)])
    plain = MAD_TO_STD * np.median(np.abs(corners - np.median(corners)))
    assert plain > 1.5 * sigma  # why the estimator differences neighbours
    hot = frame.copy()
    hot[0, :3, :3] = 1.0  # a few hot pixels in a corner barely move the median
    assert corner_noise_sigma(hot) == pytest.approx(sigma, rel=0.08)


def test_prepared_capture_noise_follows_downsampling_and_peak(tmp_path):
    """prepare_capture reports the corner noise in the units of the capture it returns: area
    downsampling by d divides it by d, max-normalisation by the peak."""
    from thincam.data.ingest import prepare_capture

    sigma = 0.002
    frame = _frame_with_dark_corners(sigma)
    tifffile.imwrite(tmp_path / "c.tif", np.round(frame[0] * 65535).astype(np.uint16))
    capture = prepare_capture(
        tmp_path / "c.tif", bit_depth=16, background="corner", downsample=2, sensor_shape=(100, 120), channels=1
    )
    raw_peak = capture.y.max()  # 1 after normalisation; the peak it divided by is recovered below
    assert raw_peak == pytest.approx(1.0)
    from skimage.measure import block_reduce

    corners = np.concatenate([frame[0, :10, :12].ravel(), frame[0, :10, -12:].ravel(), frame[0, -10:, :12].ravel(), frame[0, -10:, -12:].ravel()])
    peak = block_reduce(np.clip(frame[0] - corners.mean(), 0, None), (2, 2), np.mean).max()
    assert capture.noise_sigma == pytest.approx(sigma / 2 / peak, rel=0.06)


def _diffusercam_dataset(tmp_path, normalise):
    """The committed hand capture ingested 20x downsampled (15x20) through the committed PSF."""
    from thincam.optics.calibrate import camera_psf

    repo = Path(__file__).resolve().parents[1]
    camera = {
        "kind": "capture", "channels": 1, "size": [15, 20], "pixel_pitch_um": 276.0, "seed": 0,
        "path": str(repo / "tests/data/diffusercam/psf_ds4.tif"), "dark_path": None, "bit_depth": 16,
        "background": "corner", "downsample": 20, "hot_pixel_sigma": 6.0, "center": False,
    }
    datasets, attrs = camera_psf(camera, where="test", key="cameras.lowres")
    psf = atomic_write_h5(tmp_path / "psf.h5", datasets, attrs, contract="psf")
    operator = {"kind": "lensless", "boundary": "linear", "pinv": {"kind": "tikhonov", "lam": 0.001, "iters": 10}}
    hand = {
        "camera": "lowres",
        "image_size": [12, 16],
        "captures": {
            "format": "diffusercam", "path": str(repo / "tests/data/diffusercam/hand_ds4.tif"),
            "bit_depth": 16, "background": "corner", "downsample": 20, "normalise": normalise,
        },
        "operator": operator,
        "splits": {"train": 0, "val": 0, "test": 1},
    }
    outs = {s: str(tmp_path / f"hand-{normalise}-{s}.h5") for s in ("train", "val", "test")}
    ingest_captures(str(psf), hand, "hand", outs, seed=0)
    return str(psf), operator, outs["test"]


def test_ingest_anchor_normalisation_and_noise_estimate(tmp_path):
    """normalise: anchor puts the 99.5th percentile of A+y at 1 and divides the noise estimate by
    the same factor; both normalisations record the estimate in the noise attribute."""
    import torch

    from thincam.data.h5io import json_attr
    from thincam.stages.common import load_operator

    psf, _, peak_file = _diffusercam_dataset(tmp_path, "peak")
    _, _, anchor_file = _diffusercam_dataset(tmp_path, "anchor")
    peak, peak_attrs = read_h5(peak_file, contract="dataset")
    anchor, anchor_attrs = read_h5(anchor_file, contract="dataset")
    assert float(peak["y"].max()) == pytest.approx(1.0)
    physics = load_operator(psf, json_attr(anchor_attrs, "operator"))
    with torch.no_grad():
        a_dagger_y = physics.A_dagger(torch.from_numpy(anchor["y"])).numpy()
    # A+ is 10 float32 CG steps: equivariant to the scale of y only up to the round-off of its
    # late iterations, which differs between scales (measured 1.3% here, 3e-6 at 60x80, 30 steps)
    assert np.percentile(a_dagger_y, 99.5) == pytest.approx(1.0, rel=0.03)
    factor = float(peak["y"].max() / anchor["y"].max())
    sigma_peak = json_attr(peak_attrs, "noise")["gaussian_sigma_estimate"]
    sigma_anchor = json_attr(anchor_attrs, "noise")["gaussian_sigma_estimate"]
    assert sigma_anchor == pytest.approx(sigma_peak / factor, rel=1e-5)
    assert anchor_attrs["normalise"] == "anchor" and json_attr(anchor_attrs, "noise")["n_captures"] == 1


def test_simulation_in_gray_with_noise_from_the_capture(tmp_path):
    """A 1-channel camera gets gray scenes (Rec. 601 luminance), and noise.gaussian_sigma_from
    takes sigma from the capture file's estimate, recorded in the noise attribute."""
    from thincam.data.h5io import json_attr

    psf, operator, hand_file = _diffusercam_dataset(tmp_path, "anchor")
    estimate = json_attr(read_h5(hand_file, names=[])[1], "noise")["gaussian_sigma_estimate"]
    sim = {
        "camera": "lowres", "image_size": [12, 16], "source": {"kind": "skimage_rgb_crops", "n_images": 6},
        "operator": operator, "noise": {"poisson_gain": 0.0, "gaussian_sigma_from": "hand", "bit_depth": 16},
        "splits": {"train": 4, "val": 1, "test": 1},
    }
    outs = {s: str(tmp_path / f"sim-{s}.h5") for s in ("train", "val", "test")}
    simulate_measurements(psf, sim, "sim", outs, seed=0, noise_capture_path=hand_file)
    arrays, attrs = read_h5(outs["train"], contract="dataset")
    assert arrays["x"].shape == (4, 1, 12, 16) and arrays["y"].shape == (4, 1, 15, 20)
    rgb = sources.rgb_crops((12, 16), 6, seed=sources_seed("sim"))
    gray = np.einsum("c,nchw->nhw", sources.LUMA, rgb)[arrays["index"]]
    assert np.allclose(arrays["x"][:, 0], gray, atol=1e-6)
    noise = json_attr(attrs, "noise")
    assert noise["gaussian_sigma"] == estimate and noise["gaussian_sigma_from"]["dataset"] == "hand"
    with pytest.raises(BadInputError, match="no capture file given"):
        simulate_measurements(psf, sim, "sim", outs, seed=0)
    with pytest.raises(BadInputError, match="no gaussian_sigma_estimate"):
        simulate_measurements(psf, sim, "sim", outs, seed=0, noise_capture_path=outs["train"])


def sources_seed(name):
    from thincam.data.simulate import stable_seed

    return stable_seed(0, name, "source")
