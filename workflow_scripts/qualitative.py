from thincam.logs import log_to
from thincam.stages.report import qualitative

with log_to(snakemake.log[0]):
    qualitative(
        snakemake.input.data, snakemake.input.recons, snakemake.output.png, snakemake.params.n_images
    )
