rule reconstruct:
    """Any method and variant of a dataset's test split: reconstructions, latency, peak memory."""
    input:
        unpack(method_models),
        data="results/data/{dataset}/test.h5",
        psf=psf_of_dataset,
    output:
        "results/recon/{dataset}/{method}/{variant}.h5",
    log:
        "logs/reconstruct/{dataset}/{method}/{variant}.log",
    benchmark:
        "benchmarks/reconstruct/{dataset}/{method}/{variant}.tsv"
    conda:
        TORCH_ENV
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
        gpu=TORCH_GPUS,
    params:
        params=variant_params,
        timing=config["timing"],
        seed=config["seed"],
        device=config["device"],
        code=method_code,
    script:
        "../workflow_scripts/reconstruct.py"
