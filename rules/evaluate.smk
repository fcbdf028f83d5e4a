rule evaluate:
    """Per-image metrics of every run of a dataset split: fidelity, perceptual, consistency,
    latency (one job per split: loading the metrics costs more than computing them)."""
    input:
        recons=lambda w: recon_dirs(split_recons(w.dataset, w.split)),
        data="results/data/{dataset}/{split}.h5",
        psf=psf_of_dataset,
    output:
        f"{RESULTS}/metrics/{{dataset}}/{{split}}.csv",
    log:
        "logs/evaluate/{dataset}/{split}.log",
    benchmark:
        "benchmarks/evaluate/{dataset}/{split}.tsv"
    wildcard_constraints:
        split=f"{CHOICE_SPLIT}|{REPORT_SPLIT}",
    conda:
        TORCH_ENV
    threads: job_threads("evaluate")
    resources:
        **retry(mem_mb=4000, runtime_min=20),
        gpu=TORCH_GPUS,
    params:
        recons=lambda w: split_recons(w.dataset, w.split),
        weights_dir=config.get("metrics", {}).get("weights_dir"),
        scaling=config["metrics"]["scaling"],
        device=config["device"],
        code=code("evaluate:evaluate"),
    script:
        "../workflow_scripts/evaluate.py"
