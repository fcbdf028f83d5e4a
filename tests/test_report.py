"""Aggregation, paper tables and figures, on hand-made inputs with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from figure_layout import assert_readable_layout, drawn_texts
from matplotlib.figure import Figure

from thincam.data.atomic import write_csv_atomic
from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.errors import BadInputError
from thincam.report import figures, tables
from thincam.stages import report

SRC = Path(__file__).resolve().parents[1] / "src"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_modules_do_not_import_torch():
    code = (
        "import sys, thincam.report.tables, thincam.report.figures, thincam.stages.report\n"
        "print(sorted({'torch', 'pyiqa', 'diffusers', 'skimage'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- aggregate


def per_image_csv(path, psnr, latency, gmsd=None, lpips=None):
    n = len(psnr)
    nan = [np.nan] * n
    df = pd.DataFrame(
        {
            "index": range(n),
            "psnr": psnr,
            "ssim": [0.5] * n,
            "lpips": lpips or nan,
            "lpips_vgg": nan,
            "dists": nan,
            "musiq": nan,
            "clipiqa": nan,
            "gmsd": gmsd or nan,
            "consistency": [0.1] * n,
            "latency_s": latency,
        }
    )
    write_csv_atomic(df, path)
    return path


def meta(method, variant, **params):
    return {
        "dataset": "faces",
        "split": "test",
        "camera": "dots",
        "method": method,
        "variant": variant,
        "peak_mem_mb": 100.0,
        "device": "cpu",
        "params": params,
    }


def test_aggregate_known_means(tmp_path):
    a = per_image_csv(tmp_path / "a.csv", [20.0, 22.0, 30.0], [0.1, 0.5, 0.2], gmsd=[0.1, 0.2, 0.3])
    b = per_image_csv(tmp_path / "b.csv", [10.0, 14.0], [1.0, 3.0], gmsd=[0.4, np.nan])
    out = tmp_path / "tables" / "metrics.csv"
    df = tables.aggregate(
        [(str(a), per_image(a)), (str(b), per_image(b))],
        [meta("wiener", "k1", K=0.01), meta("admm", "it50", n_iter=50)],
    )
    write_csv_atomic(df, out)
    assert list(df.columns) == tables.CORE_COLUMNS + ["gmsd", "params"]
    rows = df.set_index("method")
    assert rows.loc["wiener", "psnr"] == pytest.approx(24.0)
    assert rows.loc["wiener", "latency_s"] == pytest.approx(0.2)  # median, not mean
    assert rows.loc["wiener", "gmsd"] == pytest.approx(0.2)
    assert rows.loc["admm", "psnr"] == pytest.approx(12.0)
    assert np.isnan(rows.loc["admm", "gmsd"])  # one image without it: no partial mean
    assert rows.loc["admm", "n_images"] == 2
    assert json.loads(rows.loc["wiener", "params"]) == {"K": 0.01}
    written = pd.read_csv(out, keep_default_na=False)
    assert (written["lpips"] == "").all() and (written["musiq"] == "").all()
    assert written["method"].tolist() == ["admm", "wiener"]
    assert out.read_text().splitlines()[0].startswith(",".join(tables.CORE_COLUMNS))


def per_image(path):
    return tables.check_per_image(pd.read_csv(path), str(path))


def split_csv(path, runs, dataset="faces", split="test"):
    """An evaluate CSV: {(method, variant): per-image CSV path} stacked with their run keys."""
    frames = [
        pd.read_csv(csv).assign(dataset=dataset, split=split, method=method, variant=variant)
        for (method, variant), csv in runs.items()
    ]
    table = pd.concat(frames, ignore_index=True)
    write_csv_atomic(table[tables.RUN_KEYS + [c for c in table.columns if c not in tables.RUN_KEYS]], path)
    return str(path)


def test_aggregate_names_bad_inputs(tmp_path):
    a = per_image_csv(tmp_path / "a.csv", [20.0], [0.1])
    pd.read_csv(a).drop(columns="consistency").to_csv(tmp_path / "short.csv", index=False)
    short = split_csv(tmp_path / "short_split.csv", {("wiener", "k1"): tmp_path / "short.csv"})
    with pytest.raises(
        BadInputError, match=r"short_split.csv \(faces/test/wiener/k1\): column\(s\) \['consistency'\] missing"
    ):
        report.read_split_metrics(short)
    pd.read_csv(a).to_csv(tmp_path / "no_keys.csv", index=False)
    with pytest.raises(BadInputError, match=r"no_keys.csv: column\(s\) \['dataset', 'split', 'method', 'variant'\] missing"):
        report.read_split_metrics(tmp_path / "no_keys.csv")
    with pytest.raises(
        BadInputError,
        match=r"runs \[\['faces', 'test', 'wiener', 'k1'\]\] appear more than once, in \[.*a.csv', .*a.csv'\]",
    ):
        table = per_image(a)
        tables.aggregate([(str(a), table), (str(a), table)], [meta("wiener", "k1"), meta("wiener", "k1")])
    with pytest.raises(BadInputError, match=r"metadata for .*a.csv lacks \['camera'\]"):
        tables.aggregate(
            [(str(a), per_image(a))],
            [{k: v for k, v in meta("wiener", "k1").items() if k != "camera"}],
        )


def test_split_metrics_keep_variant_names_as_text(tmp_path):
    """A variant named like a number ("1.0") stays the text the recon file holds."""
    a = per_image_csv(tmp_path / "a.csv", [20.0, 21.0], [0.1, 0.2])
    runs = report.read_split_metrics(split_csv(tmp_path / "s.csv", {("wiener", "1.0"): a, ("admm", "2"): a}))
    assert sorted(runs) == [("faces", "test", "admm", "2"), ("faces", "test", "wiener", "1.0")]
    assert runs[("faces", "test", "wiener", "1.0")]["psnr"].tolist() == [20.0, 21.0]


def write_recon_pair(tmp_path, recon_dataset="faces", n=4, size=16, gt=True, channels=3):
    rng = np.random.default_rng(0)
    x = rng.random((n, channels, size, size)).astype(np.float32)
    y = rng.random((n, channels, size + 8, size + 8)).astype(np.float32)
    data = {"y": y, "index": np.arange(n)} | ({"x": x} if gt else {})
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
    recons = []
    for k, name in enumerate(("wiener", "ddnm")):
        recons.append(
            atomic_write_h5(
                tmp_path / f"{name}.h5",
                {
                    "xhat": np.clip(x + 0.05 * (k + 1), 0, 1),
                    "latency_s": np.ones(n),
                    "index": np.arange(n),
                },
                {
                    "dataset": recon_dataset,
                    "split": "test",
                    "method": name,
                    "variant": "v",
                    "params": {"b": 2, "a": 1},
                    "peak_mem_mb": 7.5,
                    "device": "cpu",
                },
                contract="recon",
            )
        )
    return data_path, recons


def test_read_recon_meta(tmp_path):
    data_path, recons = write_recon_pair(tmp_path)
    assert report.read_recon_meta(recons[0], data_path) == {
        "dataset": "faces",
        "split": "test",
        "camera": "dots",
        "method": "wiener",
        "variant": "v",
        "peak_mem_mb": 7.5,
        "device": "cpu",
        "params": '{"a": 1, "b": 2}',
    }
    other = tmp_path / "other"
    other.mkdir()
    _, bad = write_recon_pair(other, recon_dataset="flowers")
    with pytest.raises(
        BadInputError, match=f"{bad[0]} reconstructs dataset 'flowers' \\(test\\) but {data_path} is 'faces' \\(test\\)"
    ):
        report.read_recon_meta(bad[0], data_path)


# ---------------------------------------------------------------- paper tables


def metrics_table(lpips=True, extras=True, gt=True):
    """A metrics.csv-like frame with known best variants."""
    runs = [
        ("wiener", "k1", {"K": 0.01}, 22.0, 0.40, 0.003),
        ("admm", "it100", {"n_iter": 100}, 23.0, 0.35, 0.2),
        ("dps", "z1", {"zeta": 1.0}, 21.0, 0.30, 0.6),
        ("dps", "z3", {"zeta": 3.0}, 22.5, 0.25, 0.6),
        ("ddnm", "svd50", {"steps": 50}, 26.0, 0.20, 0.15),
        ("nsdd", "main", {}, 25.5, 0.21, 0.01),
        ("nsdd_full", "main", {}, 24.5, 0.24, 0.01),
        ("unet", "main", {}, 23.5, 0.23, 0.002),
        ("dmdiff", "alpha0.5", {"alpha": 0.5}, 24.0, 0.22, 0.3),
        ("dmdiff", "alpha0.0", {"alpha": 0.0}, 25.0, 0.26, 0.3),
        ("dmdiff", "alpha1.0", {"alpha": 1.0}, 23.0, 0.18, 0.3),
        ("dmdiff", "no_svda", {}, 22.0, 0.30, 0.3),
        ("dmdiff", "svda_no_fwhm", {}, 22.5, 0.28, 0.3),
        ("dmdiff", "no_negative", {}, 23.0, 0.27, 0.3),
        ("dmdiff", "full", {}, 24.0, 0.22, 0.3),
    ]
    rows = []
    # Validation runs of the methods with several variants: on val z1 is the better DPS,
    # on test z3 is, so a table that chooses on val must show z1.
    val_runs = [("dps", "z1", {"zeta": 1.0}, 23.0, 0.20, np.nan), ("dps", "z3", {"zeta": 3.0}, 22.0, 0.30, np.nan)]
    for split, (method, variant, params, psnr, score, latency) in [("test", r) for r in runs] + [
        ("val", r) for r in val_runs
    ]:
        rows.append(
            {
                "dataset": "faces",
                "split": split,
                "camera": "dots",
                "method": method,
                "variant": variant,
                "n_images": 8,
                "psnr": psnr if gt else np.nan,
                "ssim": psnr / 30 if gt else np.nan,
                "lpips": score if lpips and gt else np.nan,
                "lpips_vgg": np.nan,
                "dists": np.nan,
                "musiq": 100 * score,
                "clipiqa": np.nan,
                "consistency": score / 10,
                "latency_s": latency,
                "peak_mem_mb": 50.0,
                "device": "cpu",
                "gmsd": score / 2 if extras and gt else np.nan,
                "vif": np.nan,
                "params": json.dumps(params),
            }
        )
    rows.append(dict(rows[0], dataset="flowers", psnr=99.0))
    return pd.DataFrame(rows)


def test_nsdd_main_table(tmp_path):
    table = tables.nsdd_main_table(metrics_table(), "faces")
    assert list(table.columns) == [
        "Method",
        "Variant",
        "PSNR",
        "SSIM",
        "LPIPS (AlexNet)",
        "consistency",
        "time (s)",
        "memory (MB)",
    ]
    assert table["Method"].tolist() == ["Wiener", "ADMM", "DPS", "DDNM+", "NSDD"]
    assert table.loc[2, "Variant"] == "z1"  # lower LPIPS on val, although z3 is better on test
    assert table.loc[0, "PSNR"] == 22.0 and table.loc[4, "time (s)"] == 0.01
    chosen = tables.nsdd_main_table(metrics_table(), "faces", variants={"dps": "z3"})
    assert chosen.loc[2, "Variant"] == "z3"
    no_val = metrics_table()
    with pytest.raises(BadInputError, match="dps has 2 variants but no val results"):
        tables.nsdd_main_table(no_val[no_val["split"] == "test"], "faces")
    with pytest.raises(BadInputError, match="no dps variant 'z9'"):
        tables.nsdd_main_table(metrics_table(), "faces", variants={"dps": "z9"})


def test_nsdd_ablation_table():
    table = tables.nsdd_ablation_table(metrics_table(), "faces")
    assert table["Ablation"].tolist() == ["DDNM+ (teacher)", "NSDD (null space)", "NSDD (full image)"]
    assert table["PSNR"].tolist() == [26.0, 25.5, 24.5]
    df = metrics_table()
    with pytest.raises(BadInputError, match="needs nsdd and nsdd_full"):
        tables.nsdd_ablation_table(df[df["method"] != "nsdd_full"], "faces")


def test_nsdd_table_falls_back_to_a_named_weight_free_metric():
    table = tables.nsdd_main_table(metrics_table(lpips=False), "faces")
    assert "GMSD" in table.columns and "LPIPS (AlexNet)" not in table.columns
    table = tables.nsdd_main_table(metrics_table(lpips=False, extras=False), "faces")
    assert list(table.columns) == [
        "Method",
        "Variant",
        "PSNR",
        "SSIM",
        "consistency",
        "time (s)",
        "memory (MB)",
    ]


def test_tables_report_and_choose_by_the_configured_lpips_network():
    """metrics.lpips: vgg puts LPIPS (VGG) in the tables and chooses variants on val by it (there
    it prefers DPS z3, AlexNet z1); without VGG values the table falls back to a weight-free
    metric, never to the AlexNet column under a VGG convention."""
    df = metrics_table()
    df["lpips_vgg"] = 0.5 - df["lpips"]
    vgg = tables.nsdd_main_table(df, "faces", lpips_net="vgg")
    assert "LPIPS (VGG)" in vgg.columns and "LPIPS (AlexNet)" not in vgg.columns
    assert vgg.loc[2, "Variant"] == "z3"
    assert tables.nsdd_main_table(df, "faces").loc[2, "Variant"] == "z1"
    alex_only = tables.nsdd_main_table(metrics_table(), "faces", lpips_net="vgg")
    assert "GMSD" in alex_only.columns and not {"LPIPS (AlexNet)", "LPIPS (VGG)"} & set(alex_only.columns)
    for table in (
        tables.dmdiff_main_table(df, "faces", lpips_net="vgg"),
        tables.alpha_sweep_table(df, "faces", lpips_net="vgg"),
        tables.nsdd_ablation_table(df, "faces", lpips_net="vgg"),
    ):
        assert "LPIPS (VGG)" in table.columns and "LPIPS (AlexNet)" not in table.columns


def test_caption_names_the_lpips_network_and_the_scaling():
    from types import SimpleNamespace

    import jinja2

    from thincam.registry import metric_conventions

    sentence = metric_conventions("vgg", "max")
    assert "LPIPS (VGG)" in sentence and "divided by its own maximum" in sentence
    assert "LPIPS (AlexNet)" in metric_conventions("alex", "none")
    template = (Path(__file__).resolve().parents[1] / "report" / "metrics.rst").read_text()
    snakemake = SimpleNamespace(params=SimpleNamespace(conventions=sentence), config={"datasets": {}})
    caption = jinja2.Template(template).render(snakemake=snakemake)
    assert caption.rstrip().endswith(sentence)


def test_dmdiff_tables(tmp_path):
    df = metrics_table()
    main = tables.dmdiff_main_table(df, "faces")
    write_csv_atomic(main, tmp_path / "dmdiff.csv")
    assert list(main.columns) == [
        "Method",
        "Variant",
        "PSNR",
        "SSIM",
        "LPIPS (AlexNet)",
        "DISTS",
        "MUSIQ",
        "CLIP-IQA",
        "GMSD",
        "consistency",
        "time (s)",
    ]
    # Both papers on one camera: the NSDD paper's teacher and student above DMDiff.
    assert main["Method"].tolist() == ["Wiener", "UNet (supervised)", "DDNM+", "NSDD"] + ["DMDiff"] * 7
    assert main.loc[main["Method"] == "NSDD", "time (s)"].item() == 0.01
    assert main["DISTS"].isna().all()
    written = pd.read_csv(tmp_path / "dmdiff.csv", keep_default_na=False)
    assert (written["DISTS"] == "").all()
    # DDNM+ with several variants: the row is the one chosen on val, not the best on test.
    more = df[(df["method"] == "ddnm")].assign(variant="s20", psnr=27.0, lpips=0.1)
    val = pd.concat([more, df[df["method"] == "ddnm"]]).assign(split="val")
    val.loc[val["variant"] == "s20", "lpips"] = 0.5
    chosen = tables.dmdiff_main_table(pd.concat([df, more, val]), "faces")
    assert chosen.loc[chosen["Method"] == "DDNM+", "Variant"].tolist() == ["svd50"]

    alpha = tables.alpha_sweep_table(df, "faces")
    assert alpha["alpha"].tolist() == [0.0, 0.5, 1.0]
    assert alpha["PSNR"].tolist() == [25.0, 24.0, 23.0]

    ablation = tables.dmdiff_ablation_table(df, "faces")
    assert ablation["Ablation"].tolist() == list(tables.ABLATION_VARIANTS)
    assert ablation["PSNR"].tolist() == [22.0, 22.5, 23.0, 24.0]
    asks = {"no_svda": True, "svda_no_fwhm": True, "no_negative": False, "full": True}
    for good, verdict in ((True, "used"), (False, "rejected")):
        quality = {"pseudo_psnr_db": 31.234, "clean_psnr_db": 15.0, "min_gain_db": 1.0, "good_enough": good}
        pseudo = tables.dmdiff_ablation_table(df, "faces", pseudo={"quality": quality, "asks": asks})
        assert pseudo["pseudo pairs"].tolist() == [verdict, verdict, "no", verdict]
        assert pseudo[tables.PSEUDO_PSNR].tolist()[3] == 31.23 and np.isnan(pseudo[tables.PSEUDO_PSNR][2])
        assert pseudo[tables.CLEAN_PSNR].tolist()[0] == 15.0
    with pytest.raises(BadInputError, match=r"no pseudo-pair request recorded for dmdiff variant\(s\) \['full'\]"):
        tables.dmdiff_ablation_table(df, "faces", pseudo={"quality": quality, "asks": {k: v for k, v in asks.items() if k != "full"}})
    with pytest.raises(
        BadInputError, match=r"dmdiff variant\(s\) \['no_lora'\] not in the metrics table"
    ):
        tables.dmdiff_ablation_table(df, "faces", variants={"no LoRA": "no_lora"})
    with pytest.raises(BadInputError, match="no test results for dataset 'metalens'"):
        tables.dmdiff_main_table(df, "metalens")


# ---------------------------------------------------------------- figures
#
# Inputs shaped like the default config's: 32 px scenes, its method and variant names, latencies
# and scores in the ranges the demo measures. Every figure is checked for its layout.

NSDD_RUNS = [  # method, variant, params, PSNR, LPIPS, latency (s)
    ("wiener", "K1e-2", {"K": 0.01}, 21.4, 0.412, 0.0011),
    ("wiener", "K1e-3", {"K": 0.001}, 19.8, 0.468, 0.0011),
    ("admm", "it100", {"n_iter": 100}, 22.9, 0.351, 0.21),
    ("dps", "zeta1", {"steps": 100, "zeta": 1.0}, 20.7, 0.302, 0.62),
    ("dps", "zeta3", {"steps": 100, "zeta": 3.0}, 21.9, 0.281, 0.63),
    ("dps", "zeta10", {"steps": 100, "zeta": 10.0}, 20.1, 0.335, 0.62),
    ("ddnm", "s20", {"steps": 20}, 24.8, 0.231, 0.15),
    ("ddnm", "s50", {"steps": 50}, 25.6, 0.204, 0.36),
    ("ddnm", "s100", {"steps": 100}, 25.9, 0.198, 0.71),
    ("nsdd", "main", {}, 25.1, 0.215, 0.012),
    ("nsdd_full", "main", {}, 23.2, 0.262, 0.012),
    # DeepInverse's samplers on the same prior
    ("deepinv_dps", "w3", {"steps": 100, "weight": 3.0}, 19.9, 0.341, 1.1),
    ("diffpir", "s20", {"steps": 20}, 24.1, 0.236, 0.21),
    ("ddrm", "s20", {"steps": 20}, 25.2, 0.221, 0.2),
    ("ddrm", "s50", {"steps": 50}, 25.5, 0.212, 0.5),
]
DMDIFF_RUNS = [
    ("wiener", "K1e-2", {"K": 0.01}, 20.2, 0.45, 0.0012),
    ("unet", "main", {}, 23.5, 0.25, 0.0021),
    ("ddnm", "s20", {"steps": 20, "form": "tikhonov"}, 24.6, 0.24, 0.45),
    ("ddnm", "s50", {"steps": 50, "form": "tikhonov"}, 24.9, 0.23, 1.1),
    ("nsdd", "main", {}, 24.4, 0.25, 0.021),
    ("dmdiff", "full", {"model": "full"}, 23.1, 0.27, 0.31),
    ("dmdiff", "no_svda", {"model": "no_svda"}, 23.1, 0.28, 0.31),
    ("dmdiff", "svda_no_fwhm", {"model": "svda_no_fwhm"}, 23.0, 0.28, 0.31),
    ("dmdiff", "no_negative", {"model": "no_negative"}, 24.7, 0.30, 0.31),
    ("dmdiff", "alpha0", {"model": "full", "alpha": 0.0}, 23.0, 0.33, 0.31),
    ("dmdiff", "alpha0.5", {"model": "full", "alpha": 0.5}, 23.4, 0.30, 0.31),
    ("dmdiff", "alpha0.75", {"model": "full", "alpha": 0.75}, 23.3, 0.28, 0.31),
    ("dmdiff", "alpha1.0", {"model": "full", "alpha": 1.0}, 23.1, 0.27, 0.31),
    ("dmdiff", "alpha1.05", {"model": "full", "alpha": 1.05}, 23.0, 0.26, 0.31),
]
DEFAULT_SWEEPS = {"wiener": "K", "dps": "zeta", "ddnm": "steps"}


def default_metrics(lpips=True):
    """metrics.csv of the default config: faces_phlatcam (NSDD) and natural_metalens (DMDiff).

    The val split, where tables choose, has the methods with several variants; there DDNM+ s50
    beats s100, which is better on test, and on the metalens s20 beats s50: figures must show
    what the table chose.
    """
    val = [
        (m, v, p, psnr, score - 0.01 if v == "s50" else score, np.nan)
        for m, v, p, psnr, score, _ in NSDD_RUNS
        if m in ("wiener", "dps", "ddnm", "ddrm")
    ]
    metalens_val = [
        (m, v, p, psnr, score - 0.02 if v == "s20" else score, np.nan)
        for m, v, p, psnr, score, _ in DMDIFF_RUNS
        if m == "ddnm"
    ]
    rows = []
    for dataset, split, runs in (
        ("faces_phlatcam", "test", NSDD_RUNS),
        ("faces_phlatcam", "val", val),
        ("natural_metalens", "test", DMDIFF_RUNS),
        ("natural_metalens", "val", metalens_val),
    ):
        for method, variant, params, psnr, score, latency in runs:
            rows.append(
                {
                    "dataset": dataset,
                    "split": split,
                    "camera": "dots" if dataset == "faces_phlatcam" else "metalens",
                    "method": method,
                    "variant": variant,
                    "n_images": 16,
                    "psnr": psnr,
                    "ssim": psnr / 32,
                    "lpips": score if lpips else np.nan,
                    "lpips_vgg": np.nan,
                    "dists": np.nan,
                    "musiq": np.nan,
                    "clipiqa": np.nan,
                    "consistency": 0.01,
                    "latency_s": latency,
                    "peak_mem_mb": 120.0,
                    "device": "cpu",
                    "gmsd": score / 3,
                    "params": json.dumps(params),
                }
            )
    return pd.DataFrame(rows)


def scenes(n=4, size=32):
    """Clean 32 px scenes, a lensless-looking measurement of each, and a reconstruction maker."""
    from scipy.ndimage import gaussian_filter

    from thincam.data.sources import rgb_crops

    x = rgb_crops((size, size), n_images=n, seed=0)
    rng = np.random.default_rng(1)
    y = sum(np.roll(x, tuple(rng.integers(-12, 12, 2)), axis=(-2, -1)) for _ in range(8)) / 8

    def recon(blur, noise, seed):
        noisy = gaussian_filter(x, (0, 0, blur, blur)) + noise * np.random.default_rng(
            seed
        ).standard_normal(x.shape)
        return noisy.astype(np.float32)

    return x, y.astype(np.float32), recon


def per_image_scores(xhat, x, lpips=True):
    err = ((np.clip(xhat, 0, 1) - x) ** 2).mean(axis=(1, 2, 3))
    nan = np.full(len(x), np.nan)
    return pd.DataFrame(
        {
            "index": np.arange(len(x)),
            "psnr": -10 * np.log10(err),
            "ssim": 1 - 5 * err,
            "lpips": 3 * np.sqrt(err) if lpips else nan,
            "lpips_vgg": nan,
            "dists": nan,
            "musiq": nan,
            "clipiqa": nan,
            "consistency": err / 10,
            "latency_s": np.full(len(x), 0.1),
            "gmsd": np.sqrt(err),
        }
    )


def assert_figure(png: Path):
    assert png.read_bytes()[:8] == PNG_MAGIC
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not list(png.parent.glob(".*.tmp"))


def texts_of(fig):
    return [text.get_text() for text, _ in drawn_texts(fig)]


def test_layout_check_catches_overlap_and_clipping():
    fig = Figure(figsize=(2, 1))
    fig.text(0.1, 0.5, "measurement")
    fig.text(0.2, 0.5, "wiener/K1e-2")
    with pytest.raises(AssertionError, match="'measurement' .* overlaps 'wiener/K1e-2'"):
        assert_readable_layout(fig)
    fig = Figure(figsize=(2, 1))
    fig.text(0.9, 0.5, "a label cut off at the edge")
    with pytest.raises(AssertionError, match="leaves the figure"):
        assert_readable_layout(fig)


@pytest.mark.parametrize("lpips, named", [(True, "LPIPS (AlexNet) ↓"), (False, "GMSD (weight-free) ↓")])
def test_quality_vs_time_layout(tmp_path, lpips, named):
    png = tmp_path / "quality_vs_time_faces_phlatcam.png"
    fig = figures.quality_vs_time(default_metrics(lpips), "faces_phlatcam", png)
    assert_figure(png)
    assert_readable_layout(fig)
    ax = fig.axes[0]
    assert ax.get_ylabel() == named and ax.get_xscale() == "log"
    shown = set(texts_of(fig))
    legend = {"Wiener", "ADMM", "DPS", "DDNM+", "NSDD", "NSDD (full image)", "other variants"}
    legend |= {"DPS (deepinv)", "DiffPIR (deepinv)", "DDRM (deepinv)"}
    assert legend <= shown
    # DDNM+ and DDRM steps trade time for quality: each labelled (none dropped for want of room);
    # the variants of the other methods share a latency and are hollow points, unlabelled
    assert {"s20", "s50", "s100"} <= shown and not {"zeta1", "K1e-3", "main", "w3"} & shown
    labels = [t for t in texts_of(fig) if t in {"s20", "s50", "s100"}]
    assert len(labels) == 5  # s20, s50, s100 of DDNM+ and s20, s50 of DDRM
    # nine methods, nine distinct colour and marker pairs
    styles = {(str(c.get_facecolor()[0]), c.get_paths()[0].vertices.tobytes()) for c in fig.axes[0].collections if not c.get_label().startswith("_")}
    assert len(styles) == 9
    # filled: what a table reports, chosen on val by default (DDNM+ s50, though s100 wins on test)
    scale = 1 if lpips else 1 / 3
    assert filled_points(fig)["DPS"] == [[0.63, pytest.approx(0.281 * scale)]]
    assert filled_points(fig)["DDNM+"] == [[0.36, pytest.approx(0.204 * scale)]]
    fig = figures.quality_vs_time(
        default_metrics(lpips), "faces_phlatcam", png, reported=[("dps", "zeta1")]
    )
    assert filled_points(fig)["DPS"] == [[0.62, pytest.approx(0.302 * scale)]]


def test_figures_show_the_lpips_network_the_tables_report(tmp_path):
    """Both LPIPS columns present: the quality-vs-time and sweep figures plot the configured one."""
    df = default_metrics()
    df["lpips_vgg"] = df["lpips"] / 2
    fig = figures.quality_vs_time(df, "faces_phlatcam", tmp_path / "q.png", lpips_net="vgg")
    assert fig.axes[0].get_ylabel() == "LPIPS (VGG) ↓"
    assert filled_points(fig)["DPS"] == [[0.63, pytest.approx(0.281 / 2)]]
    fig = figures.sweep(df, "faces_phlatcam", tmp_path / "s.png", DEFAULT_SWEEPS, lpips_net="vgg")
    assert fig.axes[0].get_ylabel() == "LPIPS (VGG) ↓"
    default = figures.quality_vs_time(df, "faces_phlatcam", tmp_path / "q.png")
    assert default.axes[0].get_ylabel() == "LPIPS (AlexNet) ↓"


def filled_points(fig):
    """Legend label -> the filled points of that method in a quality-vs-time figure."""
    return {
        c.get_label(): c.get_offsets().data.tolist()
        for c in fig.axes[0].collections
        if not c.get_label().startswith("_")
    }


def test_quality_vs_time_names_missing_values(tmp_path):
    metrics = default_metrics().assign(latency_s=0.0)
    with pytest.raises(
        BadInputError, match="no faces_phlatcam run has both a positive latency and lpips"
    ):
        figures.quality_vs_time(metrics, "faces_phlatcam", tmp_path / "q.png")


def test_sweep_layout(tmp_path):
    png = tmp_path / "sweep_faces_phlatcam.png"
    fig = figures.sweep(default_metrics(), "faces_phlatcam", png, DEFAULT_SWEEPS)
    assert_figure(png)
    assert_readable_layout(fig)
    assert len(fig.axes) == 6  # LPIPS and PSNR rows, a column per swept method
    assert fig.axes[0].get_ylabel() == "LPIPS (AlexNet) ↓" and fig.axes[3].get_ylabel() == "PSNR (dB) ↑"
    ddnm_lpips = fig.axes[2].lines[0]
    assert list(ddnm_lpips.get_xdata()) == [20, 50, 100]
    assert list(ddnm_lpips.get_ydata()) == [0.231, 0.204, 0.198]
    with pytest.raises(BadInputError, match="no faces_phlatcam admm run has parameter 'mu1'"):
        figures.sweep(default_metrics(), "faces_phlatcam", png, {"admm": "mu1"})


def write_default_run(tmp_path, dataset, runs, lpips=True):
    """A dataset file, each run's recon file and the split's evaluate CSV."""
    x, y, recon = scenes()
    data_path = atomic_write_h5(
        tmp_path / dataset / "test.h5",
        {"x": x, "y": y, "index": np.arange(len(x))},
        {
            "dataset": dataset,
            "camera": "dots",
            "split": "test",
            "operator": {"kind": "lensless"},
            "noise": {},
        },
        contract="dataset",
    )
    recon_paths, metric_tables = [], []
    for k, (method, variant, *_rest) in enumerate(runs):
        xhat = recon(blur=0.4 + 0.15 * (k % 5), noise=0.01 * (k % 3), seed=k)
        recon_paths.append(
            atomic_write_h5(
                tmp_path / "recon" / method / f"{variant}.h5",
                {"xhat": xhat, "latency_s": np.ones(len(x)), "index": np.arange(len(x))},
                {
                    "dataset": dataset,
                    "split": "test",
                    "method": method,
                    "variant": variant,
                    "params": {},
                    "peak_mem_mb": 1.0,
                    "device": "cpu",
                },
                contract="recon",
            )
        )
        metric_tables.append(
            per_image_scores(xhat, x, lpips).assign(
                dataset=dataset, split="test", method=method, variant=variant
            )
        )
    csv = tmp_path / "metrics" / "test.csv"
    write_csv_atomic(pd.concat(metric_tables, ignore_index=True), csv)
    return str(data_path), [str(p) for p in recon_paths], str(csv)


def test_nsdd_qualitative_grid(tmp_path):
    """NSDD Fig. 5: one column per method, its variant as the paper table chose it."""
    metrics_csv = tmp_path / "metrics.csv"
    write_csv_atomic(default_metrics(), metrics_csv)
    table = tmp_path / "nsdd_main.csv"
    write_csv_atomic(tables.nsdd_main_table(default_metrics(), "faces_phlatcam"), table)
    data_path, recons, csv = write_default_run(tmp_path, "faces_phlatcam", NSDD_RUNS)
    chosen = report.figure_columns(str(metrics_csv), "faces_phlatcam", str(table))
    assert chosen == [
        ("wiener", "K1e-2"),
        ("admm", "it100"),
        ("dps", "zeta3"),
        ("ddnm", "s50"),
        ("deepinv_dps", "w3"),
        ("diffpir", "s20"),
        ("ddrm", "s50"),
        ("nsdd", "main"),
    ]
    png = tmp_path / "qualitative_faces_phlatcam.png"
    report.qualitative(data_path, recons, csv, str(png), 4, str(metrics_csv), str(table))
    assert_figure(png)
    report.quality_vs_time(str(metrics_csv), "faces_phlatcam", str(tmp_path / "q.png"), str(table))
    assert_figure(tmp_path / "q.png")
    # DeepInverse's samplers are in the table, not in the grid (tables.QUALITATIVE_OMITS)
    shown = [pair for pair in chosen if pair[0] not in tables.QUALITATIVE_OMITS]
    assert [m for m, _ in shown] == ["wiener", "admm", "dps", "ddnm", "nsdd"]
    y, columns, x, scores = qualitative_inputs(data_path, recons, csv, shown)
    fig = figures.qualitative(y, columns, png, x, scores, n_images=4)
    assert_readable_layout(fig)
    titles = [ax.get_title() for ax in fig.axes[:7]]
    assert titles == [
        "measurement",
        "Wiener",
        "ADMM",
        "DPS",
        "DDNM+\n(teacher)",
        "NSDD",
        "reference",
    ]
    first_nsdd = fig.axes[5].get_xlabel()  # row 0, NSDD: its PSNR and LPIPS from its CSV
    expected = per_image_scores(read_h5(recons[9])[0]["xhat"], x).iloc[0]
    assert first_nsdd == f"{expected['psnr']:.2f} / {expected['lpips']:.3f}"
    assert fig.get_supxlabel() == "Under each image: PSNR (dB) ↑ / LPIPS (AlexNet) ↓"


def qualitative_inputs(data_path, recons, csv, chosen):
    """What report.qualitative hands figures.qualitative, for a test to look at."""
    data = read_h5(data_path)[0]
    scores = {key[2:]: table for key, table in report.read_split_metrics(csv).items()}
    runs = {}
    for path in recons:
        arrays, attrs = read_h5(path)
        pair = (attrs["method"], attrs["variant"])
        runs[pair] = (arrays["xhat"], scores[pair])
    titles = report.column_titles(chosen)
    columns = {t: runs[pair][0] for t, pair in zip(titles, chosen)}
    scores = {t: runs[pair][1] for t, pair in zip(titles, chosen)}
    return data["y"], columns, data["x"], scores


def test_dmdiff_qualitative_grid_without_lpips(tmp_path):
    """The same grid for DMDiff: one column per method of the main table (Wiener, the UNet,
    NSDD's teacher and student, DMDiff's first variant, the full model), the alpha sweep and the
    ablation left to their own figure and table; the weight-free score named under the grid."""
    metrics = default_metrics(lpips=False)
    metrics_csv = tmp_path / "metrics.csv"
    write_csv_atomic(metrics, metrics_csv)
    table = tmp_path / "dmdiff_main.csv"
    write_csv_atomic(tables.dmdiff_main_table(metrics, "natural_metalens"), table)
    skip = [("dmdiff", v) for _, v, p, *_ in DMDIFF_RUNS if "alpha" in p]
    chosen = report.figure_columns("unused.csv", "natural_metalens", str(table), skip)
    assert chosen == [("wiener", "K1e-2"), ("unet", "main"), ("ddnm", "s20"), ("nsdd", "main")] + [
        ("dmdiff", v) for v in ("full", "no_svda", "svda_no_fwhm", "no_negative")
    ]
    shown = report.one_per_method(chosen)
    assert shown == chosen[:5]
    # the full model whatever its place among DMDiff's rows (metrics.csv sorts variants by name)
    assert report.one_per_method([("wiener", "K1e-2"), ("dmdiff", "alpha0"), ("dmdiff", "full")]) == [
        ("wiener", "K1e-2"),
        ("dmdiff", "full"),
    ]
    data_path, recons, csv = write_default_run(
        tmp_path, "natural_metalens", DMDIFF_RUNS, lpips=False
    )
    png = tmp_path / "qualitative_natural_metalens.png"
    report.qualitative(data_path, recons, csv, str(png), 4, str(metrics_csv), str(table), skip)
    assert_figure(png)
    y, columns, x, scores = qualitative_inputs(data_path, recons, csv, shown)
    fig = figures.qualitative(y, columns, png, x, scores, n_images=4)
    assert_readable_layout(fig)
    assert [ax.get_title() for ax in fig.axes[:7]] == [
        "measurement",
        "Wiener",
        "UNet\n(supervised)",
        "DDNM+\n(teacher)",
        "NSDD",
        "DMDiff",
        "reference",
    ]
    assert fig.get_supxlabel() == "Under each image: PSNR (dB) ↑ / GMSD (weight-free) ↓"


def test_dmdiff_quality_vs_time_shows_both_papers(tmp_path):
    """The metalens quality-vs-time figure: DDNM+'s steps as a labelled curve, NSDD, the UNet
    and every DMDiff variant the main table reports, filled; readable."""
    metrics = default_metrics(lpips=False)
    metrics_csv = tmp_path / "metrics.csv"
    write_csv_atomic(metrics, metrics_csv)
    table = tmp_path / "dmdiff_main.csv"
    write_csv_atomic(tables.dmdiff_main_table(metrics, "natural_metalens"), table)
    png = tmp_path / "quality_vs_time_natural_metalens.png"
    reported = report.figure_columns(str(metrics_csv), "natural_metalens", str(table))
    fig = figures.quality_vs_time(metrics, "natural_metalens", png, reported)
    assert_figure(png)
    assert_readable_layout(fig)
    shown = set(texts_of(fig))
    assert {"Wiener", "UNet (supervised)", "DDNM+", "NSDD", "DMDiff", "s20", "s50"} <= shown
    assert filled_points(fig)["DDNM+"] == [[0.45, pytest.approx(0.24 / 3)]]  # chosen on val


def test_qualitative_without_a_paper_table_shows_each_methods_best(tmp_path):
    metrics_csv = tmp_path / "metrics.csv"
    write_csv_atomic(default_metrics(), metrics_csv)
    assert report.figure_columns(str(metrics_csv), "faces_phlatcam") == [
        ("wiener", "K1e-2"),
        ("admm", "it100"),
        ("dps", "zeta3"),
        ("ddnm", "s50"),
        ("deepinv_dps", "w3"),
        ("diffpir", "s20"),
        ("ddrm", "s50"),
        ("nsdd", "main"),
        ("nsdd_full", "main"),
    ]


def test_qualitative_rejects_recon_of_another_dataset(tmp_path):
    data_path, _, csv = write_default_run(tmp_path, "faces_phlatcam", NSDD_RUNS[:1])
    other = tmp_path / "other"
    _, bad, _ = write_default_run(other, "flowers", NSDD_RUNS[:1])
    table = tmp_path / "table.csv"
    png = str(tmp_path / "q.png")
    write_csv_atomic(pd.DataFrame({"Method": ["Wiener"], "Variant": ["K1e-2"]}), table)
    with pytest.raises(BadInputError, match=f"{bad[0]} is not a reconstruction of {data_path}"):
        report.qualitative(data_path, bad, csv, png, 4, "unused.csv", str(table))
    write_csv_atomic(pd.DataFrame({"Method": ["DPS"], "Variant": ["zeta3"]}), table)
    with pytest.raises(BadInputError, match=r"no reconstruction or metrics of \[\('dps', 'zeta3'\)\]"):
        report.qualitative(data_path, bad, csv, png, 4, "unused.csv", str(table))


def test_alpha_figure(tmp_path):
    """Each alpha's reconstruction of the scene they change most, zoomed, beside the curves."""
    table = tmp_path / "alpha_sweep.csv"
    write_csv_atomic(
        tables.alpha_sweep_table(default_metrics(lpips=False), "natural_metalens"), table
    )
    data_path, recons, _ = write_default_run(tmp_path, "natural_metalens", DMDIFF_RUNS, lpips=False)
    png = tmp_path / "alpha_sweep_natural_metalens.png"
    report.alpha_sweep_figure(str(table), data_path, recons, str(png))
    assert_figure(png)

    x = read_h5(data_path)[0]["x"]
    images = {a: x + 0.02 * a for a in (0.0, 0.5, 0.75, 1.0, 1.05)}
    for a, xhat in images.items():  # scene 2, rows 3-12, cols 20-29: where alpha acts
        xhat[2, :, 3:13, 20:30] += 0.3 * a
    fig = figures.alpha_figure(pd.read_csv(table), images, png, reference=x)
    assert_readable_layout(fig)
    titles = [ax.get_title() for ax in fig.axes[:6]]
    assert titles == ["α = 0", "α = 0.5", "α = 0.75", "α = 1", "α = 1.05", "reference"]
    crop = fig.axes[6].images[0].get_array()  # zoom of alpha 0: the 10x10 window in scene 2
    assert crop.shape[:2] == (10, 10)
    assert np.allclose(crop, np.moveaxis(np.clip(images[0.0][2, :, 3:13, 20:30], 0, 1), 0, -1))
    curves = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in curves] == ["PSNR (dB) ↑", "GMSD (weight-free) ↓"]
    assert list(curves[0].lines[0].get_xdata()) == [0.0, 0.5, 0.75, 1.0, 1.05]


