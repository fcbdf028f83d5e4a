from thincam.logs import torch_job
from thincam.stages.prior import register_adm_prior

with torch_job(snakemake.log[0], snakemake.threads):
    register_adm_prior(snakemake.input.checkpoint, snakemake.params.architecture, snakemake.output[0])
