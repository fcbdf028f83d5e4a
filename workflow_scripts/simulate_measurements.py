import torch

from thincam.data.simulate import simulate_measurements
from thincam.logs import log_to

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    simulate_measurements(
        snakemake.input.psf,
        snakemake.params.dataset,
        snakemake.wildcards.dataset,
        dict(zip(["train", "val", "test"], snakemake.output)),
        seed=snakemake.params.seed,
    )
