from thincam.logs import torch_job
from thincam.stages.dmdiff import pretrain_dmdiff_base

with torch_job(snakemake.log[0], snakemake.threads):
    pretrain_dmdiff_base(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.pretrain,
        seed=snakemake.params.seed,
        checkpoint_dir=snakemake.params.checkpoint,
    )
