import torch

from thincam.logs import log_to
from thincam.metrics.evaluate import evaluate_for_workflow

torch.set_num_threads(snakemake.threads)  # 2 threads on shared cores ran 8-30x slower
with log_to(snakemake.log[0]):
    evaluate_for_workflow(
        snakemake.input.recon,
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        weights_dir=snakemake.params.weights_dir,
        device=snakemake.params.device,
    )
