"""The whole workflow on a tiny config in a temporary directory: files follow the contracts."""

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest

from thincam.data.h5io import read_h5
from workflow_helpers import copy_workflow, planned_jobs, run_snakemake

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

CORE_COLUMNS = [
    "dataset", "split", "camera", "method", "variant", "n_images", "psnr", "ssim", "lpips", "lpips_vgg",
    "dists", "musiq", "clipiqa", "consistency", "latency_s", "peak_mem_mb", "device",
]


@pytest.fixture(scope="module")
def finished_run(tiny_run):
    """The session's tiny run (conftest.tiny_run: through SLURM where the cluster runs)."""
    return tiny_run.workdir, tiny_run.config


def test_psf_contracts(finished_run):
    workdir, config = finished_run
    for camera in config["cameras"]:
        arrays, attrs = read_h5(workdir / f"results/psf/{camera}.h5", contract="psf")
        psf = arrays["psf"]
        assert psf.ndim == 3 and np.all(np.isfinite(psf))
        assert np.allclose(psf.sum(axis=(-2, -1)), 1.0, atol=1e-4)
        assert attrs["kind"] == config["cameras"][camera]["kind"]
    arrays, _ = read_h5(workdir / "results/psf/metalens.h5", contract="psf")
    assert arrays["psf_grid"].shape[:2] == (3, 3)
    assert np.all(np.isfinite(arrays["fwhm"])) and np.all(arrays["fwhm"] > 0)


def test_dataset_contracts(finished_run):
    workdir, config = finished_run
    arrays, _ = read_h5(workdir / "results/data/faces_phlatcam/test.h5", contract="dataset")
    assert arrays["x"].shape == (3, 3, 16, 16) and arrays["y"].shape == (3, 3, 16, 16)
    arrays, hand_attrs = read_h5(workdir / "results/data/diffusercam_hand/test.h5", contract="dataset")
    assert "x" not in arrays and arrays["y"].shape == (1, 1, 15, 20)
    # The simulated training set of the same camera: gray scenes, noise estimated from the capture.
    arrays, sim_attrs = read_h5(workdir / "results/data/diffusercam_sim/train.h5", contract="dataset")
    assert arrays["x"].shape == (8, 1, 12, 16) and arrays["y"].shape == (8, 1, 15, 20)
    estimate = json.loads(hand_attrs["noise"])["gaussian_sigma_estimate"]
    assert 0 < estimate < 0.01 and json.loads(sim_attrs["noise"])["gaussian_sigma"] == estimate


def test_tables_and_figures(finished_run):
    workdir, config = finished_run
    metrics = pd.read_csv(workdir / "results/tables/metrics.csv")
    assert list(metrics.columns[: len(CORE_COLUMNS)]) == CORE_COLUMNS
    runs = {(r.dataset, r.split, r.method, r.variant) for r in metrics.itertuples()}
    for dataset, spec in config["datasets"].items():
        for method, variants in spec["methods"].items():
            assert {(dataset, "test", method, v) for v in variants} <= runs
            if len(variants) > 1 and method != "dmdiff":  # chosen on val, so run on val too
                assert {(dataset, "val", method, v) for v in variants} <= runs
    hand = metrics[metrics.dataset == "diffusercam_hand"]
    assert hand.psnr.isna().all() and np.isfinite(hand.consistency).all()
    # The capture is reconstructed with diffusercam_sim's prior and student (models_from).
    capture = pd.read_csv(workdir / "results/tables/capture_diffusercam_hand.csv")
    assert capture["Method"].tolist() == ["Wiener", "ADMM", "DDNM+", "NSDD"]
    assert list(capture.columns) == ["Method", "Variant", "consistency", "MUSIQ", "CLIP-IQA", "PIQE", "time (s)", "memory (MB)"]
    assert np.isfinite(capture["consistency"]).all() and capture["MUSIQ"].isna().all()
    assert not (workdir / "results/nsdd/diffusercam_hand").exists()
    assert metrics.lpips.isna().all()  # no weights installed: empty, never 0
    faces = metrics[(metrics.dataset == "faces_phlatcam") & (metrics.split == "test")]
    assert np.isfinite(faces.psnr).all() and (faces.latency_s > 0).all()
    # The tiny prior trains for seconds, so only prior-free methods must already be good.
    assert (faces[faces.method.isin(["wiener", "admm", "nsdd"])].psnr > 12).all()
    for name in (
        "quality_vs_time_faces_phlatcam",
        "qualitative_faces_phlatcam",
        "sweep_faces_phlatcam",
        "capture_diffusercam_hand",
        "quality_vs_time_natural_metalens",
        "qualitative_natural_metalens",
    ):
        for ext in ("png", "pdf"):
            assert (workdir / f"results/figures/{name}.{ext}").stat().st_size > 1000
    main = pd.read_csv(workdir / "results/tables/nsdd_main.csv")
    assert main["Method"].tolist() == [
        "Wiener",
        "ADMM",
        "DPS",
        "DDNM+",
        "DPS (deepinv)",
        "DiffPIR (deepinv)",
        "DDRM (deepinv)",
        "NSDD",
    ]
    ablation = pd.read_csv(workdir / "results/tables/nsdd_ablation.csv")
    assert ablation["Ablation"].tolist() == ["DDNM+ (teacher)", "NSDD (null space)", "NSDD (full image)"]


