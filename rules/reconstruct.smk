rule reconstruct:
    """Any method and variant on a dataset split: reconstructions, latency, peak memory."""
    input:
        unpack(method_models),
        data="results/data/{dataset}/{split}.h5",
        psf=psf_of_dataset,
    output:
        "results/recon/{dataset}/{split}/{method}/{variant}.h5",
    log:
        "logs/reconstruct/{dataset}/{split}/{method}/{variant}.log",
    benchmark:
        "benchmarks/reconstruct/{dataset}/{split}/{method}/{variant}.tsv"
    wildcard_constraints:
        split=f"{CHOICE_SPLIT}|{REPORT_SPLIT}",
    conda:
        TORCH_ENV
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        gpu=TORCH_GPUS,
    params:
        params=variant_params,
        operator=method_operator,
        timing=split_timing,
        seed=config["seed"],
        device=config["device"],
        code=method_code,
        batch_size=config.get("batch_sizes", {}).get("reconstruct", 16),
        bf16=config.get("bf16", False),
    script:
        "../workflow_scripts/reconstruct.py"
