"""Metrics: known answers, offline weight handling, evaluation of recon files against datasets."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.errors import BadInputError
from thincam.metrics import fidelity, perceptual
from thincam.metrics.perceptual import WEIGHT_FILES, PerceptualMetrics
from thincam.metrics.timing import measure_latency
from thincam.models.lpips import load_lpips
from thincam.stages.evaluate import COLUMNS, evaluate, evaluate_reconstruction

SRC = Path(__file__).resolve().parents[1] / "src"
LEARNED = ("lpips", "lpips_vgg", "dists", "musiq", "clipiqa")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On 2 shared cores, OpenMP threads spinning against other jobs made these small metric
    calls 3-10x slower than one thread (measured); restored for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- fidelity


def test_psnr_of_constant_offset_is_20_db():
    ref = np.full((2, 3, 8, 8), 0.4, np.float32)
    np.testing.assert_allclose(fidelity.psnr(ref + 0.1, ref), [20.0, 20.0], atol=1e-5)
    assert fidelity.psnr(ref, ref)[0] == np.inf


def test_ssim_known_answers():
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(fidelity.ssim(x, x), 1.0)
    # Two flat images: only the luminance term remains, (2ab + C1) / (a^2 + b^2 + C1), C1 = 0.01^2.
    a, b = np.full((1, 1, 16, 16), 0.5), np.full((1, 1, 16, 16), 0.4)
    np.testing.assert_allclose(fidelity.ssim(a, b), (0.4 + 1e-4) / (0.41 + 1e-4), rtol=1e-6)


def test_psnr_rejects_shape_mismatch():
    with pytest.raises(BadInputError, match=r"\(1, 3, 8, 8\) and \(1, 3, 8, 9\)"):
        fidelity.psnr(np.zeros((1, 3, 8, 8)), np.zeros((1, 3, 8, 9)))


def test_consistency_is_relative_residual():
    y = np.random.default_rng(1).random((3, 1, 5, 7))
    np.testing.assert_allclose(fidelity.consistency(1.1 * y, y), 0.1, rtol=1e-12)
    np.testing.assert_allclose(fidelity.consistency(y, y), 0.0)
    y[2] = 0
    with pytest.raises(BadInputError, match=r"\[2\] are all zero"):
        fidelity.consistency(y, y)


# ---------------------------------------------------------------- perceptual


@pytest.fixture(scope="module")
def metrics_and_warnings(tmp_path_factory):
    """One metric set built from an empty weights dir (building costs seconds), and its warnings."""
    empty = tmp_path_factory.mktemp("no_weights")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = PerceptualMetrics(empty)
    return metrics, empty, [w for w in caught if "perceptual metrics" in str(w.message)]


@pytest.fixture
def metrics(metrics_and_warnings):
    return metrics_and_warnings[0]


def test_missing_weights_give_one_warning_naming_every_file(metrics_and_warnings):
    metrics, root, caught = metrics_and_warnings
    assert len(caught) == 1
    message = str(caught[0].message)
    for name, files in WEIGHT_FILES.items():
        for f in files:
            assert f"{name}: put {f.url} at {root / f.relpath}" in message
    assert set(metrics.missing) == set(LEARNED)
    assert not set(LEARNED) & set(metrics.available)


def test_missing_weights_leave_learned_metrics_nan(metrics):
    x = np.random.default_rng(2).random((2, 3, 32, 32)).astype(np.float32)
    out = metrics(x, x)
    for name in LEARNED:
        assert np.isnan(out[name]).all()
    assert set(out) == set(perceptual.COLUMNS)


def test_weight_free_known_answers(metrics):
    x = np.random.default_rng(3).random((1, 3, 40, 40)).astype(np.float32)
    out = metrics(x, x)
    np.testing.assert_allclose(out["gmsd"], 0.0, atol=1e-6)
    np.testing.assert_allclose(out["fsim"], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["vif"], 1.0, atol=1e-5)
    np.testing.assert_allclose(out["nlpd"], 0.0, atol=1e-6)
    assert np.isfinite(out["piqe"]).all()
    assert np.isnan(out["ms_ssim"]).all()  # 40 px is below its 161-px minimum side
    worse = metrics(np.clip(x + 0.2 * (x[:, :, ::-1] - x), 0, 1), x)
    assert (worse["gmsd"] > 0.01).all() and (worse["fsim"] < 0.99).all()


def test_ms_ssim_runs_on_large_enough_images(metrics):
    x = np.random.default_rng(4).random((1, 3, 161, 161)).astype(np.float32)
    np.testing.assert_allclose(metrics(x, x)["ms_ssim"], 1.0, atol=1e-5)


def test_no_reference_only_without_ground_truth_and_gray_input(metrics):
    x = np.random.default_rng(5).random((2, 1, 32, 32)).astype(np.float32)
    out = metrics(x)
    assert np.isfinite(out["piqe"]).all()
    for name in perceptual.FULL_REFERENCE:
        assert np.isnan(out[name]).all()
    assert np.isnan(metrics(x[..., :8, :8])["piqe"]).all()  # smaller than one 16x16 PIQE block
    with pytest.raises(BadInputError, match=r"\[N,1\|3,H,W\], got shape \(2, 2, 32, 32\)"):
        metrics(np.zeros((2, 2, 32, 32), np.float32))


def test_garbage_lpips_backbone_is_an_error_naming_it(tmp_path):
    path = tmp_path / WEIGHT_FILES["lpips"][0].relpath
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    hub_before = torch.hub.get_dir()
    with pytest.raises(BadInputError, match=f"lpips: cannot load its weights from {path}"):
        PerceptualMetrics(tmp_path)
    assert torch.hub.get_dir() == hub_before


def test_wrong_clip_file_is_rejected_before_any_download(tmp_path):
    path = tmp_path / WEIGHT_FILES["clipiqa"][0].relpath
    path.parent.mkdir(parents=True)
    path.write_bytes(b"some other model")
    with pytest.raises(BadInputError, match=f"{path}: SHA-256 differs"):
        PerceptualMetrics(tmp_path)


def test_dists_weights_are_checked_then_loaded(tmp_path, monkeypatch):
    """Plumbing of the DISTS loader (random VGG features, never reported): pyiqa alone would load
    a file with other keys non-strictly and keep random alpha/beta."""
    from types import SimpleNamespace

    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    monkeypatch.setattr(
        torchvision.models,
        "vgg16",
        lambda weights=None: SimpleNamespace(features=make_layers(cfgs["D"])),
    )
    # LPIPS(vgg) reads the same VGG file, a stand-in here: not this test's subject.
    monkeypatch.setitem(perceptual._BUILDERS, "lpips_vgg", lambda paths, device: lambda a, b: torch.zeros(len(a)))
    vgg, dists = (tmp_path / f.relpath for f in WEIGHT_FILES["dists"])
    for path in (vgg, dists):
        path.parent.mkdir(parents=True, exist_ok=True)
    vgg.write_bytes(b"stands in for the VGG file, which the patched builder does not read")
    torch.save({"params": torch.ones(3)}, dists)
    with pytest.raises(BadInputError, match=f"{dists}: not a DISTS weights file"):
        PerceptualMetrics(tmp_path)
    torch.save(
        {"alpha": torch.full((1, 1475, 1, 1), 0.5), "beta": torch.full((1, 1475, 1, 1), 0.25)},
        dists,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = PerceptualMetrics(tmp_path)
    assert "dists" in metrics.available
    assert (metrics._metrics["dists"].net.alpha == 0.5).all()
    x = np.random.default_rng(9).random((1, 3, 32, 32)).astype(np.float32)
    assert metrics(x, x)["dists"][0] == pytest.approx(0.0, abs=1e-5)


def test_weight_file_names_match_the_libraries():
    """The README's file list and the paths the libraries read must not drift apart."""
    from pyiqa.archs import dists_arch, musiq_arch
    from pyiqa.archs.clip_model import _MODELS
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    urls = {f.url for files in WEIGHT_FILES.values() for f in files}
    assert urls == {
        AlexNet_Weights.IMAGENET1K_V1.url,
        VGG16_Weights.IMAGENET1K_V1.url,
        dists_arch.default_model_urls["url"],
        musiq_arch.default_model_urls["koniq10k"],
        _MODELS["RN50"],
    }
    for files in WEIGHT_FILES.values():
        for f in files:
            assert f.relpath.endswith("/" + f.url.rsplit("/", 1)[1])


