from thincam.data.simulate import simulate_measurements
from thincam.logs import log_to

with log_to(snakemake.log[0]):
    simulate_measurements(
        snakemake.input.psf,
        snakemake.params.dataset,
        snakemake.wildcards.dataset,
        dict(zip(["train", "val", "test"], snakemake.output)),
        seed=snakemake.params.seed,
    )
