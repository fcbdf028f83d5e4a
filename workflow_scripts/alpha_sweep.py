from thincam.logs import log_to
from thincam.report.figures import alpha_sweep

with log_to(snakemake.log[0]):
    alpha_sweep(snakemake.input[0], snakemake.wildcards.dataset, snakemake.output.png)
