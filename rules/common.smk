import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))

from thincam.codehash import code_hash  # noqa: E402
from thincam.config_checks import (  # noqa: E402
    check_config,
    check_unique_keys,
    coerce_numeric_strings,
)
from thincam.report.claims import claim_tables, seed_run_dir  # noqa: E402
from thincam.registry import (  # noqa: E402
    CHOICE_SPLIT,
    METHODS,
    REPORT_SPLIT,
    SPLITS,
    STUDENTS,
)

for path in workflow.configfiles:  # the default's and every --configfile
    check_unique_keys(path)  # YAML keeps the last of two equal keys without a word
# YAML reads 1e-6 (no dot) as text; mean the number (in place: the rules read this dict)
config.update(coerce_numeric_strings(config))
validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
check_config(config, root=Path.cwd())  # Snakemake resolves inputs from the workdir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# This run's models, reconstructions, metrics, tables and figures. Measurements and PSFs stay
# under results/ whatever it is: runs that differ only in training and sampling (each seed of
# `snakemake claims`, rules/claims.smk) share them.
RESULTS = config.get("run_dir", "results")

CPU_ENV = "../envs/thincam-cpu.yaml"
# Every rule that runs torch uses this env and asks for this many GPUs (none on a CPU run).
TORCH_ENV = "../envs/thincam-gpu.yaml" if config["device"] == "cuda" else CPU_ENV
TORCH_GPUS = 1 if config["device"] == "cuda" else 0
# A training job's GPUs: one process each, launched inside the job (thincam.models.training.launch).
TRAIN_GPUS = config.get("train_gpus", 1) if config["device"] == "cuda" else 0


def retry(mem_mb, runtime_min):
    """A job's memory and time, both growing with each attempt: a job killed for either gets more
    when the profile's ``retries`` runs it again."""
    return {
        "mem_mb": lambda wildcards, attempt: mem_mb * attempt,
        "runtime": lambda wildcards, attempt: runtime_min * attempt,
    }


def code(entry, *modules):
    """Hash of the source a job runs: its stage entry "family:function" and what that imports.

    Snakemake sees edits to a rule's script, not to the library modules it imports; this param
    makes those edits re-run exactly the jobs that import the edited module.
    """
    return code_hash(SRC, f"stages.{entry}", *modules)


def job_threads(rule_name):
    """A rule's threads from the config's ``threads`` map (1 when absent), capped by --cores.

    More than ``max_threads_per_job`` fails here, at parse time: a cluster would queue the job
    for ever (SLURM: pending with reason PartitionConfig).
    """
    threads = int(config.get("threads", {}).get(rule_name, 1))
    limit = config.get("max_threads_per_job")
    if limit is not None and threads > limit:
        raise WorkflowError(
            f"rule {rule_name} asks for {threads} threads (config threads.{rule_name}) but "
            f"max_threads_per_job is {limit}: no node can hold the job"
        )
    return threads


def capture_files(wildcards):
    """A captured PSF's frame and its dark frame, when configured: editing either re-calibrates."""
    camera = config["cameras"][wildcards.camera]
    if camera["kind"] != "capture":
        return []
    return [camera["path"]] + ([camera["dark_path"]] if camera.get("dark_path") else [])


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


def noise_capture(wildcards):
    """The capture set whose dark corners give a simulated dataset's noise sigma, as an input."""
    source = (
        config["datasets"][wildcards.dataset]
        .get("noise", {})
        .get("gaussian_sigma_from")
    )
    return (
        {"noise_capture": f"results/data/{source}/{REPORT_SPLIT}.h5"} if source else {}
    )


def measurement_params(wildcards):
    """Only the keys that shape a dataset's files: editing its methods must not re-simulate it."""
    spec = config["datasets"][wildcards.dataset]
    return {key: spec[key] for key in MEASUREMENT_KEYS if key in spec}


def dataset_camera(wildcards):
    return config["datasets"][wildcards.dataset]["camera"]


def psf_of_dataset(wildcards):
    return f"results/psf/{dataset_camera(wildcards)}.h5"


def method_variants(wildcards):
    """{variant: parameters} of one configured method; an unknown method is an error."""
    methods = config["datasets"][wildcards.dataset].get("methods", {})
    if wildcards.method not in methods:
        raise ValueError(
            f"dataset {wildcards.dataset!r} defines no method {wildcards.method!r} "
            f"(configured: {sorted(methods)})"
        )
    return {name: dict(params) for name, params in methods[wildcards.method].items()}


def recon_splits(method, variants):
    """The test split always; val too where a table chooses among several variants."""
    if len(variants) > 1 and not METHODS[method].every_variant_reported:
        return [CHOICE_SPLIT, REPORT_SPLIT]
    return [REPORT_SPLIT]


def recon_targets():
    """(dataset, split, method, variant) for every configured reconstruction."""
    return [
        (dataset, split, method, variant)
        for dataset, spec in config["datasets"].items()
        for method, variants in spec.get("methods", {}).items()
        for split in recon_splits(method, variants)
        for variant in variants
    ]


