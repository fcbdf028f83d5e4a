from thincam.logs import torch_job
from thincam.models.dmdiff.stages import pretrain_base_on_dataset

with torch_job(snakemake.log[0], snakemake.threads):
    pretrain_base_on_dataset(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.pretrain,
        seed=snakemake.params.seed,
    )
