import torch

from thincam.logs import log_to
from thincam.models.dmdiff.stages import pseudo_pairs_on_dataset

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    pseudo_pairs_on_dataset(
        snakemake.input.model,
        snakemake.input.base,
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        n_unpaired=snakemake.params.unpaired,
        device=snakemake.params.device,
    )
