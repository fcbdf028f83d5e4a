from thincam.logs import torch_job
from thincam.stages.prior import train_prior

with torch_job(snakemake.log[0], snakemake.threads):
    train_prior(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.train,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        checkpoint_dir=snakemake.params.checkpoint,
        bf16=snakemake.params.bf16,
        processes=snakemake.resources.gpu,
    )
