from thincam.logs import log_to
from thincam.stages.report import capture_figure

with log_to(snakemake.log[0]):
    capture_figure(
        snakemake.input.data,
        snakemake.params.recons,
        snakemake.input.per_image,
        snakemake.output.png,
        snakemake.params.title,
    )
