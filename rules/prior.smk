rule train_prior:
    """A tiny DDPM prior (diffusers UNet2DModel) trained on a dataset's clean training images."""
    input:
        data=lambda w: f"results/data/{config['priors'][w.prior]['dataset']}/train.h5",
    output:
        directory(f"{RESULTS}/prior/{{prior}}"),
    log:
        "logs/train_prior/{prior}.log",
    benchmark:
        "benchmarks/train_prior/{prior}.tsv"
    wildcard_constraints:
        prior="|".join(p for p in config.get("priors", {}) if not is_adm(p)) or "^$",
    priority: 50  # on the critical path: start it before the cheap jobs
    conda:
        TORCH_ENV
    threads: job_threads("train_prior")
    resources:
        **retry(mem_mb=4000, runtime_min=60),
        gpu=TRAIN_GPUS,
    params:
        train=lambda w: config["priors"][w.prior]["train"],
        checkpoint=f"{RESULTS}/checkpoints/train_prior/{{prior}}",
        seed=config["seed"],
        device=config["device"],
        bf16=config.get("bf16", False),
        code=code("prior:train_prior"),
    script:
        "../workflow_scripts/train_prior.py"


rule register_adm_prior:
    """A published ADM checkpoint checked to load (DiffUNet) and named by results/prior/{prior}/adm.json."""
    input:
        checkpoint=lambda w: config["priors"][w.prior]["path"],
    output:
        directory(f"{RESULTS}/prior/{{prior}}"),
    log:
        "logs/register_adm_prior/{prior}.log",
    wildcard_constraints:
        prior="|".join(p for p in config.get("priors", {}) if is_adm(p)) or "^$",
    conda:
        CPU_ENV
    resources:
        **retry(mem_mb=8000, runtime_min=10),
    params:
        architecture=lambda w: config["priors"][w.prior]["architecture"],
        code=code("prior:register_adm_prior"),
    script:
        "../workflow_scripts/register_adm_prior.py"
