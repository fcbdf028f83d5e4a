# `snakemake claims`: the demo's paper claims over seeds (thincam.report.claims). The demo's own
# run is one seed; each other seed is this workflow again as a module, with that seed, its own
# run_dir and logs, only the methods the claims read, and the demo's measurements and PSFs (the
# data rules are not imported, so those files come from the demo's rules).
from thincam.report.claims import seed_config  # noqa: E402

for claim_seed in config["claims"]["seeds"]:
    if claim_seed == config["seed"]:
        continue
    seed_module = f"seed{claim_seed}"
    seed_rules = f"seed{claim_seed}_"

    module:
        name: seed_module
        snakefile:
            str(Path(workflow.basedir) / "Snakefile")
        config:
            seed_config(config, claim_seed)
        replace_prefix:
            {
                "logs/": f"logs/seeds/{claim_seed}/",
                "benchmarks/": f"benchmarks/seeds/{claim_seed}/",
            }

    use rule * from seed_module exclude calibrate_psf, simulate_measurements, ingest_captures as seed_rules*


localrules:
    claims,


rule claims:
    """Each claim's value in every seed's run, its mean and spread, and a verdict; with a figure."""
    input:
        **seed_tables(),
    output:
        table=report(
            "results/claims/claims.csv",
            category="Tables",
            caption="../report/claims.rst",
        ),
        values="results/claims/values.csv",
        png=report(
            "results/claims/claims.png",
            category="Figures",
            caption="../report/claims.rst",
        ),
        pdf="results/claims/claims.pdf",
    log:
        "logs/claims.log",
    conda:
        CPU_ENV
    params:
        tables=lambda w, input: seed_table_paths(input),
        code=code("claims:claims"),
    script:
        "../workflow_scripts/claims.py"
