# Config validation, result paths, wildcard constraints and named input functions.
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, f"{workflow.basedir}/src")

from overrefusal.benchmarks import BENCHMARKS
from overrefusal.config import ConfigError, validate_config
from overrefusal.methods import method_params
from overrefusal.toyworld import CAPABILITY_TASKS

try:
    validate_config(config, "config (config.yaml plus any --configfile/--config)")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = f"results/{config['name']}"
LOGS = f"logs/{config['name']}"
BENCH = f"benchmarks/{config['name']}"

MODELS = list(config["models"])
METHODS = list(config["methods"])
EVAL_BENCHMARKS = list(config["eval"]["benchmarks"])
TRAINED_METHODS = [m for m in METHODS if config["methods"][m]["kind"] != "base"]
DCR_METHODS = [m for m in METHODS if config["methods"][m]["kind"] == "dcr"]

# Curated splits every data source provides (toy world here; real loaders later).
SPLITS = ["sft_general", "sft_safety", "sft_aug", "contrastive", "reflection_fewshot", "teacher_sft"]
DATA_FILES = (
    [f"{RESULTS}/data/{s}.jsonl" for s in SPLITS]
    + [f"{RESULTS}/data/eval/{b}.jsonl" for b in BENCHMARKS]
    + [f"{RESULTS}/data/capability/{t}.jsonl" for t in CAPABILITY_TASKS]
    + [f"{RESULTS}/data/pretrain.jsonl"]
)


wildcard_constraints:
    model="|".join(MODELS),
    method="|".join(METHODS),
    benchmark="|".join(BENCHMARKS),
    trained="|".join(TRAINED_METHODS) or "NONE",
    dcr_method="|".join(DCR_METHODS) or "NONE",


def method_kind(method):
    return config["methods"][method]["kind"]


def params_of(wildcards):
    """The method instance's resolved params, as one plain dict (exact reruns)."""
    return method_params(config, wildcards.get("trained") or wildcards.get("method") or wildcards.get("dcr_method"))


def get_base_model(wildcards):
    return f"{RESULTS}/models/{wildcards.model}/base"


def get_sft_inputs(wildcards):
    """Start checkpoint, curated splits and (TBR) reflections for one SFT run."""
    p = method_params(config, wildcards.trained)
    start = (
        f"{RESULTS}/{wildcards.model}/{wildcards.trained}/dcr/model"
        if p["kind"] == "dcr"
        else f"{RESULTS}/models/{wildcards.model}/base"
    )
    inputs = {"start": start, "data": [f"{RESULTS}/data/{s}.jsonl" for s in p["sft_data"]]}
    if p["kind"] == "tbr":
        if p["tbr"]["reflection"] == "internal":
            inputs["reflections"] = f"{RESULTS}/{wildcards.model}/reflections/internal.json"
        else:
            inputs["reflections"] = f"{RESULTS}/reflections/external.json"
    return inputs


def get_eval_model(wildcards):
    """The checkpoint a method is evaluated with: the base model itself for `base`."""
    if method_kind(wildcards.method) == "base":
        return f"{RESULTS}/models/{wildcards.model}/base"
    return f"{RESULTS}/{wildcards.model}/{wildcards.method}/model"


def get_arch(wildcards):
    return config["models"][wildcards.model]["arch"]


def get_pretrain_params(wildcards):
    return config["models"][wildcards.model]["pretrain"]


def get_template(wildcards):
    return config["models"][wildcards.model]["template"]


def get_eval_records(wildcards):
    return [f"{RESULTS}/data/eval/{b}.jsonl" for b in EVAL_BENCHMARKS]


def get_capability_data(wildcards):
    return [f"{RESULTS}/data/capability/{t}.jsonl" for t in config["capability"]["tasks"]]


def get_eval_jsons(wildcards=None):
    return [
        f"{RESULTS}/{model}/{method}/eval/{b}.json"
        for model in MODELS
        for method in METHODS
        for b in EVAL_BENCHMARKS
    ]


def get_capability_jsons(wildcards=None):
    return [f"{RESULTS}/{model}/{method}/eval/capability.json" for model in MODELS for method in METHODS]


def get_final_outputs(wildcards=None):
    return [
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{RESULTS}/tables/capability.csv",
        f"{RESULTS}/tables/capability.md",
        f"{RESULTS}/figures/compliance_by_method.png",
        f"{RESULTS}/figures/safety_vs_overrefusal.png",
    ]


def get_external_teacher(wildcards):
    """The toy teacher's checkpoint when the external endpoint is the local server, else nothing."""
    if config["tbr"]["external"]["base_url"] == "local":
        return {"teacher": f"{RESULTS}/models/teacher/model"}
    return {}
