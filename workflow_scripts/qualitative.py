from thincam.logs import log_to
from thincam.stages.report import qualitative

with log_to(snakemake.log[0]):
    qualitative(
        snakemake.input.data,
        snakemake.params.recons,
        snakemake.input.per_image,
        snakemake.output.png,
        snakemake.params.n_images,
        snakemake.input.metrics,
        snakemake.input.get("table"),
        snakemake.params.skip,
        snakemake.params.lpips_net,
    )
