from thincam.logs import torch_job
from thincam.models.prior import train_prior_on_dataset

with torch_job(snakemake.log[0], snakemake.threads):
    train_prior_on_dataset(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.train,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
    )
