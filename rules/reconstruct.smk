rule reconstruct:
    """Every variant of a method on a dataset split: reconstructions, latency, peak memory.
    One job per method, not per variant: its data, operator, imports and models load once.
    """
    input:
        unpack(method_models),
        data="results/data/{dataset}/{split}.h5",
        psf=psf_of_dataset,
    output:
        directory(f"{RESULTS}/recon/{{dataset}}/{{split}}/{{method}}"),
    log:
        "logs/reconstruct/{dataset}/{split}/{method}.log",
    benchmark:
        "benchmarks/reconstruct/{dataset}/{split}/{method}.tsv"
    wildcard_constraints:
        split=f"{CHOICE_SPLIT}|{REPORT_SPLIT}",
        method=r"\w+",
    conda:
        TORCH_ENV
    resources:
        **retry(mem_mb=4000, runtime_min=30),
        gpu=TORCH_GPUS,
    params:
        variants=method_variants,
        models=variant_models,
        operator=method_operator,
        timing=split_timing,
        seed=config["seed"],
        device=config["device"],
        code=method_code,
        batch_size=config.get("batch_sizes", {}).get("reconstruct", 16),
        bf16=config.get("bf16", False),
    script:
        "../workflow_scripts/reconstruct.py"