def _random_trunk(net: str) -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision trunk as its checkpoint stores it (features.* only: all
    LPIPS reads, and VGG-16's 120M classifier weights would only slow the test)."""
    import torchvision
    from torchvision.models.vgg import cfgs, make_layers

    features = torchvision.models.alexnet().features if net == "alex" else make_layers(cfgs["D"])
    return {f"features.{key}": value for key, value in features.state_dict().items()}


@pytest.mark.parametrize("name, net", [("lpips", "alex"), ("lpips_vgg", "vgg")])
def test_lpips_backbone_is_read_from_weights_dir(tmp_path, name, net):
    """Plumbing only (random trunk weights, never reported): the documented path is the one read,
    into every layer (strictly), and identical images are at distance 0."""
    path = tmp_path / WEIGHT_FILES[name][0].relpath
    path.parent.mkdir(parents=True)
    trunk = _random_trunk(net)
    torch.save(trunk, path)
    hub_before = torch.hub.get_dir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = PerceptualMetrics(tmp_path)  # would try (and fail) to download if it looked elsewhere
    assert name in metrics.available and name not in metrics.missing
    assert torch.hub.get_dir() == hub_before
    last = max(int(key.split(".")[1]) for key in trunk)  # the trunk's last conv layer
    loaded = dict(load_lpips(tmp_path, net=net).net.named_parameters())
    assert any(torch.equal(p, trunk[f"features.{last}.weight"]) for p in loaded.values())
    x = np.random.default_rng(6).random((2, 3, 32, 32)).astype(np.float32)
    out = metrics(x, x)
    np.testing.assert_allclose(out[name], 0.0, atol=1e-6)
    assert (metrics(x, x[::-1])[name] > 0).all()


def test_vgg_lpips_without_its_trunk_is_missing_with_a_warning(tmp_path):
    """The AlexNet trunk alone: LPIPS(vgg) is an empty column and the warning names its file."""
    alex = tmp_path / WEIGHT_FILES["lpips"][0].relpath
    alex.parent.mkdir(parents=True)
    torch.save(_random_trunk("alex"), alex)
    with pytest.warns(UserWarning, match="lpips_vgg") as caught:
        metrics = PerceptualMetrics(tmp_path)
    vgg = tmp_path / WEIGHT_FILES["lpips_vgg"][0].relpath
    assert any(f"lpips_vgg: put {WEIGHT_FILES['lpips_vgg'][0].url} at {vgg}" in str(w.message) for w in caught)
    assert metrics.missing["lpips_vgg"] == [vgg] and "lpips" in metrics.available
    x = np.random.default_rng(7).random((1, 3, 32, 32)).astype(np.float32)
    out = metrics(x, x)
    assert np.isnan(out["lpips_vgg"]).all() and out["lpips"][0] == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------- timing


def test_measure_latency_is_median_after_warmup():
    durations = iter([0.3, 0.01, 0.05, 0.02])  # the first call is warm-up and must not count
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(durations))

    median, peak = measure_latency(fn, warmup=1, repeats=3)
    assert len(calls) == 4
    assert 0.02 <= median < 0.045
    assert peak > 0
    with pytest.raises(ValueError, match="repeats >= 1"):
        measure_latency(fn, repeats=0)


