from thincam.stages.measurements import ingest_captures
from thincam.logs import log_to

with log_to(snakemake.log[0]):
    ingest_captures(
        snakemake.input.psf,
        snakemake.params.dataset,
        snakemake.wildcards.dataset,
        dict(zip(["train", "val", "test"], snakemake.output)),
        seed=snakemake.params.seed,
    )
