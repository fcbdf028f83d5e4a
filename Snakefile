# thincam: diffusion-prior reconstruction for thin cameras.
# The whole pipeline reads top to bottom: PSF calibration -> measurements -> reconstruction
# baselines -> evaluation -> tables and figures. Each rule is a thin call into src/thincam.


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/calibrate.smk"
include: "rules/measurements.smk"
include: "rules/reconstruct.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        all_outputs(),
    default_target: True


rule figures:
    """Regenerate every table and figure from existing results (no reconstruction re-runs)."""
    input:
        report_outputs(),
