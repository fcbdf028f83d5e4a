from thincam.logs import log_to
from thincam.stages.report import quality_vs_time

with log_to(snakemake.log[0]):
    quality_vs_time(
        snakemake.input.metrics,
        snakemake.wildcards.dataset,
        snakemake.output.png,
        snakemake.input.get("table"),
        snakemake.params.lpips_net,
    )
