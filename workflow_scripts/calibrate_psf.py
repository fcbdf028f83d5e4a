from thincam.logs import log_to
from thincam.stages.calibrate import calibrate_psf

with log_to(snakemake.log[0]):
    calibrate_psf(snakemake.params.camera, snakemake.output[0])