def test_measure_latency_stops_repeating_a_slow_call():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.03)

    median, _ = measure_latency(fn, warmup=0, repeats=5, min_timed_s=0.05)
    assert len(calls) == 2  # 0.03 s, then 0.06 s >= 0.05 s: done
    assert median >= 0.03
    calls.clear()
    measure_latency(fn, warmup=0, repeats=5)
    assert len(calls) == 5  # no budget: every repeat


def test_cpu_peak_memory_is_that_of_the_calls_without_torch():
    """The subprocess is forked from this large pytest process, whose peak must not leak in."""
    code = (
        "import sys, numpy as np\n"
        "from thincam.metrics.timing import measure_latency\n"
        "big = np.ones(300 * 2**20 // 8); big.sum(); del big  # an earlier peak, not the calls'\n"
        "_, peak = measure_latency(lambda: np.ones(96 * 2**20 // 8).sum(), warmup=0, repeats=1)\n"
        "print(peak, 'torch' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    peak, torch_loaded = out.stdout.split()
    assert 96 <= float(peak) < 96 + 150
    assert torch_loaded == "False"


# ---------------------------------------------------------------- evaluate


def pool2(x: torch.Tensor) -> torch.Tensor:
    """A toy camera: sum over 2x2 blocks."""
    return torch.nn.functional.avg_pool2d(x, 2) * 4


def write_pair(tmp_path, n=3, size=32, gt=True, recon_dataset="faces", offset=0.1, latency=None):
    rng = np.random.default_rng(7)
    x = (0.8 * rng.random((n, 3, size, size))).astype(np.float32)
    y = pool2(torch.from_numpy(x)).numpy()
    index = np.arange(10, 10 + n, dtype=np.int64)
    data = {"y": y, "index": index} | ({"x": x} if gt else {})
    data_path = atomic_write_h5(
        tmp_path / "data.h5",
        data,
        {
            "dataset": "faces",
            "camera": "dots",
            "split": "test",
            "operator": {"kind": "lensless"},
            "noise": {},
        },
        contract="dataset",
    )
    latency = np.array([0.5, 0.1, 0.3][:n]) if latency is None else latency
    recon_path = atomic_write_h5(
        tmp_path / "recon.h5",
        {"xhat": x + np.float32(offset), "latency_s": latency, "index": index},
        {
            "dataset": recon_dataset,
            "method": "wiener",
            "variant": "k1e-2",
            "params": {"K": 0.01},
            "peak_mem_mb": 12.0,
            "device": "cpu",
        },
        contract="recon",
    )
    return recon_path, data_path, x, y


def test_max_scaling_forgives_a_global_gain_but_not_consistency(tmp_path, metrics):
    """LenslessPiCam's convention: each image over its maximum, so xhat = 0.5 x scores as exact;
    unscaled, the same xhat is 20 log10(1 / (0.5 rms(x))) dB; consistency always sees xhat as is."""
    recon_path, data_path, x, y = write_pair(tmp_path, offset=0.0)
    half = dict(read_h5(recon_path, contract="recon")[0], xhat=0.5 * x)
    atomic_write_h5(recon_path, half, read_h5(recon_path, names=[])[1], contract="recon")
    scaled = evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics, scaling="max")
    plain = evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics)
    assert np.isinf(scaled["psnr"]).all() and np.allclose(scaled["gmsd"], 0.0, atol=1e-6)
    rms = np.sqrt(((0.5 * x) ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(plain["psnr"], -20 * np.log10(rms), rtol=1e-5)
    np.testing.assert_allclose(scaled["consistency"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(plain["consistency"], scaled["consistency"])
    dark = np.zeros((1, 3, 4, 4), np.float32)
    np.testing.assert_array_equal(fidelity.scale_per_image(dark, "max"), dark)  # no 0/0
    with pytest.raises(BadInputError, match="per-image scaling 'mean' is not one of"):
        fidelity.scale_per_image(dark, "mean")


def test_evaluate_known_answers_and_csv(tmp_path, metrics):
    recon_path, data_path, _, y = write_pair(tmp_path)
    df = evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics)
    assert list(df.columns) == COLUMNS
    assert df["index"].tolist() == [10, 11, 12]
    np.testing.assert_allclose(df["psnr"], 20.0, atol=1e-4)
    assert ((df["ssim"] > 0.5) & (df["ssim"] < 1)).all()
    # A(x + 0.1) - y = 0.4 everywhere on the sensor.
    expected = 0.4 * np.sqrt(y[0].size) / np.linalg.norm(y.reshape(3, -1), axis=1)
    np.testing.assert_allclose(df["consistency"], expected, rtol=1e-5)
    np.testing.assert_allclose(df["latency_s"], [0.5, 0.1, 0.3])
    assert df[["gmsd", "fsim", "piqe"]].notna().all().all()


def test_evaluate_without_ground_truth(tmp_path, metrics):
    recon_path, data_path, _, _ = write_pair(tmp_path, gt=False)
    df = evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics
    )
    for name in ("psnr", "ssim", *perceptual.FULL_REFERENCE):
        assert df[name].isna().all(), name
    assert df["piqe"].notna().all() and df["consistency"].notna().all()
    df = evaluate_reconstruction(recon_path, data_path, metrics=metrics)
    assert df["consistency"].isna().all() and df["piqe"].notna().all()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"recon_dataset": "flowers"}, "dataset attribute 'flowers' vs 'faces'"),
        ({"latency": np.array([0.1, 0.2])}, r"3 reconstructions, \(2,\) latencies"),
    ],
)
def test_evaluate_rejects_mismatched_recon(tmp_path, metrics, change, message):
    recon_path, data_path, _, _ = write_pair(tmp_path, **change)
    with pytest.raises(BadInputError, match=f"{recon_path} does not match {data_path}: {message}"):
        evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics
        )


