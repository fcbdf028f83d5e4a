import hashlib
import os
import sys
from pathlib import Path

from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from thincam.config_checks import check_config  # noqa: E402

validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
check_config(config, root=Path.cwd())  # Snakemake resolves inputs from the workdir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CPU_ENV = "../envs/thincam-cpu.yaml"
GPU_ENV = "../envs/thincam-gpu.yaml"
SPLITS = ["train", "val", "test"]


def code(*modules):
    """Hash of library modules a rule runs: Snakemake does not see edits inside imports."""
    digest = hashlib.sha256()
    for module in modules:
        package = SRC.joinpath("thincam", *module.split("."))
        path = package.with_suffix(".py")
        if not path.exists():
            path = package / "__init__.py"
        digest.update(module.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


CODE_IO = ("errors", "data.atomic", "data.h5io")
CODE_PHYSICS = CODE_IO + ("physics", "physics.operators")


def simulated_datasets():
    return [d for d, spec in config["datasets"].items() if "source" in spec]


def ingested_datasets():
    return [d for d, spec in config["datasets"].items() if "captures" in spec]


MEASUREMENT_KEYS = (
    "camera",
    "image_size",
    "source",
    "captures",
    "operator",
    "noise",
    "splits",
)


def measurement_params(wildcards):
    """Only the keys that shape a dataset's files: editing its methods must not re-simulate it."""
    spec = config["datasets"][wildcards.dataset]
    return {key: spec[key] for key in MEASUREMENT_KEYS if key in spec}


def dataset_camera(wildcards):
    return config["datasets"][wildcards.dataset]["camera"]


def psf_of_dataset(wildcards):
    return f"results/psf/{dataset_camera(wildcards)}.h5"


def variant_params(wildcards):
    """The parameters of one configured variant; an unknown method or variant is an error."""
    methods = config["datasets"][wildcards.dataset].get("methods", {})
    if wildcards.method not in methods:
        raise ValueError(
            f"dataset {wildcards.dataset!r} defines no method {wildcards.method!r} "
            f"(configured: {sorted(methods)})"
        )
    variants = methods[wildcards.method]
    if wildcards.variant not in variants:
        raise ValueError(
            f"method {wildcards.method!r} of dataset {wildcards.dataset!r} has no variant "
            f"{wildcards.variant!r} (configured: {sorted(variants)})"
        )
    return dict(variants[wildcards.variant])


def recon_targets():
    """(dataset, method, variant) for every configured reconstruction."""
    return [
        (dataset, method, variant)
        for dataset, spec in config["datasets"].items()
        for method, variants in spec.get("methods", {}).items()
        for variant in variants
    ]


def metric_csvs():
    return [f"results/metrics/{d}/{m}/{v}.csv" for d, m, v in recon_targets()]


def recon_files():
    return [f"results/recon/{d}/{m}/{v}.h5" for d, m, v in recon_targets()]


def datasets_with_reference():
    return [d for d in config["datasets"] if "source" in config["datasets"][d]]


def figure_files():
    names = []
    for dataset in datasets_with_reference():
        names += [f"quality_vs_time_{dataset}", f"qualitative_{dataset}"]
        if config["datasets"][dataset].get("sweeps"):
            names.append(f"sweep_{dataset}")
    names += [f"capture_{d}" for d in config["figures"]["capture_figures"]]
    return [f"results/figures/{n}.{ext}" for n in names for ext in ("png", "pdf")]


def report_outputs():
    return [
        "results/tables/metrics.csv",
        "results/tables/nsdd_main.csv",
    ] + figure_files()


def all_outputs():
    psfs = [f"results/psf/{c}.h5" for c in config["cameras"]]
    return psfs + report_outputs()


def prior_dir(wildcards):
    """A local pretrained prior when configured (no training job), else the trained default."""
    prior = config["datasets"][wildcards.dataset]["prior"]
    return config["priors"][prior].get("path") or f"results/prior/{prior}"


def nsdd_cfg(wildcards):
    return config["datasets"][wildcards.dataset]["nsdd"]


def target_shards(wildcards):
    n_shards = nsdd_cfg(wildcards)["n_shards"]
    return [
        f"results/targets/{wildcards.dataset}/shard-{k:04d}.h5" for k in range(n_shards)
    ]


METHOD_MODULES = {
    "wiener": ["solvers.wiener"],
    "admm": ["solvers.admm"],
    "dps": ["models.prior", "solvers.ddnm", "solvers.dps", "data.shards"],
    "ddnm": ["models.prior", "solvers.ddnm", "data.shards"],
    "nsdd": ["models.nsdd"],
    "nsdd_full": ["models.nsdd"],
}


def method_models(wildcards):
    """Trained models a method needs, as named inputs (none for the classic baselines)."""
    if wildcards.method in ("dps", "ddnm"):
        return {"prior": prior_dir(wildcards)}
    if wildcards.method in ("nsdd", "nsdd_full"):
        return {
            "student": f"results/{wildcards.method}/{wildcards.dataset}/distill.json"
        }
    return {}


REPORT_CODE = CODE_IO + (
    "data.atomic",
    "metrics.fidelity",
    "report.tables",
    "report.figures",
)


def paper_tables():
    """{output path: (table kind, dataset)} for the paper tables the config asks for."""
    return {
        f"results/tables/{kind}.csv": (kind, dataset)
        for kind, dataset in config.get("tables", {}).items()
        if dataset is not None
    }
