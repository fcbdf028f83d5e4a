rule pretrain_dmdiff_base:
    """The tiny SD-Turbo-class base (VAE, then UNet) on the clean training images."""
    input:
        data="results/data/{dataset}/train.h5",
    output:
        directory(f"{RESULTS}/dmdiff/{{dataset}}/base"),
    log:
        "logs/pretrain_dmdiff_base/{dataset}.log",
    benchmark:
        "benchmarks/pretrain_dmdiff_base/{dataset}.tsv"
    priority: 30  # on the critical path: start it before the cheap jobs
    conda:
        CPU_ENV  # the tiny base only: paper scale loads a local SD-Turbo instead
    threads: job_threads("pretrain_dmdiff_base")
    resources:
        **retry(mem_mb=4000, runtime_min=60),
    params:
        pretrain=lambda w: dmdiff_spec(w)["base"]["pretrain"],
        checkpoint=f"{RESULTS}/checkpoints/pretrain_dmdiff_base/{{dataset}}",
        seed=config["seed"],
        code=code("dmdiff:pretrain_dmdiff_base"),
    script:
        "../workflow_scripts/pretrain_dmdiff_base.py"


rule train_dmdiff:
    """LoRA + SVDA on the positive/neutral/negative paths; negative_path is the stage-1 model."""
    input:
        unpack(dmdiff_pseudo_pairs),
        data="results/data/{dataset}/train.h5",
        psf=psf_of_dataset,
        base=dmdiff_base_dir,
    output:
        directory(f"{RESULTS}/dmdiff/{{dataset}}/{{model}}/model"),
    log:
        "logs/train_dmdiff/{dataset}/{model}.log",
    benchmark:
        "benchmarks/train_dmdiff/{dataset}/{model}.tsv"
    conda:
        TORCH_ENV
    threads: job_threads("train_dmdiff")
    resources:
        **retry(mem_mb=4000, runtime_min=60),
        gpu=TRAIN_GPUS,
    params:
        train=dmdiff_train_cfg,
        unpaired=lambda w: dmdiff_spec(w)["unpaired"],
        checkpoint=f"{RESULTS}/checkpoints/train_dmdiff/{{dataset}}/{{model}}",
        seed=config["seed"],
        device=config["device"],
        bf16=config.get("bf16", False),
        code=code("dmdiff:train_dmdiff"),
    script:
        "../workflow_scripts/train_dmdiff.py"


rule pseudo_pairs:
    """Pseudo metalens captures of the unpaired clean images from the stage-1 negative path, with
    their PSNR against the simulator's true captures (the gate for using them)."""
    input:
        model=f"{RESULTS}/dmdiff/{{dataset}}/{NEGATIVE_PATH_MODEL}/model",
        base=dmdiff_base_dir,
        data="results/data/{dataset}/train.h5",
        psf=psf_of_dataset,
    output:
        f"{RESULTS}/dmdiff/{{dataset}}/pseudo_pairs.h5",
    log:
        "logs/pseudo_pairs/{dataset}.log",
    benchmark:
        "benchmarks/pseudo_pairs/{dataset}.tsv"
    priority: 25  # on the critical path: start it before the cheap jobs
    conda:
        TORCH_ENV
    resources:
        **retry(mem_mb=4000, runtime_min=30),
        gpu=TORCH_GPUS,
    params:
        unpaired=lambda w: dmdiff_spec(w)["unpaired"],
        min_gain_db=lambda w: dmdiff_spec(w)["pseudo_min_gain_db"],
        device=config["device"],
        code=code("dmdiff:pseudo_pairs"),
    script:
        "../workflow_scripts/pseudo_pairs.py"


rule train_unet:
    """The supervised UNet baseline: DMDiff's real pairs and loss, no diffusion prior."""
    input:
        data="results/data/{dataset}/train.h5",
    output:
        directory(f"{RESULTS}/unet/{{dataset}}/model"),
    log:
        "logs/train_unet/{dataset}.log",
    benchmark:
        "benchmarks/train_unet/{dataset}.tsv"
    conda:
        TORCH_ENV
    threads: job_threads("train_unet")
    resources:
        **retry(mem_mb=2000, runtime_min=30),
        gpu=TRAIN_GPUS,
    params:
        restorer=lambda w: dmdiff_spec(w)["restorer"],
        loss=dmdiff_loss_cfg,
        unpaired=lambda w: dmdiff_spec(w)["unpaired"],
        checkpoint=f"{RESULTS}/checkpoints/train_unet/{{dataset}}",
        seed=config["seed"],
        device=config["device"],
        bf16=config.get("bf16", False),
        code=code("dmdiff:train_unet"),
    script:
        "../workflow_scripts/train_unet.py"
