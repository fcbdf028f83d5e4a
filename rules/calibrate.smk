rule calibrate_psf:
    """PSF of a camera: calibrated from a capture, or simulated (mask, diffuser, metalens)."""
    input:
        capture_files,
    output:
        "results/psf/{camera}.h5",
    log:
        "logs/calibrate_psf/{camera}.log",
    benchmark:
        "benchmarks/calibrate_psf/{camera}.tsv"
    conda:
        CPU_ENV
    resources:
        mem_mb=lambda wc, attempt: 2000 * attempt,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        camera=lambda w: config["cameras"][w.camera],
        code=code("calibrate:calibrate_psf"),
    script:
        "../workflow_scripts/calibrate_psf.py"
