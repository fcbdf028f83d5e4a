import os

from thincam.logs import torch_job
from thincam.stages.nsdd import distill_nsdd

with torch_job(snakemake.log[0], snakemake.threads):
    distill_nsdd(
        snakemake.input.shards,
        snakemake.input.psf,
        snakemake.params.operator,
        snakemake.input.prior,
        os.path.dirname(snakemake.output.marker),
        snakemake.params.student,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        bf16=snakemake.params.bf16,
        checkpoint_path=snakemake.params.checkpoint,
        processes=snakemake.resources.gpu,
    )
