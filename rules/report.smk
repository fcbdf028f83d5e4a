from thincam.registry import metric_conventions


localrules:
    aggregate,
    quality_vs_time,
    qualitative,
    sweep,
    capture_figure,
    alpha_sweep_figure,


rule aggregate:
    """All per-image metrics -> results/tables/metrics.csv and the papers' tables."""
    input:
        metrics=metric_csvs(),
        recons=recon_dirs(recon_files()),
        data=recon_data_files(),
        pseudo=[r["file"] for r in pseudo_pair_reports().values()],
    output:
        metrics=report(
            f"{RESULTS}/tables/metrics.csv",
            category="Tables",
            caption="../report/metrics.rst",
        ),
        tables=[
            report(path, category="Tables", caption="../report/metrics.rst")
            for path in [*paper_tables(), *capture_tables()]
        ],
    log:
        "logs/aggregate.log",
    benchmark:
        "benchmarks/aggregate.tsv"
    conda:
        CPU_ENV
    params:
        recons=recon_files(),
        tables=paper_tables(),
        capture_tables=capture_tables(),
        pseudo=pseudo_pair_reports(),
        lpips_net=config["metrics"]["lpips"],
        conventions=metric_conventions(
            config["metrics"]["lpips"], config["metrics"]["scaling"]
        ),
        code=code("report:aggregate"),
    script:
        "../workflow_scripts/aggregate.py"


rule quality_vs_time:
    """Best available perceptual metric against median latency (NSDD Fig. 1)."""
    input:
        unpack(figure_inputs),
    output:
        png=report(
            f"{RESULTS}/figures/quality_vs_time_{{dataset}}.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/quality_vs_time.rst",
        ),
        pdf=f"{RESULTS}/figures/quality_vs_time_{{dataset}}.pdf",
    log:
        "logs/figures/quality_vs_time_{dataset}.log",
    benchmark:
        "benchmarks/figures/quality_vs_time_{dataset}.tsv"
    conda:
        CPU_ENV
    params:
        lpips_net=config["metrics"]["lpips"],
        code=code("report:quality_vs_time"),
    script:
        "../workflow_scripts/quality_vs_time.py"


rule sweep:
    """Metric against the swept parameter of each method (NSDD Fig. 3)."""
    input:
        f"{RESULTS}/tables/metrics.csv",
    output:
        png=report(
            f"{RESULTS}/figures/sweep_{{dataset}}.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/sweep.rst",
        ),
        pdf=f"{RESULTS}/figures/sweep_{{dataset}}.pdf",
    log:
        "logs/figures/sweep_{dataset}.log",
    benchmark:
        "benchmarks/figures/sweep_{dataset}.tsv"
    conda:
        CPU_ENV
    params:
        sweeps=lambda w: config["datasets"][w.dataset]["sweeps"],
        lpips_net=config["metrics"]["lpips"],
        code=code("report:sweep"),
    script:
        "../workflow_scripts/sweep.py"


rule qualitative:
    """Measurement, each method's chosen variant, reference for a few test images (NSDD Fig. 5)."""
    input:
        unpack(figure_inputs),
        data=f"results/data/{{dataset}}/{REPORT_SPLIT}.h5",
        recons=lambda w: recon_dirs(split_recons(w.dataset, REPORT_SPLIT)),
        per_image=f"{RESULTS}/metrics/{{dataset}}/{REPORT_SPLIT}.csv",
    output:
        png=report(
            f"{RESULTS}/figures/qualitative_{{dataset}}.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/qualitative.rst",
        ),
        pdf=f"{RESULTS}/figures/qualitative_{{dataset}}.pdf",
    log:
        "logs/figures/qualitative_{dataset}.log",
    benchmark:
        "benchmarks/figures/qualitative_{dataset}.tsv"
    conda:
        CPU_ENV
    params:
        recons=lambda w: split_recons(w.dataset, REPORT_SPLIT),
        n_images=config["figures"].get("qualitative_images", 4),
        skip=lambda w: [("dmdiff", v) for v in alpha_variants(w.dataset)],
        lpips_net=config["metrics"]["lpips"],
        code=code("report:qualitative"),
    script:
        "../workflow_scripts/qualitative.py"


rule capture_figure:
    """A real capture beside its reconstructions, each with its consistency (the DiffuserCam hand)."""
    input:
        data=f"results/data/{{dataset}}/{REPORT_SPLIT}.h5",
        recons=lambda w: recon_dirs(capture_recons(w)),
        per_image=f"{RESULTS}/metrics/{{dataset}}/{REPORT_SPLIT}.csv",
    output:
        png=report(
            f"{RESULTS}/figures/capture_{{dataset}}.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/capture.rst",
        ),
        pdf=f"{RESULTS}/figures/capture_{{dataset}}.pdf",
    log:
        "logs/figures/capture_{dataset}.log",
    benchmark:
        "benchmarks/figures/capture_{dataset}.tsv"
    conda:
        CPU_ENV
    params:
        recons=capture_recons,
        title=lambda w: w.dataset,
        code=code("report:capture_figure"),
    script:
        "../workflow_scripts/capture_figure.py"


rule alpha_sweep_figure:
    """One scene at each decoder mix alpha, zoomed, beside PSNR and the perceptual metric (DMDiff)."""
    input:
        table=f"{RESULTS}/tables/alpha_sweep.csv",
        data=f"results/data/{{dataset}}/{REPORT_SPLIT}.h5",
        recons=f"{RESULTS}/recon/{{dataset}}/{REPORT_SPLIT}/dmdiff",
    output:
        png=report(
            f"{RESULTS}/figures/alpha_sweep_{{dataset}}.png",
            category="Figures",
            subcategory="{dataset}",
            caption="../report/alpha_sweep.rst",
        ),
        pdf=f"{RESULTS}/figures/alpha_sweep_{{dataset}}.pdf",
    log:
        "logs/figures/alpha_sweep_{dataset}.log",
    benchmark:
        "benchmarks/figures/alpha_sweep_{dataset}.tsv"
    wildcard_constraints:
        dataset=config.get("tables", {}).get("alpha_sweep") or "^$",
    conda:
        CPU_ENV
    params:
        recons=lambda w: [
            f"{RESULTS}/recon/{w.dataset}/{REPORT_SPLIT}/dmdiff/{v}.h5"
            for v in alpha_variants(w.dataset)
        ],
        code=code("report:alpha_sweep_figure"),
    script:
        "../workflow_scripts/alpha_sweep.py"
