from thincam.logs import torch_job
from thincam.stages.dmdiff import train_unet

with torch_job(snakemake.log[0], snakemake.threads):
    train_unet(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.restorer,
        snakemake.params.loss,
        seed=snakemake.params.seed,
        n_unpaired=snakemake.params.unpaired,
        device=snakemake.params.device,
        checkpoint_dir=snakemake.params.checkpoint,
        bf16=snakemake.params.bf16,
        processes=snakemake.resources.gpu,
    )
