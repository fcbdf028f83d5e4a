import torch

from thincam.logs import log_to
from thincam.models.dmdiff.stages import pretrain_base_on_dataset

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    pretrain_base_on_dataset(
        snakemake.input.data,
        snakemake.output[0],
        snakemake.params.pretrain,
        seed=snakemake.params.seed,
    )
