"""Aggregation, paper tables and figures, on hand-made inputs with known answers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thincam.data.h5io import atomic_write_h5
from thincam.errors import BadInputError
from thincam.data.atomic import write_csv_atomic
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
        [(str(a), report.read_per_image(a)), (str(b), report.read_per_image(b))],
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


def test_aggregate_names_bad_inputs(tmp_path):
    a = per_image_csv(tmp_path / "a.csv", [20.0], [0.1])
    pd.read_csv(a).drop(columns="consistency").to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(BadInputError, match=r"short.csv: column\(s\) \['consistency'\] missing"):
        report.read_per_image(tmp_path / "short.csv")
    with pytest.raises(
        BadInputError,
        match=r"runs \[\['faces', 'test', 'wiener', 'k1'\]\] appear more than once, in \[.*a.csv', .*a.csv'\]",
    ):
        table = report.read_per_image(a)
        tables.aggregate([(str(a), table), (str(a), table)], [meta("wiener", "k1"), meta("wiener", "k1")])
    with pytest.raises(BadInputError, match=r"metadata for .*a.csv lacks \['camera'\]"):
        tables.aggregate(
            [(str(a), report.read_per_image(a))],
            [{k: v for k, v in meta("wiener", "k1").items() if k != "camera"}],
        )


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
        "LPIPS",
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
    assert table["Ablation"].tolist() == ["DDNM+ (teacher)", "NSDD, null space", "NSDD, full image"]
    assert table["PSNR"].tolist() == [26.0, 25.5, 24.5]
    df = metrics_table()
    with pytest.raises(BadInputError, match="needs nsdd and nsdd_full"):
        tables.nsdd_ablation_table(df[df["method"] != "nsdd_full"], "faces")


def test_nsdd_table_falls_back_to_a_named_weight_free_metric():
    table = tables.nsdd_main_table(metrics_table(lpips=False), "faces")
    assert "GMSD" in table.columns and "LPIPS" not in table.columns
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


def test_dmdiff_tables(tmp_path):
    df = metrics_table()
    main = tables.dmdiff_main_table(df, "faces")
    write_csv_atomic(main, tmp_path / "dmdiff.csv")
    assert list(main.columns) == [
        "Method",
        "Variant",
        "PSNR",
        "SSIM",
        "LPIPS",
        "DISTS",
        "MUSIQ",
        "CLIP-IQA",
        "GMSD",
    ]
    assert main["Method"].tolist() == ["Wiener"] + ["DMDiff"] * 7
    assert main["DISTS"].isna().all()
    written = pd.read_csv(tmp_path / "dmdiff.csv", keep_default_na=False)
    assert (written["DISTS"] == "").all()

    alpha = tables.alpha_sweep_table(df, "faces")
    assert alpha["alpha"].tolist() == [0.0, 0.5, 1.0]
    assert alpha["PSNR"].tolist() == [25.0, 24.0, 23.0]

    ablation = tables.dmdiff_ablation_table(df, "faces")
    assert ablation["Ablation"].tolist() == list(tables.ABLATION_VARIANTS)
    assert ablation["PSNR"].tolist() == [22.0, 22.5, 23.0, 24.0]
    with pytest.raises(
        BadInputError, match=r"dmdiff variant\(s\) \['no_lora'\] not in the metrics table"
    ):
        tables.dmdiff_ablation_table(df, "faces", variants={"no LoRA": "no_lora"})
    with pytest.raises(BadInputError, match="no test results for dataset 'metalens'"):
        tables.dmdiff_main_table(df, "metalens")


# ---------------------------------------------------------------- figures


def assert_figure(png: Path):
    assert png.read_bytes()[:8] == PNG_MAGIC
    pdf = png.with_suffix(".pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    assert not list(png.parent.glob(".*.tmp"))


def write_metrics_csv(tmp_path, **kwargs):
    path = tmp_path / "metrics.csv"
    write_csv_atomic(metrics_table(**kwargs), path)
    return path


def test_quality_vs_time_picks_lpips_then_falls_back(tmp_path):
    png = tmp_path / "fig" / "quality_vs_time_faces.png"
    assert figures.quality_vs_time(write_metrics_csv(tmp_path), "faces", png) == "lpips"
    assert_figure(png)
    assert figures.quality_vs_time(write_metrics_csv(tmp_path, lpips=False), "faces", png) == "gmsd"
    assert (
        figures.quality_vs_time(
            write_metrics_csv(tmp_path, lpips=False, extras=False), "faces", png
        )
        == "psnr"
    )
    assert figures.quality_vs_time(write_metrics_csv(tmp_path, gt=False), "faces", png) == "musiq"


def test_sweep_figure(tmp_path):
    png = tmp_path / "sweep_faces.png"
    metric = figures.sweep(
        write_metrics_csv(tmp_path), "faces", png, {"dps": "zeta", "dmdiff": "alpha"}
    )
    assert metric == "lpips"
    assert_figure(png)
    with pytest.raises(BadInputError, match="no faces admm run has parameter 'mu1'"):
        figures.sweep(write_metrics_csv(tmp_path), "faces", png, {"admm": "mu1"})


def test_alpha_sweep_figure(tmp_path):
    table = tmp_path / "alpha.csv"
    write_csv_atomic(tables.alpha_sweep_table(metrics_table(lpips=False), "faces"), table)
    png = tmp_path / "alpha_sweep_faces.png"
    assert figures.alpha_sweep(table, "faces", png) == "gmsd"
    assert_figure(png)
    write_csv_atomic(tables.alpha_sweep_table(metrics_table(gt=False), "faces"), table)  # no-reference only
    assert figures.alpha_sweep(table, "faces", png) == "musiq"
    write_csv_atomic(pd.read_csv(table).drop(columns="MUSIQ"), table)
    with pytest.raises(BadInputError, match="alpha.csv: no perceptual metric has values"):
        figures.alpha_sweep(table, "faces", png)


@pytest.mark.parametrize("gt, channels", [(True, 3), (False, 1)])
def test_qualitative_figure(tmp_path, gt, channels):
    data_path, recons = write_recon_pair(tmp_path, gt=gt, channels=channels)
    png = tmp_path / "qualitative_faces.png"
    figures.qualitative(data_path, recons, ["Wiener", "DDNM+"], png, n_images=3)
    assert_figure(png)


def test_qualitative_rejects_recon_of_another_dataset(tmp_path):
    data_path, _ = write_recon_pair(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, bad = write_recon_pair(other, recon_dataset="flowers")
    with pytest.raises(BadInputError, match=f"{bad[0]} is not a reconstruction of {data_path}"):
        figures.qualitative(data_path, bad, ["Wiener", "DDNM+"], tmp_path / "q.png")


def test_capture_figure(tmp_path):
    data_path, recons = write_recon_pair(tmp_path, gt=False)
    png = tmp_path / "diffusercam_hand.png"
    figures.capture_figure(data_path, recons[1], png, "DiffuserCam: hand")
    assert_figure(png)
    with pytest.raises(BadInputError, match="image 9 out of range"):
        figures.capture_figure(data_path, recons[1], png, "x", image=9)
