import os

import torch

from thincam.logs import log_to
from thincam.models.distill import distill_nsdd

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    distill_nsdd(
        snakemake.input.shards,
        snakemake.input.psf,
        snakemake.params.operator,
        snakemake.input.prior,
        os.path.dirname(snakemake.output.marker),
        snakemake.params.student,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        checkpoint_path=snakemake.params.checkpoint,
    )
