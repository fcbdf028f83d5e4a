import torch

from thincam.logs import log_to
from thincam.models.dmdiff.stages import train_on_dataset

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
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