def test_dmdiff_branch(finished_run):
    """Ablation and alpha-sweep tables in the paper's layout, the alpha figure, restorations."""
    workdir, config = finished_run
    tables = workdir / "results/tables"
    ablation = pd.read_csv(tables / "dmdiff_ablation.csv")
    assert ablation["Ablation"].tolist() == ["no SVDA", "SVDA w/o FWHM", "w/o negative path", "full"]
    assert np.isfinite(ablation["PSNR"]).all()
    sweep = pd.read_csv(tables / "alpha_sweep.csv")
    assert sweep["alpha"].tolist() == [0.0, 0.5]
    # The pseudo pairs' quality against the true captures, and the rule's verdict, per row.
    assert ablation["pseudo pairs"].tolist() == ["used", "used", "no", "used"]
    assert np.isfinite(ablation["pseudo capture PSNR (dB)"][[0, 1, 3]]).all()
    assert np.isnan(ablation["clean-as-capture PSNR (dB)"][2])
    main = pd.read_csv(tables / "dmdiff_main.csv")
    # Both papers on one camera: NSDD's teacher and student between the baselines and DMDiff.
    assert main["Method"].tolist()[:4] == ["Wiener", "UNet (supervised)", "DDNM+", "NSDD"]
    assert (main["Method"].iloc[4:] == "DMDiff").all()
    assert list(main.columns[-2:]) == ["consistency", "time (s)"] and np.isfinite(main["PSNR"]).all()
    unet = json.loads((workdir / "results/unet/natural_metalens/model/training.json").read_text())
    assert unet["n_pairs"] == 4 and unet["loss"].startswith("l2 + 0.1 * weight_free")
    for ext in ("png", "pdf"):
        assert (workdir / f"results/figures/alpha_sweep_natural_metalens.{ext}").stat().st_size > 1000
    recon, _ = read_h5(workdir / "results/recon/natural_metalens/test/dmdiff/full.h5", contract="recon")
    assert recon["xhat"].shape == (2, 3, 32, 32) and 0 <= recon["xhat"].min() <= recon["xhat"].max() <= 1
    pairs, _ = read_h5(workdir / "results/dmdiff/natural_metalens/pseudo_pairs.h5", contract="pseudo_pairs")
    assert len(pairs["y_pseudo"]) == config["datasets"]["natural_metalens"]["dmdiff"]["unpaired"]
    model = workdir / "results/dmdiff/natural_metalens/full/model"
    training = json.loads((model / "training.json").read_text())
    assert training["n_pseudo"] == 4 and training["pseudo_pairs"]["used"]  # the tiny config's margin is -100 dB
    quality = json.loads(read_h5(workdir / "results/dmdiff/natural_metalens/pseudo_pairs.h5", [])[1]["quality"])
    assert training["pseudo_pairs"] == {"asked": True, "used": True, **quality}
    no_negative = json.loads((model.parent.parent / "no_negative/model/training.json").read_text())
    assert no_negative["path_counts"]["negative"] == 0 and no_negative["n_pseudo"] == 0