def test_evaluate_rejects_other_images_and_shapes(tmp_path, metrics):
    recon_path, data_path, x, _ = write_pair(tmp_path)
    attrs = {
        "dataset": "faces",
        "method": "m",
        "variant": "v",
        "params": {},
        "peak_mem_mb": 1.0,
        "device": "cpu",
    }
    cases = [
        (
            {"xhat": x, "latency_s": np.ones(3), "index": np.array([10, 11, 99])},
            "image indices differ",
        ),
        (
            {"xhat": x[:2], "latency_s": np.ones(2), "index": np.arange(10, 12)},
            "2 reconstructions, .* for 3 images",
        ),
        (
            {"xhat": x[..., :16], "latency_s": np.ones(3), "index": np.arange(10, 13)},
            r"xhat has shape \(3, 3, 32, 16\)",
        ),
    ]
    for arrays, message in cases:
        atomic_write_h5(recon_path, arrays, attrs, contract="recon")
        with pytest.raises(
            BadInputError, match=f"{recon_path} does not match {data_path}: {message}"
        ):
            evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics
            )
    nan = x.copy()
    nan[1, 0, 0, 0] = np.nan
    atomic_write_h5(
        recon_path,
        {"xhat": nan, "latency_s": np.ones(3), "index": np.arange(10, 13)},
        attrs,
        contract="recon",
    )
    with pytest.raises(
        BadInputError, match=f"{recon_path}: xhat has non-finite values in images \\[1\\]"
    ):
        evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics
        )