def test_alpha_figure_needs_a_perceptual_metric(tmp_path):
    table = tables.alpha_sweep_table(default_metrics(), "natural_metalens")
    images = {a: np.zeros((2, 3, 32, 32)) for a in table["alpha"]}
    figures.alpha_figure(table, images, tmp_path / "a.png")
    with pytest.raises(BadInputError, match="no perceptual metric has values"):
        figures.alpha_figure(table.drop(columns=["LPIPS (AlexNet)", "GMSD"]), images, tmp_path / "a.png")


def test_capture_figure(tmp_path):
    """The DiffuserCam hand's figure: the capture, then one panel per reconstruction in the
    configured order, each titled by method and size with its consistency beneath; the text is
    readable at the saved size (no overlap, none cut off)."""
    data_path, _ = write_recon_pair(tmp_path, gt=False, channels=1, size=12)
    rng = np.random.default_rng(1)
    recons, csvs = [], {}
    for k, (method, variant) in enumerate([("wiener", "K1e-3"), ("admm", "it300"), ("ddnm", "s50"), ("nsdd", "main")]):
        recons.append(
            atomic_write_h5(
                tmp_path / f"{method}.h5",
                {"xhat": rng.random((4, 1, 12, 16)).astype(np.float32), "latency_s": np.ones(4), "index": np.arange(4)},
                {"dataset": "faces", "split": "test", "method": method, "variant": variant, "params": {},
                 "peak_mem_mb": 1.0, "device": "cpu"},
                contract="recon",
            )
        )
        per_image = pd.read_csv(per_image_csv(tmp_path / f"{method}.csv", [np.nan] * 4, [0.1] * 4))
        per_image["consistency"] = [0.01 * (k + 1), 0.5, 0.5, 0.5]
        per_image.to_csv(tmp_path / f"{method}.csv", index=False)
        csvs[(method, variant)] = tmp_path / f"{method}.csv"
    metric_csv = split_csv(tmp_path / "test.csv", csvs)
    png = tmp_path / "capture_diffusercam_hand.png"
    report.capture_figure(str(data_path), [str(r) for r in recons], metric_csv, str(png), "diffusercam_hand")
    assert_figure(png)
    y = read_h5(data_path)[0]["y"]
    panels = {title: read_h5(r)[0]["xhat"][0] for title, r in zip(["Wiener", "ADMM", "DDNM+ (teacher)", "NSDD"], recons)}
    fig = figures.capture_figure(y[0], panels, png, "diffusercam_hand", {t: 0.01 * (k + 1) for k, t in enumerate(panels)})
    assert_readable_layout(fig)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["raw capture\n20×20 px", "Wiener\n12×16 px", "ADMM\n12×16 px", "DDNM+ (teacher)\n12×16 px", "NSDD\n12×16 px"]
    assert [ax.get_xlabel() for ax in fig.axes[1:]] == ["0.010", "0.020", "0.030", "0.040"]
    assert fig.get_supxlabel() == "Under each reconstruction: consistency ↓"
    with pytest.raises(BadInputError, match="image 9 out of range"):
        report.capture_figure(str(data_path), [str(recons[0])], metric_csv, str(png), "x", image=9)
    only_wiener = split_csv(tmp_path / "wiener_only.csv", {("wiener", "K1e-3"): csvs[("wiener", "K1e-3")]})
    with pytest.raises(BadInputError, match=r"wiener_only.csv: no metrics of run \['faces', 'test', 'admm', 'it300'\]"):
        report.capture_figure(str(data_path), [str(r) for r in recons], only_wiener, str(png), "x")
    with pytest.raises(BadInputError, match="no reconstructions to show"):
        figures.capture_figure(y[0], {}, png, "x")