def metric_csvs():
    """One evaluate CSV per dataset split that has reconstructions."""
    return sorted({f"{RESULTS}/metrics/{d}/{s}.csv" for d, s, _, _ in recon_targets()})


def split_recons(dataset, split):
    """The recon files of one dataset split, which its evaluate job reads."""
    return [
        f"{RESULTS}/recon/{d}/{s}/{m}/{v}.h5"
        for d, s, m, v in recon_targets()
        if (d, s) == (dataset, split)
    ]


def recon_files():
    return [f"{RESULTS}/recon/{d}/{s}/{m}/{v}.h5" for d, s, m, v in recon_targets()]


def recon_dirs(files):
    """The reconstruct outputs (one folder per dataset, split and method) holding ``files``."""
    return list(dict.fromkeys(str(Path(f).parent) for f in files))


def recon_data_files():
    return [f"results/data/{d}/{s}.h5" for d, s, _, _ in recon_targets()]


def split_timing(wildcards):
    """Latency is measured on the reported split only: val runs just choose variants."""
    if wildcards.split == REPORT_SPLIT:
        return config["timing"]
    return {**config["timing"], "n_images": 0}


def datasets_with_reference():
    return [d for d in config["datasets"] if "source" in config["datasets"][d]]


def figure_files():
    names = []
    for dataset in datasets_with_reference():
        names += [f"quality_vs_time_{dataset}", f"qualitative_{dataset}"]
        if config["datasets"][dataset].get("sweeps"):
            names.append(f"sweep_{dataset}")
    names += [f"capture_{d}" for d in config["figures"]["capture_figures"]]
    if config.get("tables", {}).get("alpha_sweep"):
        names.append(f"alpha_sweep_{config['tables']['alpha_sweep']}")
    return [f"{RESULTS}/figures/{n}.{ext}" for n in names for ext in ("png", "pdf")]


def report_outputs():
    return [
        f"{RESULTS}/tables/metrics.csv",
        *paper_tables(),
        *capture_tables(),
    ] + figure_files()


def all_outputs():
    psfs = [f"results/psf/{c}.h5" for c in config["cameras"]]
    return psfs + report_outputs()


def is_adm(prior):
    return config["priors"][prior].get("kind", "diffusers") == "adm"


def models_dataset(dataset):
    """The dataset whose trained prior and students a dataset's methods use: its ``models_from``
    (e.g. a capture set reconstructed with models trained on simulations of its camera), else itself.
    """
    return config["datasets"][dataset].get("models_from", dataset)


def prior_dir(wildcards):
    """A local pretrained diffusers prior when configured (no training job), else the trained
    default or the registered ADM checkpoint."""
    prior = config["datasets"][models_dataset(wildcards.dataset)]["prior"]
    if is_adm(prior):
        return f"{RESULTS}/prior/{prior}"
    return config["priors"][prior].get("path") or f"{RESULTS}/prior/{prior}"


def nsdd_cfg(wildcards):
    return config["datasets"][wildcards.dataset]["nsdd"]


def target_shards(wildcards):
    n_shards = nsdd_cfg(wildcards)["n_shards"]
    return [
        f"{RESULTS}/targets/{wildcards.dataset}/shard-{k:04d}.h5"
        for k in range(n_shards)
    ]


# Stage 1 of DMDiff training: the model whose negative path makes the pseudo pairs.
NEGATIVE_PATH_MODEL = "negative_path"


def dmdiff_spec(wildcards):
    return config["datasets"][wildcards.dataset]["dmdiff"]


def dmdiff_base_dir(wildcards):
    """A local SD-Turbo-class base when configured (no pretraining job), else the tiny base."""
    return (
        dmdiff_spec(wildcards)["base"]["path"]
        or f"{RESULTS}/dmdiff/{wildcards.dataset}/base"
    )


def dmdiff_model_spec(wildcards):
    """A trained variant's overrides of the shared training config (+ its pseudo_pairs flag)."""
    if wildcards.model == NEGATIVE_PATH_MODEL:
        return {"pseudo_pairs": False}
    models = dmdiff_spec(wildcards)["models"]
    if wildcards.model not in models:
        raise ValueError(
            f"dataset {wildcards.dataset!r} defines no dmdiff model {wildcards.model!r} "
            f"(configured: {sorted(models)})"
        )
    return models[wildcards.model]


def dmdiff_train_cfg(wildcards):
    overrides = {
        k: v for k, v in dmdiff_model_spec(wildcards).items() if k != "pseudo_pairs"
    }
    return {**dmdiff_spec(wildcards)["train"], **overrides}


def dmdiff_loss_cfg(wildcards):
    """DMDiff's loss keys, which the UNet baseline trains with too (models.restorer.LOSS_KEYS)."""
    train = dmdiff_spec(wildcards)["train"]
    return {
        k: train[k] for k in ("lpips_weight", "lpips_weights_dir", "weight_free_weight")
    }


def dmdiff_pseudo_pairs(wildcards):
    """The negative path's pairs as a named input, for the models trained on them."""
    if dmdiff_model_spec(wildcards)["pseudo_pairs"]:
        return {"pseudo_pairs": f"{RESULTS}/dmdiff/{wildcards.dataset}/pseudo_pairs.h5"}
    return {}


