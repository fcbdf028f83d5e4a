from thincam.logs import torch_job
from thincam.stages.reconstruct import reconstruct

with torch_job(snakemake.log[0], snakemake.threads):
    reconstruct(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.output[0],
        dataset=snakemake.wildcards.dataset,
        method=snakemake.wildcards.method,
        variant=snakemake.wildcards.variant,
        params=snakemake.params.params,
        operator=snakemake.params.operator,
        timing=snakemake.params.timing,
        seed=snakemake.params.seed,
        device=snakemake.params.device,
        batch_size=snakemake.params.batch_size,
        bf16=snakemake.params.bf16,
        models={k: v for k, v in snakemake.input.items() if k not in ("data", "psf")},
    )
