import os

from thincam.logs import torch_job
from thincam.models.training import launch
from thincam.stages.nsdd import distill_nsdd

with torch_job(snakemake.log[0], snakemake.threads):
    launch(
        distill_nsdd,
        (snakemake.input.shards, snakemake.input.psf, snakemake.params.operator, snakemake.input.prior),
        snakemake.resources.gpu,
        out_dir=os.path.dirname(snakemake.output.marker),
        cfg=snakemake.params.student,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        bf16=snakemake.params.bf16,
        checkpoint_path=snakemake.params.checkpoint,
    )
