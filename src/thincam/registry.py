"""The one list of splits, reconstruction methods and metrics.

Rules, tables, figures, config checks and tests import these names instead of spelling them
again; adding a method is one entry here plus its ``make_solver`` in the module named.
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


METHODS: dict[str, Method] = {
    "wiener": Method("Wiener", "solvers.wiener"),
    "admm": Method("ADMM", "solvers.admm"),
    "dps": Method("DPS", "solvers.dps", needs="prior", gradient=True),
    "ddnm": Method("DDNM+", "solvers.ddnm", needs="prior"),
    # DeepInverse's samplers on the same prior (solvers.deepinv_prior wraps it as their denoiser)
    "deepinv_dps": Method("DPS (deepinv)", "solvers.deepinv_dps", needs="prior", gradient=True),
    "diffpir": Method("DiffPIR (deepinv)", "solvers.diffpir", needs="prior"),
    "ddrm": Method("DDRM (deepinv)", "solvers.ddrm", needs="prior", needs_svd=True),
    "nsdd": Method("NSDD", "models.nsdd", needs="student"),
    "nsdd_full": Method("NSDD (full image)", "models.nsdd", needs="student"),
    "dmdiff": Method("DMDiff", "models.dmdiff.restore", needs="dmdiff", every_variant_reported=True),
    "unet": Method("UNet (supervised)", "models.restorer", needs="restorer"),
}
# The NSDD students: the paper's null-space student and its full-image ablation.
STUDENTS = {"nsdd": "null", "nsdd_full": "full"}


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
