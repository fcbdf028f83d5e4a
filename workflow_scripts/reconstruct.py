from thincam.logs import torch_job
from thincam.stages.reconstruct import reconstruct

with torch_job(snakemake.log[0], snakemake.threads):
    reconstruct(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        variants=snakemake.params.variants,
        models=snakemake.params.models,
        operator=snakemake.params.operator,
        timing=snakemake.params.timing,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        batch_size=snakemake.params.batch_size,
        bf16=snakemake.params.bf16,
    )
