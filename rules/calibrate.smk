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
        **retry(mem_mb=2000, runtime_min=10),
    params:
        camera=lambda w: config["cameras"][w.camera],
        code=code("calibrate:calibrate_psf"),
    script:
        "../workflow_scripts/calibrate_psf.py"
