from thincam.logs import log_to
from thincam.models.distill import distill_nsdd

with log_to(snakemake.log[0]):
    distill_nsdd(
        snakemake.input.shards,
        snakemake.input.psf,
        snakemake.params.operator,
        snakemake.input.prior,
        snakemake.output[0],
        snakemake.params.student,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
    )
