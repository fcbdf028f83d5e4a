"""The one list of splits, reconstruction methods and metrics.

Rules, tables, figures, config checks and tests import these names instead of spelling them
again; adding a method is one entry here (the paper tables it appears in included) plus its
``make_solver`` in the ``solvers`` module named. The config schema's method list is checked
against this one (tests/test_layering.py).
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "val", "test")
# Tables report the test split; a method with several variants is also reconstructed on val,
# where the tables choose which variant to report. Never choose on the split a table reports.
REPORT_SPLIT = "test"
CHOICE_SPLIT = "val"


@dataclass(frozen=True)
class Method:
    """A reconstruction method: its label, the module holding its ``make_solver`` and its inputs.

    ``needs`` names the trained model the method reads: "prior" (a diffusion prior folder or
    checkpoint), "student" (a distilled NSDD folder), "dmdiff" (a DMDiff model and its base) or
    "restorer" (the supervised UNet baseline trained on DMDiff's pairs).
    """

    label: str
    module: str
    needs: str | None = None
    gradient: bool = False  # DPS differentiates through the UNet; every other method runs no_grad
    # DMDiff's variants are its ablation and alpha sweep: every one is reported, none is chosen.
    every_variant_reported: bool = False
    # DDRM diffuses in the operator's spectral space: only an operator with a closed-form SVD
    # (the circular lensless convolution) will do.
    needs_svd: bool = False
    # The paper tables with a row for the method (PAPER_TABLE_ROWS), and its row label in the
    # NSDD distillation ablation (teacher beside students) if it is in that one.
    tables: tuple[str, ...] = ()
    ablation_label: str | None = None
    # In the qualitative grid (NSDD Fig. 5) too; DeepInverse's samplers are left out of it, as ten
    # columns would leave panels too narrow for 8 pt titles and scores on a 7 in page.
    qualitative: bool = True


METHODS: dict[str, Method] = {
    "wiener": Method("Wiener", "solvers.wiener", tables=("nsdd_main", "dmdiff_main")),
    "admm": Method("ADMM", "solvers.admm", tables=("nsdd_main",)),
    "dps": Method("DPS", "solvers.dps", needs="prior", gradient=True, tables=("nsdd_main",)),
    "ddnm": Method(
        "DDNM+", "solvers.ddnm", needs="prior", tables=("nsdd_main", "dmdiff_main"), ablation_label="DDNM+ (teacher)"
    ),
    # DeepInverse's samplers on the same prior (solvers.deepinv_prior wraps it as their denoiser)
    "deepinv_dps": Method(
        "DPS (deepinv)", "solvers.deepinv_dps", needs="prior", gradient=True, tables=("nsdd_main",), qualitative=False
    ),
    "diffpir": Method("DiffPIR (deepinv)", "solvers.diffpir", needs="prior", tables=("nsdd_main",), qualitative=False),
    "ddrm": Method(
        "DDRM (deepinv)", "solvers.ddrm", needs="prior", needs_svd=True, tables=("nsdd_main",), qualitative=False
    ),
    "nsdd": Method(
        "NSDD", "solvers.nsdd", needs="student", tables=("nsdd_main", "dmdiff_main"), ablation_label="NSDD (null space)"
    ),
    "nsdd_full": Method("NSDD (full image)", "solvers.nsdd", needs="student", ablation_label="NSDD (full image)"),
    "dmdiff": Method("DMDiff", "solvers.dmdiff", needs="dmdiff", every_variant_reported=True),
    "unet": Method("UNet (supervised)", "solvers.unet", needs="restorer", tables=("dmdiff_main",)),
}
# The NSDD students: the paper's null-space student and its full-image ablation.
STUDENTS = {"nsdd": "null", "nsdd_full": "full"}
# A paper table's method rows, in order: registry order, except that the DMDiff table puts the
# baselines without a diffusion prior (Wiener, the supervised UNet) above the NSDD paper's teacher
# and student, so one table compares both papers on one camera.
PAPER_TABLE_ROWS = {
    "nsdd_main": tuple(name for name, m in METHODS.items() if "nsdd_main" in m.tables),
    "dmdiff_main": tuple(
        sorted(
            (name for name, m in METHODS.items() if "dmdiff_main" in m.tables),
            key=lambda name: METHODS[name].needs in ("prior", "student"),
        )
    ),
}
NSDD_ABLATION_ROWS = {m.ablation_label: name for name, m in METHODS.items() if m.ablation_label}


@dataclass(frozen=True)
class Metric:
    """A per-image metric: its label, its direction, whether it needs ground truth or weights."""

    label: str
    lower_is_better: bool
    reference: bool = True
    needs_weights: bool = False


METRICS: dict[str, Metric] = {
    "psnr": Metric("PSNR", False),
    "ssim": Metric("SSIM", False),
    "lpips": Metric("LPIPS (AlexNet)", True, needs_weights=True),
    "lpips_vgg": Metric("LPIPS (VGG)", True, needs_weights=True),
    "dists": Metric("DISTS", True, needs_weights=True),
    "musiq": Metric("MUSIQ", False, reference=False, needs_weights=True),
    "clipiqa": Metric("CLIP-IQA", False, reference=False, needs_weights=True),
    "ms_ssim": Metric("MS-SSIM", False),
    "gmsd": Metric("GMSD", True),
    "fsim": Metric("FSIM", False),
    "vif": Metric("VIF", False),
    "nlpd": Metric("NLPD", True),
    "piqe": Metric("PIQE", True, reference=False),
    "consistency": Metric("consistency", True, reference=False),
}
# Computed by metrics.perceptual (pyiqa / lpips); psnr, ssim and consistency are metrics.fidelity.
PERCEPTUAL = ("lpips", "lpips_vgg", "dists", "musiq", "clipiqa", "ms_ssim", "gmsd", "fsim", "vif", "nlpd", "piqe")
WEIGHT_FREE = tuple(m for m in PERCEPTUAL if not METRICS[m].needs_weights)
# The column of each LPIPS network; a config's ``metrics.lpips`` names the one its tables report.
LPIPS_COLUMNS = {"alex": "lpips", "vgg": "lpips_vgg"}
# The per-image scalings before the image metrics (``metrics.scaling``; thincam.metrics.fidelity),
# as a caption states them.
SCALINGS = {
    "none": "none (each reconstruction only clipped to [0,1])",
    "max": "each reconstruction and reference divided by its own maximum, then clipped to [0,1]",
}
# The quality metric a table or figure shows: the first with any value. Full-reference perceptual
# ones, then PSNR, then no-reference ones (all a capture without ground truth has).
PERCEPTUAL_PREFERENCE = (
    "lpips",
    "lpips_vgg",
    "dists",
    "ms_ssim",
    "gmsd",
    "fsim",
    "vif",
    "nlpd",
    "psnr",
    "musiq",
    "clipiqa",
    "piqe",
)


def metric_conventions(lpips_net: str, scaling: str) -> str:
    """The caption sentence naming the LPIPS network a table reports and the per-image scaling
    its metrics saw: published tables differ in both, so a number is comparable only with them."""
    return (
        f"LPIPS is {METRICS[LPIPS_COLUMNS[lpips_net]].label}, v0.1 (column {LPIPS_COLUMNS[lpips_net]}). "
        f"Per-image scaling before the image metrics: {SCALINGS[scaling]}."
    )
