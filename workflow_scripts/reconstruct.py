import torch

from thincam.logs import log_to
from thincam.solvers.run import run_reconstruction

# Oversubscribed torch threads ran ADMM and metrics 3-60x slower on these shared cores.
torch.set_num_threads(snakemake.threads)
with log_to(snakemake.log[0]):
    run_reconstruction(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        variant=snakemake.wildcards.variant,
        params=snakemake.params.params,
        timing=snakemake.params.timing,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        models={k: v for k, v in snakemake.input.items() if k not in ("data", "psf")},
    )