def test_evaluate_rejects_operator_of_wrong_shape(tmp_path, metrics):
    recon_path, data_path, _, _ = write_pair(tmp_path)
    with pytest.raises(
        BadInputError, match=r"A\(xhat\) has shape \(3, 3, 32, 32\), measurement y \(3, 3, 16, 16\)"
    ):
        evaluate_reconstruction(recon_path, data_path, forward=lambda t: t, metrics=metrics
        )
    assert not (tmp_path / "m.csv").exists()


def test_lpips_plumbing_with_random_backbone(tmp_path, monkeypatch):
    """Exercises the LPIPS column end to end with a random network; such numbers are never reported."""
    import lpips

    def random_lpips(paths, device):
        net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
        return lambda a, b: net(a, b, normalize=True)

    monkeypatch.setitem(perceptual._BUILDERS, "lpips", random_lpips)
    weights = tmp_path / "weights"
    (weights / WEIGHT_FILES["lpips"][0].relpath).parent.mkdir(parents=True)
    (weights / WEIGHT_FILES["lpips"][0].relpath).write_bytes(b"present")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = PerceptualMetrics(weights)
    recon_path, data_path, _, _ = write_pair(tmp_path, offset=0.0)
    df = evaluate_reconstruction(recon_path, data_path, forward=pool2, metrics=metrics
    )
    np.testing.assert_allclose(df["lpips"], 0.0, atol=1e-6)
    assert df["dists"].isna().all()


