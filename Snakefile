# thincam: diffusion-prior reconstruction for thin cameras.
# The whole pipeline reads top to bottom: PSF calibration -> measurements -> reconstruction
# baselines -> evaluation -> tables and figures. Each rule is a thin call into src/thincam.


from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless the user gives a config (--configfile my_config.yaml): then that
# config replaces the default entirely instead of being merged into it.
if not config:

    configfile: "config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/calibrate.smk"
include: "rules/measurements.smk"
include: "rules/prior.smk"
include: "rules/nsdd.smk"
include: "rules/dmdiff.smk"
include: "rules/reconstruct.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


# The seeds' runs of `snakemake claims` are this workflow as modules, without claims of their own.
if "claims" in config:

    include: "rules/claims.smk"


rule all:
    default_target: True
    input:
        all_outputs(),


rule figures:
    """Regenerate every table and figure from existing results (no reconstruction re-runs)."""
    input:
        report_outputs(),
