rule simulate_measurements:
    """Clean images through the camera model, Poisson-Gaussian noise, quantisation, splits."""
    input:
        unpack(noise_capture),
        psf=psf_of_dataset,
    output:
        expand("results/data/{{dataset}}/{split}.h5", split=SPLITS),
    log:
        "logs/simulate_measurements/{dataset}.log",
    benchmark:
        "benchmarks/simulate_measurements/{dataset}.tsv"
    wildcard_constraints:
        dataset="|".join(simulated_datasets()) or "^$",
    conda:
        TORCH_ENV
    resources:
        **retry(mem_mb=4000, runtime_min=20),
    params:
        dataset=measurement_params,
        seed=config["seed"],
        code=code("measurements:simulate_measurements"),
    script:
        "../workflow_scripts/simulate_measurements.py"


rule ingest_captures:
    """Real captures (and references where they exist) into the dataset layout."""
    input:
        psf=psf_of_dataset,
        captures=lambda w: config["datasets"][w.dataset]["captures"]["path"],
    output:
        expand("results/data/{{dataset}}/{split}.h5", split=SPLITS),
    log:
        "logs/ingest_captures/{dataset}.log",
    benchmark:
        "benchmarks/ingest_captures/{dataset}.tsv"
    wildcard_constraints:
        dataset="|".join(ingested_datasets()) or "^$",
    conda:
        CPU_ENV
    resources:
        **retry(mem_mb=4000, runtime_min=20),
    params:
        dataset=measurement_params,
        seed=config["seed"],
        code=code("measurements:ingest_captures"),
    script:
        "../workflow_scripts/ingest_captures.py"