def test_capture_table():
    """One row per configured run, in that order: consistency, the no-reference metrics (MUSIQ
    and CLIP-IQA empty without weights, never 0), latency and memory; an unknown run is named."""
    metrics = metrics_table(gt=False)
    table = tables.capture_table(metrics, "faces", ["wiener/k1", "admm/it100", "ddnm/svd50", "nsdd/main"])
    assert list(table.columns) == ["Method", "Variant", "consistency", "MUSIQ", "CLIP-IQA", "PIQE", "time (s)", "memory (MB)"]
    assert table["Method"].tolist() == ["Wiener", "ADMM", "DDNM+", "NSDD"]
    assert table["consistency"].tolist() == pytest.approx([0.04, 0.035, 0.02, 0.021])
    assert table["MUSIQ"].tolist() == pytest.approx([40.0, 35.0, 20.0, 21.0])
    assert table["CLIP-IQA"].isna().all() and table["PIQE"].isna().all()
    assert table["time (s)"].tolist() == pytest.approx([0.003, 0.2, 0.15, 0.01])
    with pytest.raises(BadInputError, match="faces: no dps/z9 reconstruction"):
        tables.capture_table(metrics, "faces", ["dps/z9"])


def test_table_variants_round_trip():
    table = tables.nsdd_main_table(default_metrics(), "faces_phlatcam")
    assert tables.table_variants(table)[2] == ("dps", "zeta3")
    with pytest.raises(BadInputError, match="needs Method and Variant"):
        tables.table_variants(table.drop(columns="Variant"))


