from thincam.logs import log_to
from thincam.report.workflow import aggregate_runs

with log_to(snakemake.log[0]):
    aggregate_runs(
        snakemake.input.metrics,
        snakemake.input.recons,
        snakemake.input.data,
        snakemake.output.metrics,
        snakemake.params.tables,
    )
