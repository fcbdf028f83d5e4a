"""Claims over seeds (thincam.report.claims, the `claims` rule) on hand-made tables with known answers."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from figure_layout import assert_readable_layout

from thincam.data.atomic import write_csv_atomic
from thincam.errors import BadInputError
from thincam.report import claims
from thincam.stages.claims import claims as claims_stage

REPO = Path(__file__).resolve().parents[1]


def seed_tables(shift: float = 0.0) -> dict[str, pd.DataFrame]:
    """One run's tables as the aggregate rule writes them (only the columns the claims read);
    ``shift`` moves NSDD's PSNR and the full DMDiff model's PSNR, as another seed would."""
    return {
        "nsdd_ablation": pd.DataFrame(
            {
                "Ablation": ["DDNM+ (teacher)", "NSDD (null space)", "NSDD (full image)"],
                "Variant": ["s20", "main", "main"],
                "PSNR": [28.5, 28.6 + shift, 27.9],
                "GMSD": [0.068, 0.074, 0.093],
                "time (s)": [0.24, 0.012, 0.013],
            }
        ),
        "nsdd_main": pd.DataFrame(
            {"Method": ["DPS", "DDNM+", "NSDD"], "Variant": ["zeta10", "s20", "main"], "consistency": [0.36, 0.2, 0.08]}
        ),
        "alpha_sweep": pd.DataFrame(
            {
                "Variant": ["alpha0", "alpha0.5", "alpha1.0", "alpha1.05"],
                "alpha": [0.0, 0.5, 1.0, 1.05],
                "PSNR": [21.2, 21.5 - shift, 21.4, 21.4],
                "GMSD": [0.117, 0.112, 0.111, 0.110],
            }
        ),
        "dmdiff_ablation": pd.DataFrame(
            {
                "Variant": ["no_svda", "svda_no_fwhm", "no_negative", "full"],
                "PSNR": [21.3, 21.5, 22.7, 21.4 + shift],
                "pseudo capture PSNR (dB)": [18.2, 18.2, np.nan, 18.2],
                "clean-as-capture PSNR (dB)": [16.1, 16.1, np.nan, 16.1],
            }
        ),
        "dmdiff_main": pd.DataFrame(
            {
                "Method": ["UNet (supervised)", "NSDD", "DMDiff"],
                "Variant": ["main", "main", "full"],
                "PSNR": [23.6, 26.9, 21.4 + shift],
            }
        ),
        "capture": pd.DataFrame(
            {"Method": ["DDNM+", "NSDD"], "Variant": ["s50", "main"], "PIQE": [60.9, 71.3], "consistency": [0.047, 0.045]}
        ),
    }


def test_claim_values_known_answers():
    values = claims.claim_values(seed_tables())
    assert values["nsdd_teacher_psnr"] == pytest.approx(0.1)
    assert values["nsdd_speedup"] == pytest.approx(20.0)
    assert values["null_vs_full_psnr"] == pytest.approx(0.7)
    assert values["ddnm_vs_dps_consistency"] == pytest.approx(0.16)
    assert values["alpha_peak"] == pytest.approx(-0.1)  # alpha 0.5 beats alpha 1
    assert values["pseudo_gain"] == pytest.approx(2.1)
    assert values["dmdiff_vs_unet"] == pytest.approx(-2.2)  # the UNet row, not NSDD's "main"
    assert values["capture_piqe"] == pytest.approx(10.4)


def test_a_run_without_a_table_leaves_its_claims_out():
    tables = seed_tables()
    del tables["capture"]
    values = claims.claim_values(tables)
    assert math.isnan(values["capture_piqe"]) and not math.isnan(values["svda"])
    summary = claims.summarize({0: values, 1: values, 2: values})
    assert "PIQE, NSDD - DDNM+" not in set(summary["quantity"])


def test_verdicts_and_spread_over_seeds():
    # NSDD - teacher PSNR: +0.1, -0.1, +0.3 -> the seeds disagree; null vs full: +0.7 in all
    values = {seed: claims.claim_values(seed_tables(shift)) for seed, shift in ((0, 0.0), (1, -0.2), (2, 0.2))}
    summary = claims.summarize(values).set_index("quantity")
    teacher = summary.loc["PSNR, NSDD - teacher (dB)"]
    assert [teacher[f"seed {s}"] for s in range(3)] == pytest.approx([0.1, -0.1, 0.3])
    assert teacher["mean"] == pytest.approx(0.1) and teacher["std"] == pytest.approx(0.2)
    assert teacher["verdict"] == "within the spread"
    assert summary.loc["PSNR, null space - full image (dB)", "verdict"] == "holds"
    assert summary.loc["PSNR, full - no negative path (dB)", "verdict"] == "does not hold"
    assert summary.loc["consistency, DPS - DDNM+", "std"] == pytest.approx(0.0, abs=1e-12)


def test_a_seed_missing_a_claim_others_have_is_an_error():
    values = {seed: claims.claim_values(seed_tables()) for seed in range(3)}
    values[2]["svda"] = math.nan
    with pytest.raises(BadInputError, match=r"'svda': seeds \[2\] have no value"):
        claims.summarize(values)


def test_a_table_without_the_row_a_claim_reads_names_it(tmp_path, caplog):
    paths = {}
    for seed in range(3):
        tables = seed_tables()
        if seed == 1:
            tables["dmdiff_ablation"] = tables["dmdiff_ablation"].query("Variant != 'no_svda'")
        (tmp_path / str(seed)).mkdir()
        paths[seed] = {kind: str(tmp_path / str(seed) / f"{kind}.csv") for kind in tables}
        for kind, table in tables.items():
            write_csv_atomic(table, paths[seed][kind])
    with pytest.raises(BadInputError, match=r"claim 'svda': seeds \[1\] have no value, the others have"):
        claims_stage(paths, *(str(tmp_path / n) for n in ("c.csv", "v.csv", "c.png")))
    assert "claim 'svda' left out: no row 'no_svda'" in caplog.text


def test_claims_stage_writes_table_values_and_a_readable_figure(tmp_path):
    paths = {}
    for seed, shift in ((0, 0.0), (1, -0.2), (2, 0.2)):
        paths[seed] = {}
        for kind, table in seed_tables(shift).items():
            paths[seed][kind] = str(tmp_path / f"{seed}_{kind}.csv")
            write_csv_atomic(table, paths[seed][kind])
    out = {n: str(tmp_path / n) for n in ("claims.csv", "values.csv", "claims.png")}
    summary = claims_stage(paths, out["claims.csv"], out["values.csv"], out["claims.png"])
    written = pd.read_csv(out["claims.csv"])
    assert list(written["verdict"]) == list(summary["verdict"])
    assert len(pd.read_csv(out["values.csv"])) == 3 * len(claims.CLAIMS)
    assert (tmp_path / "claims.pdf").exists()
    assert_readable_layout(claims.claims_figure(summary, tmp_path / "again.png"))


def test_seed_config_runs_only_what_the_claims_read():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    before = copy.deepcopy(config)
    run = claims.seed_config(config, 1)
    assert config == before  # the demo's config is not touched
    assert run["seed"] == 1 and run["run_dir"] == "results/seeds/1" and "claims" not in run
    assert set(run["datasets"]["faces_phlatcam"]["methods"]) == {"dps", "ddnm", "nsdd", "nsdd_full"}
    assert set(run["datasets"]["faces_phlatcam"]["sweeps"]) == {"dps", "ddnm"}
    assert run["datasets"]["diffusercam_sim"]["methods"] == {}  # its student is still trained, for the hand
    assert run["datasets"]["faces_phlatcam"]["prior"] == "faces"
    assert claims.seed_config(config, 0)["run_dir"] == "results"  # the demo's own run


def test_claims_markdown_has_a_row_per_claim_with_its_verdict():
    values = {seed: claims.claim_values(seed_tables(shift)) for seed, shift in ((0, 0.0), (1, -0.2), (2, 0.2))}
    text = claims.claims_markdown(claims.summarize(values))
    rows = text.strip().splitlines()[2:]
    assert len(rows) == len(claims.CLAIMS)
    assert "| NSDD matches its DDNM+ teacher's PSNR | PSNR, NSDD - teacher (dB) (> 0) | 0.1 ± 0.2 | 0.1, -0.1, 0.3 | **within the spread** |" in rows


def test_readme_cites_every_claim():
    """The README's claims table (written by scripts/readme_figures.py --claims) covers CLAIMS."""
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- claims table: scripts/readme_figures.py --claims -->")
    block = readme[start : readme.index("<!-- end of claims table -->")]
    for claim in claims.CLAIMS:
        assert f"| {claim.statement} | {claim.quantity} " in block, claim.key