def test_aggregate_pairs_each_recon_with_its_rows_of_the_split_csv(tmp_path):
    data_path, recons, csv = write_default_run(tmp_path, "faces_phlatcam", NSDD_RUNS[:3])
    out = tmp_path / "tables" / "metrics.csv"
    report.aggregate([csv], recons, [data_path] * 3, str(out), {})
    metrics = report.read_metrics(out).set_index(["method", "variant"])
    expected = pd.read_csv(csv).groupby(["method", "variant"])["psnr"].mean()
    for pair in expected.index:
        assert metrics.loc[pair, "psnr"] == pytest.approx(expected[pair])
    assert set(metrics["n_images"]) == {len(read_h5(data_path)[0]["x"])}
    with pytest.raises(BadInputError, match=r"no metrics of run \['faces_phlatcam', 'test'"):
        split = pd.read_csv(csv)
        write_csv_atomic(split[split["method"] != NSDD_RUNS[0][0]], tmp_path / "fewer.csv")
        report.aggregate([str(tmp_path / "fewer.csv")], recons, [data_path] * 3, str(out), {})
    with pytest.raises(BadInputError, match=r"but no recon file of them"):
        report.aggregate([csv], recons[1:], [data_path] * 2, str(out), {})
    with pytest.raises(BadInputError, match=r"is in both .*test.csv and .*test.csv"):
        report.aggregate([csv, csv], recons, [data_path] * 3, str(out), {})