def method_operator(wildcards):
    """Overrides of the dataset's operator a method runs with: a student runs with the operator
    it was distilled with (``nsdd.operator``); every other method with the dataset's own.
    """
    if METHODS[wildcards.method].needs == "student":
        return config["datasets"][models_dataset(wildcards.dataset)]["nsdd"].get(
            "operator", {}
        )
    return {}


def method_code(wildcards):
    """The reconstruct stage's hash plus the method's own module graph (loaded by name)."""
    return code("reconstruct:reconstruct", METHODS[wildcards.method].module)


def variant_models(wildcards):
    """{variant: {role: path}}: the trained models each variant reads (none for the classic
    baselines; a DMDiff variant its own model and the shared base)."""
    variants = method_variants(wildcards)
    needs = METHODS[wildcards.method].needs
    if needs == "prior":
        roles = {"prior": prior_dir(wildcards)}
    elif needs == "student":
        source = models_dataset(wildcards.dataset)
        roles = {"student": f"{RESULTS}/{wildcards.method}/{source}/training.json"}
    elif needs == "restorer":
        roles = {"restorer": f"{RESULTS}/unet/{wildcards.dataset}/model"}
    elif needs == "dmdiff":
        base = dmdiff_base_dir(wildcards)
        return {
            variant: {
                "dmdiff": f"{RESULTS}/dmdiff/{wildcards.dataset}/{params['model']}/model",
                "dmdiff_base": base,
            }
            for variant, params in variants.items()
        }
    else:
        roles = {}
    return {variant: roles for variant in variants}


def method_models(wildcards):
    """The trained models of all a method's variants, as inputs (each once)."""
    paths = [p for roles in variant_models(wildcards).values() for p in roles.values()]
    return {"models": list(dict.fromkeys(paths))}


def paper_tables():
    """{output path: (table kind, dataset)} for the paper tables the config asks for."""
    return {
        f"{RESULTS}/tables/{kind}.csv": (kind, dataset)
        for kind, dataset in config.get("tables", {}).items()
        if dataset is not None
    }


def capture_tables():
    """{output path: (dataset, ["method/variant", ...])}: each capture figure's reconstructions
    as a table (consistency, no-reference metrics, latency)."""
    return {
        f"{RESULTS}/tables/capture_{dataset}.csv": (dataset, list(runs))
        for dataset, runs in config["figures"]["capture_figures"].items()
    }


def capture_recons(wildcards):
    """The recon files a capture figure shows, in its panel order."""
    return [
        f"{RESULTS}/recon/{wildcards.dataset}/{REPORT_SPLIT}/{run}.h5"
        for run in config["figures"]["capture_figures"][wildcards.dataset]
    ]


def pseudo_pair_reports():
    """{dataset: {"file": its pseudo_pairs.h5, "asks": {dmdiff variant: whether its model asks
    for pseudo pairs}}} for the DMDiff ablation table's dataset, when a model asks for them.
    """
    dataset = config.get("tables", {}).get("dmdiff_ablation")
    if dataset is None:
        return {}
    spec = config["datasets"][dataset]
    models = spec["dmdiff"]["models"]
    asks = {
        variant: bool(models[params["model"]]["pseudo_pairs"])
        for variant, params in spec.get("methods", {}).get("dmdiff", {}).items()
    }
    if not any(asks.values()):
        return {}
    return {
        dataset: {"file": f"{RESULTS}/dmdiff/{dataset}/pseudo_pairs.h5", "asks": asks}
    }


def figure_table(dataset):
    """The paper table whose variant choices a dataset's figures show, or None (as a table would)."""
    for kind in ("nsdd_main", "dmdiff_main"):
        if config.get("tables", {}).get(kind) == dataset:
            return f"{RESULTS}/tables/{kind}.csv"
    return None


def alpha_variants(dataset):
    """The DMDiff variants that set the decoder mix: the alpha figure's, not the grid's."""
    methods = config["datasets"][dataset].get("methods", {})
    return [v for v, params in methods.get("dmdiff", {}).items() if "alpha" in params]


def figure_inputs(wildcards):
    """metrics.csv and, when one covers the dataset, the paper table that chose its variants."""
    table = figure_table(wildcards.dataset)
    return {"metrics": f"{RESULTS}/tables/metrics.csv"} | (
        {"table": table} if table else {}
    )


def seed_tables():
    """{f"seed{seed}_{kind}": table CSV} of the runs of every seed of ``claims.seeds``."""
    return {
        f"seed{seed}_{kind}": path
        for seed in config["claims"]["seeds"]
        for kind, path in claim_tables(config, seed_run_dir(config, seed)).items()
    }


def seed_table_paths(input):
    """The claims rule's tables as {seed: {table kind: CSV}}, from its inputs."""
    return {
        seed: {
            kind: input[f"seed{seed}_{kind}"]
            for kind in claim_tables(config, seed_run_dir(config, seed))
        }
        for seed in config["claims"]["seeds"]
    }
