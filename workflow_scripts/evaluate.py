from thincam.logs import torch_job
from thincam.stages.evaluate import evaluate

with torch_job(snakemake.log[0], snakemake.threads):
    evaluate(
        snakemake.params.recons,
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        weights_dir=snakemake.params.weights_dir,
        device=snakemake.params.device,
        scaling=snakemake.params.scaling,
    )
