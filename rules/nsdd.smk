rule ddnm_targets:
    """One shard of DDNM+ teacher targets of the training split (a GPU job on a cluster)."""
    input:
        data="results/data/{dataset}/train.h5",
        psf=psf_of_dataset,
        prior=prior_dir,
    output:
        f"{RESULTS}/targets/{{dataset}}/shard-{{shard}}.h5",
    log:
        "logs/ddnm_targets/{dataset}/shard-{shard}.log",
    benchmark:
        "benchmarks/ddnm_targets/{dataset}/shard-{shard}.tsv"
    wildcard_constraints:
        shard=r"\d{4}",
    priority: 45  # on the critical path: start it before the cheap jobs
    conda:
        TORCH_ENV
    resources:
        **retry(mem_mb=4000, runtime_min=60),
        gpu=TORCH_GPUS,
    params:
        operator=lambda w: nsdd_cfg(w).get("operator", {}),
        teacher=lambda w: nsdd_cfg(w)["teacher"],
        n_shards=lambda w: nsdd_cfg(w)["n_shards"],
        batch_size=lambda w: nsdd_cfg(w)["batch_size"],
        seed=config["seed"],
        device=config["device"],
        code=code("nsdd:ddnm_targets"),
        bf16=config.get("bf16", False),
    script:
        "../workflow_scripts/ddnm_targets.py"


rule distill_nsdd:
    """The single-pass NSDD student (or its no-null-space ablation) from the target shards only."""
    input:
        shards=target_shards,
        psf=psf_of_dataset,
        prior=prior_dir,
    output:
        # Listed one by one (not the folder) so that Snakemake's clean-up of a killed job keeps
        # the checkpoint, which lives outside them, and a re-run resumes from it.
        model=directory(f"{RESULTS}/{{student}}/{{dataset}}/model"),
        loss=f"{RESULTS}/{{student}}/{{dataset}}/loss.csv",
        plot=f"{RESULTS}/{{student}}/{{dataset}}/loss.png",
        marker=f"{RESULTS}/{{student}}/{{dataset}}/training.json",
    log:
        "logs/distill_nsdd/{student}/{dataset}.log",
    benchmark:
        "benchmarks/distill_nsdd/{student}/{dataset}.tsv"
    wildcard_constraints:
        student="|".join(STUDENTS),
    priority: 40  # on the critical path: start it before the cheap jobs
    conda:
        TORCH_ENV
    threads: job_threads("distill_nsdd")
    resources:
        **retry(mem_mb=4000, runtime_min=120),
        gpu=TRAIN_GPUS,
    params:
        operator=lambda w: nsdd_cfg(w).get("operator", {}),
        student=lambda w: {
            **nsdd_cfg(w)["student"],
            "mode": STUDENTS[w.student],
        },
        checkpoint=f"{RESULTS}/checkpoints/distill_nsdd/{{student}}/{{dataset}}",
        seed=config["seed"],
        device=config["device"],
        code=code("nsdd:distill_nsdd"),
        bf16=config.get("bf16", False),
    script:
        "../workflow_scripts/distill_nsdd.py"
