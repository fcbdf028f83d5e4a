from thincam.logs import log_to
from thincam.report.workflow import qualitative_figure

with log_to(snakemake.log[0]):
    qualitative_figure(
        snakemake.input.data, snakemake.input.recons, snakemake.output.png, snakemake.params.n_images
    )
