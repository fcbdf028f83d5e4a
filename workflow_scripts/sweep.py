from thincam.logs import log_to
from thincam.stages.report import sweep

with log_to(snakemake.log[0]):
    sweep(
        snakemake.input[0],
        snakemake.wildcards.dataset,
        snakemake.output.png,
        snakemake.params.sweeps,
        snakemake.params.lpips_net,
    )
