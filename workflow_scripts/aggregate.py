from thincam.logs import log_to
from thincam.stages.report import aggregate

with log_to(snakemake.log[0]):
    aggregate(
        snakemake.input.metrics,
        snakemake.params.recons,
        snakemake.input.data,
        snakemake.output.metrics,
        snakemake.params.tables,
        pseudo=snakemake.params.pseudo,
        capture_tables=snakemake.params.capture_tables,
        lpips_net=snakemake.params.lpips_net,
    )
