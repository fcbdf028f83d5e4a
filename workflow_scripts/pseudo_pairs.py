from thincam.logs import torch_job
from thincam.stages.dmdiff import pseudo_pairs

with torch_job(snakemake.log[0], snakemake.threads):
    pseudo_pairs(
        snakemake.input.model,
        snakemake.input.base,
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        n_unpaired=snakemake.params.unpaired,
        min_gain_db=snakemake.params.min_gain_db,
        device=snakemake.params.device,
    )
