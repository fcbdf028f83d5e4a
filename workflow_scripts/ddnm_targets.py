from thincam.stages.nsdd import ddnm_targets
from thincam.logs import torch_job

with torch_job(snakemake.log[0], snakemake.threads):
    ddnm_targets(
        snakemake.input.data,
        snakemake.input.psf,
        snakemake.params.operator,
        snakemake.input.prior,
        snakemake.output[0],
        shard=int(snakemake.wildcards.shard),
        n_shards=snakemake.params.n_shards,
        teacher=snakemake.params.teacher,
        base_seed=snakemake.params.seed,
        dataset=snakemake.wildcards.dataset,
        batch_size=snakemake.params.batch_size,
        device=snakemake.params.device,
        bf16=snakemake.params.bf16,
    )