def test_dmdiff_dag_is_two_stage(finished_run):
    """negative-path model -> pseudo pairs -> the models trained on them; no_negative skips them."""
    workdir, config = finished_run
    result = run_snakemake(workdir, config, "--dag", "--forceall")
    assert result.returncode == 0, result.stderr[-2000:]
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', result.stdout, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", result.stdout, re.M)}
    stage1 = "train_dmdiff\\nmodel: negative_path"
    assert (stage1, "pseudo_pairs") in edges
    for model in ("full", "no_svda", "svda_no_fwhm"):
        assert ("pseudo_pairs", f"train_dmdiff\\nmodel: {model}") in edges
    assert ("pseudo_pairs", "train_dmdiff\\nmodel: no_negative") not in edges
    assert ("pretrain_dmdiff_base", stage1) in edges


def test_noop_rerun_and_figures_only(finished_run):
    workdir, config = finished_run
    result = run_snakemake(workdir, config, "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr
    result = run_snakemake(workdir, config, "figures", "-n", "--forcerun", "aggregate")
    planned = result.stdout
    assert "reconstruct" not in planned and "evaluate" not in planned
    assert "aggregate" in planned


def _plan(finished_run, config, *args, **kwargs):
    workdir, _ = finished_run
    result = run_snakemake(workdir, config, "-n", *args, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def _forced_plan(finished_run, config, *targets):
    """The plan when ``targets`` (rules or files) are forced: those jobs and their descendants."""
    return _plan(finished_run, config, "--forcerun", *targets)


def _recons(workdir, pattern):
    return sorted(str(p.relative_to(workdir)) for p in (workdir / "results/recon").glob(pattern))


def test_incremental_variant_change(finished_run):
    """One variant's parameter: only its method's reconstruct jobs (val and test; one job runs all
    a method's variants) and their descendants."""
    workdir, config = finished_run
    changed = copy.deepcopy(config)
    changed["datasets"]["faces_phlatcam"]["methods"]["wiener"]["K1e-2"]["K"] = 0.02
    plan = _plan(finished_run, changed)
    # val (the choice) and test: two reconstructions, and the evaluate job of each split
    assert plan["reconstruct"] == 2 and plan["evaluate"] == 2
    assert plan == _forced_plan(finished_run, config, *_recons(workdir, "faces_phlatcam/*/wiener"))


def test_incremental_dmdiff_model_change(finished_run):
    """One DMDiff model's training knob: that model, its restorations and their descendants."""
    workdir, config = finished_run
    changed = copy.deepcopy(config)
    changed["datasets"]["natural_metalens"]["dmdiff"]["models"]["no_svda"]["lr"] = 0.002
    plan = _plan(finished_run, changed)
    assert plan["train_dmdiff"] == 1 and "pretrain_dmdiff_base" not in plan
    assert plan == _forced_plan(finished_run, config, "results/dmdiff/natural_metalens/no_svda/model")


def test_incremental_plot_setting(finished_run):
    _, config = finished_run
    changed = copy.deepcopy(config)
    changed["figures"]["qualitative_images"] = 2
    simulated = [d for d, spec in config["datasets"].items() if "source" in spec]
    assert len(simulated) == 3  # faces_phlatcam, natural_metalens, diffusercam_sim
    assert _plan(finished_run, changed) == {"qualitative": len(simulated), "all": 1}


def test_incremental_solver_edit(finished_run, tmp_path):
    """Editing the Wiener module re-runs the Wiener jobs and their descendants, nothing else."""
    workdir, config = finished_run
    plan = _edited_plan(finished_run, tmp_path, "solvers/wiener.py")
    assert "train_prior" not in plan and "ddnm_targets" not in plan
    assert plan == _forced_plan(finished_run, config, *_recons(workdir, "*/*/wiener"))


def test_html_report(finished_run):
    workdir, config = finished_run
    result = run_snakemake(workdir, config, "--report", "report.html")
    assert result.returncode == 0, result.stderr[-2000:]
    html = (workdir / "report.html").read_text(errors="replace")
    assert "quality_vs_time_faces_phlatcam.png" in html and "metrics.csv" in html


def _edited_plan(finished_run, tmp_path, module_path):
    """The dry-run plan after appending a comment to ``module_path`` in a copy of the workflow."""
    _, config = finished_run
    snakefile = copy_workflow(tmp_path)
    edited = tmp_path / "src/thincam" / module_path
    edited.write_text(edited.read_text() + "\n# edited\n")
    return _plan(finished_run, config, snakefile=snakefile)


@pytest.mark.parametrize(
    "module_path, forced",
    [
        # imported only inside simulate_measurements' stage function
        ("physics/noise.py", ["simulate_measurements"]),
        # two levels below the stage: stages.dmdiff -> models.dmdiff.train -> model -> lora, and
        # the dmdiff method's module -> model -> lora; not the base pretraining
        ("models/dmdiff/lora.py", ["train_dmdiff", "pseudo_pairs", "dmdiff_restorations"]),
    ],
)
def test_edit_reruns_exactly_the_importing_jobs(finished_run, tmp_path, module_path, forced):
    """Editing a module re-runs the jobs whose import graph holds it, and their descendants:
    the same plan as forcing those jobs."""
    workdir, config = finished_run
    targets = []
    for name in forced:
        if name == "dmdiff_restorations":
            targets += _recons(workdir, "*/*/dmdiff")
        else:
            targets.append(name)
    assert _edited_plan(finished_run, tmp_path, module_path) == _forced_plan(finished_run, config, *targets)


def test_edit_of_a_module_no_job_imports_reruns_nothing(finished_run, tmp_path):
    """config_checks runs in the Snakefile only; no job imports it."""
    assert _edited_plan(finished_run, tmp_path, "config_checks.py") == {}


# The papers' claims, pinned on the tiny run (priors trained for seconds, so only claims that
# follow from the methods' structure can be asserted here; the demo's numbers are in the README).
def test_nsdd_claims_on_the_tiny_run(finished_run):
    workdir, _ = finished_run
    main = pd.read_csv(workdir / "results/tables/nsdd_main.csv").set_index("Method")
    assert list(main.columns) == ["Variant", "PSNR", "SSIM", "GMSD", "consistency", "time (s)", "memory (MB)"]
    # One UNet forward against the teacher's several steps (4 or more in the tiny config).
    assert main.loc["NSDD", "time (s)"] < main.loc["DDNM+", "time (s)"]
    # DDNM+ enforces the measurement at every step; DPS only nudges towards it.
    assert main.loc["DDNM+", "consistency"] < main.loc["DPS", "consistency"]
    # The student stays within 0.1 GMSD of its teacher even after six steps of distillation.
    assert main.loc["NSDD", "GMSD"] < main.loc["DDNM+", "GMSD"] + 0.1
    ablation = pd.read_csv(workdir / "results/tables/nsdd_ablation.csv").set_index("Ablation")
    # The null-space student keeps the anchor's range exactly (tsvd A+); the full-image one
    # must relearn it: better PSNR and consistency for the null-space student.
    null, full = ablation.loc["NSDD (null space)"], ablation.loc["NSDD (full image)"]
    assert null["PSNR"] > full["PSNR"] and null["consistency"] < full["consistency"]


def test_nsdd_on_the_metalens_tiny_run(finished_run):
    """NSDD beside DMDiff on the metalens: its own prior, DDNM+ targets made with the
    product-convolution operator and its CG A+ (tikhonov form), a student that records that
    operator, and the structural claim: one UNet pass is faster than the teacher's steps."""
    workdir, config = finished_run
    spec = config["datasets"]["natural_metalens"]
    shards = sorted((workdir / "results/targets/natural_metalens").glob("shard-*.h5"))
    assert len(shards) == spec["nsdd"]["n_shards"]
    for shard in shards:
        arrays, attrs = read_h5(shard, contract="targets")
        assert json.loads(attrs["operator"])["kind"] == "metalens"
        assert json.loads(attrs["teacher"])["form"] == "tikhonov"
        # A+ inverts A on its range, over the anchors and even the 4-step prior's rough targets,
        # to the metalens bound of tests/test_physics.py (measured 0.026 and 0.027)
        assert 0 < attrs["range_null_residual"] < 0.05
        assert np.isfinite(arrays["target"]).all() and arrays["target"].shape[1:] == (3, 32, 32)
    distilled = json.loads((workdir / "results/nsdd/natural_metalens/training.json").read_text())
    assert distilled["operator"]["kind"] == "metalens" and distilled["prior"].endswith("results/prior/natural")
    main = pd.read_csv(workdir / "results/tables/dmdiff_main.csv").set_index("Method")
    assert main.loc["NSDD", "time (s)"] < main.loc["DDNM+", "time (s)"]


def test_cli_reconstructs_the_hand_with_the_runs_nsdd_student(finished_run, tmp_path, capsys):
    """``thincam reconstruct`` with the tiny run's NSDD student on the committed hand capture: the
    PSF frame calibrated as diffusercam_lowres, the operator the student was distilled with."""
    from workflow_helpers import REPO

    from thincam.cli import main

    workdir, config = finished_run
    camera = config["cameras"]["diffusercam_lowres"]
    out = tmp_path / "out"
    args = ["reconstruct", str(REPO / config["datasets"]["diffusercam_hand"]["captures"]["path"])]
    args += ["--psf", camera["path"], "--downsample", str(camera["downsample"]), "--normalise", "anchor"]
    args += ["--method", "nsdd", "--model", str(workdir / "results/nsdd/diffusercam_sim"), "-o", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    arrays, attrs = read_h5(out / "hand_ds4_nsdd.h5", contract="recon")
    assert arrays["xhat"].shape == (1, 1, 12, 16) and attrs["method"] == "nsdd"
    assert np.isfinite(arrays["xhat"]).all() and (out / "hand_ds4_nsdd.png").exists()


def test_cli_restores_a_metalens_capture_with_the_runs_dmdiff(finished_run, tmp_path, capsys):
    """``thincam reconstruct`` with a DMDiff model of the tiny run (its base found in the run's
    folder) on a simulated metalens capture saved as a 16-bit TIFF: the metalens operator comes
    from the PSF file."""
    import tifffile

    from thincam.cli import main

    workdir, _ = finished_run
    y = read_h5(workdir / "results/data/natural_metalens/test.h5", names=["y"])[0]["y"][0]
    capture = tmp_path / "capture.tif"
    tifffile.imwrite(capture, np.round(y.clip(0, 1).transpose(1, 2, 0) * 65535).astype(np.uint16))
    args = ["reconstruct", str(capture), "--psf", str(workdir / "results/psf/metalens.h5"), "--image-size", "32", "32"]
    args += ["--method", "dmdiff", "--model", str(workdir / "results/dmdiff/natural_metalens/full"), "-o", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    arrays, attrs = read_h5(tmp_path / "capture_dmdiff.h5", contract="recon")
    assert arrays["xhat"].shape == (1, 3, 32, 32) and attrs["method"] == "dmdiff"
    assert tifffile.imread(tmp_path / "capture_dmdiff.tif").shape == (32, 32, 3)


def test_claims_over_seeds_reuse_the_finished_run(finished_run, tmp_path):
    """`snakemake claims` after the tiny run: seed 0 is that run (nothing of it runs again); seeds
    1 and 2 train and run only what the claims read, on its measurements, under results/seeds."""
    import shutil

    workdir, config = finished_run
    for name in ("results", ".snakemake"):
        shutil.copytree(workdir / name, tmp_path / name, symlinks=True)
    plan = _plan((tmp_path, config), config, "claims")
    assert {rule for rule in plan if not rule.startswith(("seed1_", "seed2_"))} == {"claims"}
    # the faces and DiffuserCam priors; not the metalens one, which only NSDD and DDNM+ use there
    assert plan["seed1_train_prior"] == plan["seed2_train_prior"] == 2
    assert plan["seed1_train_dmdiff"] == len(config["datasets"]["natural_metalens"]["dmdiff"]["models"]) + 1
    done = run_snakemake(tmp_path, config, "claims", timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    for seed in (1, 2):
        seeded = tmp_path / "results" / "seeds" / str(seed)
        assert not (seeded / "data").exists() and not (seeded / "psf").exists()
        record = json.loads((seeded / "nsdd/faces_phlatcam/training.json").read_text())
        assert record["seed"] == seed and record["prior"] == f"results/seeds/{seed}/prior/faces"
    summary = pd.read_csv(tmp_path / "results/claims/claims.csv")
    assert {"seed 0", "seed 1", "seed 2", "mean", "std", "verdict"} <= set(summary.columns)
    assert set(summary["verdict"]) <= {"holds", "does not hold", "within the spread"}
    seed0 = pd.read_csv(workdir / "results/tables/nsdd_ablation.csv").set_index("Ablation")
    teacher = summary.set_index("quantity").loc["PSNR, NSDD - teacher (dB)"]
    expected = seed0.loc["NSDD (null space)", "PSNR"] - seed0.loc["DDNM+ (teacher)", "PSNR"]
    assert teacher["seed 0"] == pytest.approx(expected)
    # independently trained students: the seeds' values differ
    assert len({round(teacher[f"seed {s}"], 6) for s in range(3)}) > 1
    assert (tmp_path / "results/claims/claims.png").stat().st_size > 0