def test_evaluate_builds_the_camera_operator(tmp_path):
    """Real thincam operator: a centred delta PSF with circular boundary is the identity."""
    n, size = 2, 32
    x = (0.8 * np.random.default_rng(8).random((n, 3, size, size))).astype(np.float32)
    psf = np.zeros((3, size, size), np.float32)
    psf[:, size // 2, size // 2] = 1.0
    psf_path = atomic_write_h5(
        tmp_path / "psf.h5", {"psf": psf}, {"source": "test"}, contract="psf"
    )
    operator = {
        "kind": "lensless",
        "boundary": "circular",
        "pinv": {"kind": "tikhonov", "lam": 0.01},
        "scene_shape": [size, size],
        "sensor_shape": [size, size],
    }
    data_path = atomic_write_h5(
        tmp_path / "data.h5",
        {"y": x, "index": np.arange(n)},
        {"dataset": "faces", "camera": "delta", "split": "test", "operator": operator, "noise": {}},
        contract="dataset",
    )
    recon_path = atomic_write_h5(
        tmp_path / "recon.h5",
        {"xhat": x + np.float32(0.1), "latency_s": np.ones(n), "index": np.arange(n)},
        {
            "dataset": "faces",
            "method": "wiener",
            "variant": "a",
            "params": {},
            "peak_mem_mb": 1.0,
            "device": "cpu",
            "split": "test",
        },
        contract="recon",
    )
    exact = atomic_write_h5(
        tmp_path / "exact.h5",
        {"xhat": x, "latency_s": np.ones(n), "index": np.arange(n)},
        {**read_h5(recon_path, names=[])[1], "variant": "exact"},
        contract="recon",
    )
    out_csv = tmp_path / "metrics" / "test.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = evaluate([recon_path, exact], data_path, psf_path, out_csv)
    # One CSV for the split: a row per (run, image), named by its run keys.
    assert list(df.columns[:5]) == ["dataset", "split", "method", "variant", "index"]
    assert df["variant"].tolist() == ["a"] * n + ["exact"] * n
    expected = 0.1 * np.sqrt(x[0].size) / np.linalg.norm(x.reshape(n, -1), axis=1)
    np.testing.assert_allclose(df["consistency"][:n], expected, rtol=1e-4)
    np.testing.assert_allclose(df["consistency"][n:], 0.0, atol=1e-5)
    written = pd.read_csv(out_csv, keep_default_na=False)
    assert (written["lpips"] == "").all() and (written["ms_ssim"] == "").all()
    assert not list(out_csv.parent.glob(".*.tmp"))
    with pytest.raises(BadInputError, match=r"runs \[\['wiener', 'a'\]\] are given more than once"):
        evaluate([recon_path, recon_path], data_path, psf_path, tmp_path / "twice.csv")
    assert not (tmp_path / "twice.csv").exists()
    atomic_write_h5(
        data_path,
        {"y": x, "index": np.arange(n)},
        {"dataset": "faces", "camera": "delta"},
        contract="dataset",
    )
    with pytest.raises(BadInputError, match=f"{data_path}: attribute 'operator' missing"):
        evaluate([recon_path], data_path, psf_path, tmp_path / "m.csv")
