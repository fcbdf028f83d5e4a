from thincam.logs import torch_job
from thincam.models.dmdiff.stages import train_on_dataset

with torch_job(snakemake.log[0], snakemake.threads):
    train_on_dataset(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.input.base,
        snakemake.output[0],
        snakemake.params.train,
        seed=snakemake.params.seed,
        n_unpaired=snakemake.params.unpaired,
        pseudo_pairs=snakemake.input.get("pseudo_pairs"),
        device=snakemake.params.device,
    )
