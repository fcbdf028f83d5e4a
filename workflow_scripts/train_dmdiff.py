from thincam.logs import torch_job
from thincam.stages.dmdiff import train_dmdiff

with torch_job(snakemake.log[0], snakemake.threads):
    train_dmdiff(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.input.base,
        snakemake.output[0],
        snakemake.params.train,
        seed=snakemake.params.seed,
        n_unpaired=snakemake.params.unpaired,
        pseudo_pairs=snakemake.input.get("pseudo_pairs"),
        device=snakemake.params.device,
        checkpoint_dir=snakemake.params.checkpoint,
        bf16=snakemake.params.bf16,
        processes=snakemake.resources.gpu,
    )
