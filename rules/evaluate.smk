rule evaluate:
    """Per-image metrics of one reconstruction: fidelity, perceptual, consistency, latency."""
    input:
        recon="results/recon/{dataset}/{split}/{method}/{variant}.h5",
        data="results/data/{dataset}/{split}.h5",
        psf=psf_of_dataset,
    output:
        "results/metrics/{dataset}/{split}/{method}/{variant}.csv",
    log:
        "logs/evaluate/{dataset}/{split}/{method}/{variant}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{split}/{method}/{variant}.tsv"
    wildcard_constraints:
        split=f"{CHOICE_SPLIT}|{REPORT_SPLIT}",
    conda:
        TORCH_ENV
    threads: job_threads("evaluate")
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
        gpu=TORCH_GPUS,
    params:
        weights_dir=config.get("metrics", {}).get("weights_dir"),
        device=config["device"],
        code=code("evaluate:evaluate"),
    script:
        "../workflow_scripts/evaluate.py"
