rule evaluate:
    """Per-image metrics of one reconstruction: fidelity, perceptual, consistency, latency."""
    input:
        recon="results/recon/{dataset}/{method}/{variant}.h5",
        data="results/data/{dataset}/test.h5",
        psf=psf_of_dataset,
    output:
        "results/metrics/{dataset}/{method}/{variant}.csv",
    params:
        weights_dir=config.get("metrics", {}).get("weights_dir"),
        device=config["device"],
        code=code(
            *CODE_PHYSICS,
            "metrics.fidelity",
            "metrics.perceptual",
            "metrics.evaluate",
        ),
    log:
        "logs/evaluate/{dataset}/{method}/{variant}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{method}/{variant}.tsv"
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        CPU_ENV
    script:
        "../workflow_scripts/evaluate.py"
