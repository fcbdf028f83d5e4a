from thincam.logs import torch_job
from thincam.models.dmdiff.stages import pseudo_pairs_on_dataset

with torch_job(snakemake.log[0], snakemake.threads):
    pseudo_pairs_on_dataset(
        snakemake.input.model,
        snakemake.input.base,
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        n_unpaired=snakemake.params.unpaired,
        device=snakemake.params.device,
    )
