from thincam.stages.measurements import simulate_measurements
from thincam.logs import torch_job

with torch_job(snakemake.log[0], snakemake.threads):
    simulate_measurements(
        snakemake.input.psf,
        snakemake.params.dataset,
        snakemake.wildcards.dataset,
        dict(zip(["train", "val", "test"], snakemake.output)),
        seed=snakemake.params.seed,
        noise_capture_path=snakemake.input.get("noise_capture"),
    )
