from thincam.logs import log_to
from thincam.stages.report import alpha_sweep_figure

with log_to(snakemake.log[0]):
    alpha_sweep_figure(snakemake.input.table, snakemake.input.data, snakemake.params.recons, snakemake.output.png)
