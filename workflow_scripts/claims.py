from thincam.logs import log_to
from thincam.stages.claims import claims

with log_to(snakemake.log[0]):
    claims(
        snakemake.params.tables,
        snakemake.output.table,
        snakemake.output.values,
        snakemake.output.png,
    )
