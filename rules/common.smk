# Config validation, result paths, wildcard constraints and named input functions.
import re
from pathlib import Path
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, f"{workflow.basedir}/src")

from overrefusal.benchmarks import BENCHMARKS
from overrefusal.capability import registry_stage_key, registry_stage_specs
from overrefusal.config import ConfigError, enabled_capability_tasks, validate_config
from overrefusal.methods import KINDS, method_params
from overrefusal.runplan import RunPlan
from overrefusal.toyworld import CAPABILITY_TASKS, EVAL_SHAPES
from overrefusal import warm_start

try:
    validate_config(config, "config (config.yaml plus any --configfile/--config)")
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

RESULTS = f"results/{config['name']}"
MANIFEST = f"{RESULTS}/data/manifest.json"  # the data's identity: an input of every job that records provenance
LOGS = f"logs/{config['name']}"
BENCH = f"benchmarks/{config['name']}"

# Models, method instances and seeds of this run, and where each run's checkpoint is (overrefusal.runplan,
# tested without Snakemake). `enabled: false` keeps an entry (a --configfile merge cannot delete one, so a
# preset switches config.yaml's toy entries off this way) but leaves it out. The names below are PLAN's,
# as lists, for the rules that use them.
PLAN = RunPlan.from_config(config, results=RESULTS)
MODELS = list(PLAN.models)
# Models trained from scratch in the pipeline (toy world) vs fetched from the HF hub (paper presets).
PRETRAIN_MODELS = list(PLAN.pretrain_models)
HUB_MODELS = list(PLAN.hub_models)
# ... or converted from a GGUF file that a Python package ships (rule convert_gguf).
GGUF_MODELS = list(PLAN.gguf_models)
METHODS = list(PLAN.methods)
# Training seeds: every trained method runs once per seed (results/<name>/<model>/<method>/seed<k>/).
SEEDS = list(PLAN.seeds)
# Device, dtype and CPU threads of every model-loading rule. Threads are not a param: they change no
# output a rerun should follow (and the toy world runs many one-thread jobs side by side).
COMPUTE = config["compute"]
COMPUTE_PARAMS = {k: COMPUTE[k] for k in ("device", "dtype")}
EVAL_BENCHMARKS = list(config["eval"]["benchmarks"])
TRAINED_METHODS = list(PLAN.trained_methods)
DCR_METHODS = list(PLAN.dcr_methods)
# Inference-time interventions (SCANS, Surgical) on another method's checkpoint (rules/intervention.smk).
INTERVENTION_METHODS = list(PLAN.intervention_methods)
# The DCR sweep (target dcr_sweep, not part of `all`): one DCR method instance per setting.
SWEEP = (config.get("dcr_sweep") or {}).get("settings", {})
SWEEP_METHODS = list(PLAN.sweep_methods)
# Settings chosen on tuning parts (target tune, not part of `all`): one method instance per grid setting,
# judged on the tuning parts of tune.benchmarks only (rules tune_generate, tune_judge, tune_table).
TUNE_GRIDS = PLAN.tune_grids
TUNE_METHODS = list(PLAN.tune_methods)
TUNE_BENCHMARKS = list((config.get("tune") or {}).get("benchmarks") or [])
# Every instance a job can name, and its spec; config["methods"] itself is never extended.
SPECS = PLAN.specs
ALL_METHODS = list(PLAN.all_methods)
EXTRA_TRAINED = list(PLAN.extra_trained)
# Capability tasks in this run (`enabled: false` leaves one out). lm-eval registry tasks (kind: lm_eval)
# read hub datasets, staged once by the local rule stage_capability_data into a cache named after the
# task set, not the run, so every run with the same registry tasks shares one download.
CAPABILITY = {**config["capability"], "tasks": enabled_capability_tasks(config)}
CAPABILITY_STAGE = registry_stage_specs(CAPABILITY["tasks"])  # {} for the toy world
CAPABILITY_DATA_KEY = registry_stage_key(CAPABILITY_STAGE) if CAPABILITY_STAGE else None
CAPABILITY_DATA = f"resources/hf_datasets/{CAPABILITY_DATA_KEY}" if CAPABILITY_STAGE else None

# Curated splits every data source provides (toy world here; real loaders later).
SPLITS = ["sft_general", "sft_safety", "sft_aug", "contrastive", "reflection_fewshot", "teacher_sft"]
DATA_FILES = (
    [f"{RESULTS}/data/{s}.jsonl" for s in SPLITS]
    + [f"{RESULTS}/data/eval/{b}.jsonl" for b in EVAL_SHAPES]  # the toy world's benchmarks (not STL's I-sets)
    + [f"{RESULTS}/data/capability/{t}.jsonl" for t in CAPABILITY_TASKS]
    + [f"{RESULTS}/data/pretrain.jsonl"]
)


wildcard_constraints:
    model="|".join(MODELS),
    method="|".join(map(re.escape, ALL_METHODS)),
    benchmark="|".join(BENCHMARKS),
    trained="|".join(map(re.escape, PLAN.trained_instances)) or "NONE",
    dcr_method="|".join(map(re.escape, PLAN.dcr_instances)) or "NONE",
    intervention="|".join(map(re.escape, PLAN.intervention_instances)) or "NONE",
    pretrained="|".join(PRETRAIN_MODELS) or "NONE",
    hub_model="|".join(PLAN.hub_fetched) or "NONE",
    gguf_model="|".join(GGUF_MODELS) or "NONE",
    seed=r"\d+",
    grid="|".join(map(re.escape, TUNE_GRIDS)) or "NONE",


# The seeds a method runs with (one for an untrained method, an intervention's are its method's), a run's
# directory, a model's base checkpoint and the checkpoint a method is evaluated with: PLAN's.
seeds_of = PLAN.seeds_of
run_dir = PLAN.run_dir
base_model_path = PLAN.base_model_path
model_path = PLAN.model_path


def get_sft_params(wildcards):
    """What SFT reads (plain dict): kind, SFT data and settings with this seed, and TBR's gamma. Not the
    DCR section: a DCR change reaches SFT through its input checkpoint, and only there."""
    p = method_params(config, wildcards.trained)
    p.pop("dcr", None)
    if KINDS[p["kind"]].reflections:  # reflections reach SFT as an input file; of TBR's section it reads gamma
        p["tbr"] = {"gamma": p["tbr"]["gamma"]}
    p["sft"]["seed"] = int(wildcards.seed)
    return p


def get_dcr_params(wildcards):
    """What the DCR stage reads: its own section with this seed, and nothing from SFT."""
    d = method_params(config, wildcards.dcr_method)["dcr"]
    d["seed"] = int(wildcards.seed)
    return d


def get_base_model(wildcards):
    return base_model_path(wildcards.model)


def get_hub_spec(wildcards):
    """What a hub snapshot depends on (plain dict): repo, revision, depth and file patterns."""
    spec = config["models"][wildcards.hub_model]
    return {k: spec[k] for k in ("repo_id", "revision", "num_layers", "allow_patterns") if k in spec}


def get_gguf_spec(wildcards):
    """What a conversion depends on (plain dict): the file's package, version and name (or path), the depth
    and the template (a chat template is required for template: chat)."""
    spec = config["models"][wildcards.gguf_model]
    return {k: spec[k] for k in ("package", "version", "file", "path", "num_layers", "template") if k in spec}


def get_sft_inputs(wildcards):
    """Start checkpoint, curated splits and (TBR) reflections for one SFT run."""
    p = method_params(config, wildcards.trained)
    start = (
        f"{run_dir(wildcards.model, wildcards.trained, wildcards.seed)}/dcr/model"
        if KINDS[p["kind"]].dcr
        else base_model_path(wildcards.model)
    )
    inputs = {"start": start, "data": [f"{RESULTS}/data/{s}.jsonl" for s in p["sft_data"]]}
    if KINDS[p["kind"]].reflections:
        if p["tbr"]["reflection"] == "internal":
            inputs["reflections"] = f"{RESULTS}/{wildcards.model}/reflections/internal.json"
        else:
            inputs["reflections"] = f"{RESULTS}/reflections/external.json"
    return inputs


def get_eval_model(wildcards):
    return model_path(wildcards.model, wildcards.method, wildcards.seed)


def get_intervened_model(wildcards):
    return model_path(wildcards.model, wildcards.intervention, wildcards.seed)


def get_intervention(wildcards):
    """An intervention method's fitted hooks (rule intervention); nothing for any other method."""
    if not KINDS[SPECS[wildcards.method]["kind"]].intervention:
        return {}
    return {"intervention": f"{run_dir(wildcards.model, wildcards.method, wildcards.seed)}/intervention/vectors.safetensors"}


def get_intervention_params(wildcards):
    """What fitting reads: the kind and its section's settings with this seed."""
    p = method_params(config, wildcards.intervention)
    settings = p[p["kind"]]
    settings["seed"] = int(wildcards.seed)
    settings.pop("apply_to")  # reaches the rule as its input checkpoint
    return {"kind": p["kind"], "settings": settings}


def get_arch(wildcards):
    return config["models"][wildcards.pretrained]["arch"]


def get_pretrain_params(wildcards):
    return config["models"][wildcards.pretrained]["pretrain"]


def get_template(wildcards):
    return config["models"][wildcards.model]["template"]


def get_eval_records(wildcards):
    return [f"{RESULTS}/data/eval/{b}.jsonl" for b in EVAL_BENCHMARKS]


def get_capability_data(wildcards):
    """The local (mc/gen) tasks' JSONL files; registry tasks have none."""
    return [f"{RESULTS}/data/capability/{t}.jsonl" for t, s in CAPABILITY["tasks"].items() if s["kind"] != "lm_eval"]


def get_capability_registry(wildcards):
    """The staged registry data (record and datasets cache) when a kind: lm_eval task is configured, else
    nothing, so that runs without one (the toy world) keep exactly their inputs."""
    if not CAPABILITY_DATA:
        return {}
    return {"registry_record": f"{CAPABILITY_DATA}.json", "registry_cache": CAPABILITY_DATA}


def get_eval_jsons(wildcards=None, methods=None):
    return [
        result_file(model, method, seed, f"eval/{b}.json")
        for model in MODELS
        for method in methods or METHODS
        for seed in seeds_of(method)
        for b in EVAL_BENCHMARKS
    ]


def get_capability_jsons(wildcards=None, methods=None):
    return [result_file(model, method, seed, "eval/capability.json")
            for model in MODELS for method in methods or METHODS for seed in seeds_of(method)]


def get_sweep_inputs(wildcards):
    """Every sweep setting's results, and the two methods recovery is measured between."""
    methods = [*SWEEP_METHODS, *SUMMARY_REFS.values()]
    return {"evals": get_eval_jsons(methods=methods), "capability": get_capability_jsons(methods=methods),
            "dcr": [f"{run_dir(model, m, seed)}/dcr/metrics.json" for model in MODELS for m in SWEEP_METHODS
                    for seed in SEEDS]}


def get_sample_jsons(wildcards=None):
    """Every method's results on its first seed (rule samples)."""
    return [result_file(model, method, seeds_of(method)[0], f"eval/{b}.json")
            for model in MODELS for method in METHODS for b in EVAL_BENCHMARKS]


def get_final_outputs(wildcards=None):
    return [
        f"{RESULTS}/samples.md",
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{RESULTS}/tables/capability.csv",
        f"{RESULTS}/tables/capability.md",
        f"{RESULTS}/figures/compliance_by_method.png",
        f"{RESULTS}/figures/safety_vs_overrefusal.png",
        *([f"{RESULTS}/figures/refusal_dynamics.png"] if config["tracking"]["enabled"] and TRAINED_METHODS else []),
        *([f"{RESULTS}/figures/kernel_dynamics.png"]
          if config["tracking"]["enabled"] and (TRACKING.get("kernel") or {}).get("enabled") and TRAINED_METHODS
          else []),
        *get_judge_and_winrate_outputs(),
        *([f"{RESULTS}/tables/verdicts.md", f"{RESULTS}/figures/tradeoff_per_seed.png"] if VERDICTS_ON else []),
        *([f"{RESULTS}/tables/interventions.csv", f"{RESULTS}/tables/interventions.md"] if INTERVENTION_METHODS else []),
        *get_analysis_outputs(),
        *get_paper_table_outputs(),
        *([f"{RESULTS}/figures/tbr_gamma.png", f"{RESULTS}/figures/tbr_gamma.pdf"] if TBR_GAMMA_SWEEP else []),
    ]


def get_intervention_reports(wildcards=None):
    return [result_file(model, method, seed, "intervention/report.json")
            for model in MODELS for method in INTERVENTION_METHODS for seed in seeds_of(method)]


def get_reflection_params(source):
    """What writing one source's reflections depends on: the tags, the quality filter and that source's
    own settings; not the other source's, nor gamma or the per-method choice, which only SFT uses."""
    other = {"internal": "external", "external": "internal"}[source]
    return {k: v for k, v in config["tbr"].items() if k not in ("gamma", "reflection", other)}


def get_external_teacher(wildcards):
    """The toy teacher's checkpoint when the external endpoint is the local server, else nothing."""
    if config["tbr"]["external"]["base_url"] == "local":
        return {"teacher": f"{RESULTS}/models/teacher/model"}
    return {}


# ---- LLM judges, judge validation and helpfulness win rate ----
from overrefusal.config import (
    benchmark_judges,
    judge_validation_sets,
    learned_judge_training_sets,
    learned_judges_used,
    llm_judges_used,
)
from overrefusal.judge_validation import DEFAULT_JUDGES

# Benchmark -> judge id (a benchmark's own key in eval.judges, else its suite's): the judge rule's params
# are these resolved maps, so changing a key that decides no evaluated benchmark's judge reruns nothing.
BENCHMARK_JUDGES = benchmark_judges(config)
BENCHMARK_SECONDARY_JUDGES = benchmark_judges(config, "secondary_judges")
LLM_JUDGES_USED = llm_judges_used(config)
# The judge rule gets the endpoint (and cache) only when an LLM judge is named, so string-match
# runs keep exactly their params and are not rerun when eval.llm_judge changes.
JUDGE_LLM_PARAMS = (
    {"llm_judge": config["eval"]["llm_judge"], "cache_dir": f"{RESULTS}/cache/llm"} if LLM_JUDGES_USED else {}
)
# What generation depends on, and nothing else from eval: (judges, bootstrap, llm_judge).
GENERATION_PARAMS = {k: config["eval"][k] for k in ("max_new_tokens", "batch_size")}
# The engine joins the params only when it is not the default, so hf runs keep the params they always had.
if config["eval"].get("backend", "hf") != "hf":
    GENERATION_PARAMS.update(backend=config["eval"]["backend"], vllm=config["eval"].get("vllm") or {})
RAW_DIR = config["data"].get("raw_dir")
# Judge validation (tables/judge_agreement, judge_confusion): the enabled labelled sets, none without raw_dir.
VALIDATION_SETS = judge_validation_sets(config)
VALIDATED_JUDGES = list((config["eval"].get("judge_validation") or {}).get("judges", DEFAULT_JUDGES))
WINRATE = config.get("winrate") or {"enabled": False, "prompts": []}
WINRATE_REFERENCE = WINRATE.get("reference") or "NONE"
WINRATE_METHODS = [m for m in METHODS if m != WINRATE_REFERENCE]
WINRATE_PROMPTS = [f"{RESULTS}/data/{p}.jsonl" for p in WINRATE.get("prompts", [])]
WINRATE_ON = bool(WINRATE.get("enabled") and WINRATE_METHODS)
# Recovery of over-refusal is measured between these two methods (tables/summary): STL's drop from no-safety.
SUMMARY_REFS = {"floor": "stl", "ceiling": "no_safety"}
# Methods given a verdict on undoing STL's over-refusal: every one but the references and the shipped model;
# rule verdicts runs when both references do.
VERDICT_METHODS = [m for m in METHODS if m not in SUMMARY_REFS.values()
                   and (KINDS[SPECS[m]["kind"]].trains or KINDS[SPECS[m]["kind"]].intervention)]
VERDICTS_ON = all(m in METHODS for m in SUMMARY_REFS.values()) and bool(VERDICT_METHODS)


wildcard_constraints:
    compared="|".join(WINRATE_METHODS) or "NONE",


def get_winrate_jsons(wildcards=None):
    return [result_file(model, method, seed, "helpfulness/winrate.json")
            for model in MODELS for method in WINRATE_METHODS for seed in seeds_of(method)]


def get_winrate_reference(wildcards):
    """The reference's responses from the same seed (its only run when it is untrained)."""
    ref_seeds = seeds_of(WINRATE_REFERENCE)
    seed = int(wildcards.seed) if int(wildcards.seed) in ref_seeds else ref_seeds[0]
    return result_file(wildcards.model, WINRATE_REFERENCE, seed, "generations/helpfulness.jsonl")


def get_judge_validation_data(wildcards=None):
    """The files of every labelled set judge validation reads, under data.raw_dir."""
    return sorted({str(p) for spec in VALIDATION_SETS.values() for p in Path(RAW_DIR).glob(spec["files"])
                   if p.is_file()})


# Learned judges (eval.learned_judges): a configured artefact directory, or one rule train_learned_judge writes.
LEARNED_JUDGES_USED = learned_judges_used(config)
LEARNED_ARTEFACTS = {
    n: (config["eval"]["learned_judges"][n].get("artefact") or f"{RESULTS}/judges/{n}") for n in LEARNED_JUDGES_USED
}
LEARNED_TRAINED = [n for n in LEARNED_JUDGES_USED if "artefact" not in config["eval"]["learned_judges"][n]]
# Sentence embeddings of judged responses, by response hash (shared by every run on this machine; not a result).
EMBEDDING_CACHE = "resources/embeddings"
LEARNED_JUDGE_PARAMS = {"embedding_cache": EMBEDDING_CACHE} if LEARNED_JUDGES_USED else {}


def get_learned_judge_reference(wildcards):
    """A trained artefact shown beside the judge in its held-out table (eval.learned_judges.<judge>.reference)."""
    return config["eval"]["learned_judges"][wildcards.judge].get("reference")


def get_learned_judges(wildcards=None):
    """learned_<judge> -> its artefact's manifest.json, for each learned judge that judging loads (a retrained
    or replaced artefact reruns the judging jobs)."""
    return {f"learned_{n}": f"{d}/manifest.json" for n, d in LEARNED_ARTEFACTS.items()}


def get_learned_judge_sets(wildcards):
    return learned_judge_training_sets(config, wildcards.judge)


def get_learned_judge_data(wildcards):
    """The files of the labelled sets learned judge ``wildcards.judge`` trains on, under data.raw_dir."""
    return sorted({str(p) for spec in get_learned_judge_sets(wildcards).values()
                   for p in Path(RAW_DIR).glob(spec["files"]) if p.is_file()})


def get_judge_and_winrate_outputs(wildcards=None):
    out = [f"{RESULTS}/judges/{n}_cv.{ext}" for n in LEARNED_TRAINED for ext in ("json", "md")]
    if WINRATE.get("enabled") and WINRATE_METHODS:
        out += [f"{RESULTS}/tables/winrate.csv", f"{RESULTS}/tables/winrate.md"]
    if VALIDATION_SETS:
        out += [f"{RESULTS}/tables/{t}.{ext}" for t in ("judge_agreement", "judge_confusion") for ext in ("csv", "md")]
    return out


# ---- Refusal-probability tracking (rules sft, dcr_contrastive; figure in rules/tracking.smk) ----
TRACKING = config["tracking"]
# What the training jobs measure; the figure's scale is the figure's alone.
TRACKING_PARAMS = {k: v for k, v in TRACKING.items() if k != "plot_scale"}


def get_tracking_inputs(wildcards):
    """Probe-set files and the safety refusals the refusal tokens come from (none when tracking is off)."""
    return get_probe_inputs(wildcards) if TRACKING["enabled"] else {}


def get_probe_inputs(wildcards=None):
    """The three probe sets (seemingly toxic, toxic, general) and the safety refusals the refusal tokens come
    from: read by tracking and by the analyses."""
    probes = TRACKING["probes"]
    return {
        "probe_seemingly_toxic": f"{RESULTS}/data/eval/{probes['seemingly_toxic']}.jsonl",
        "probe_toxic": f"{RESULTS}/data/eval/{probes['toxic']}.jsonl",
        "probe_general": (f"{RESULTS}/data/general_heldout.jsonl" if probes["general"] == "general_heldout"
                          else f"{RESULTS}/data/capability/{probes['general']}.jsonl"),
        "refusals": f"{RESULTS}/data/sft_safety.jsonl",
    }


def get_tracking_jsons(wildcards=None):
    """Every tracking.json: SFT for each trained method, plus DCR's contrastive stage."""
    sft = [result_file(model, method, seed, "tracking.json")
           for model in MODELS for method in TRAINED_METHODS for seed in SEEDS]
    dcr = [result_file(model, method, seed, "dcr/tracking.json")
           for model in MODELS for method in DCR_METHODS for seed in SEEDS]
    return sft + dcr


# ---- Analyses (rules/analysis.smk) and tables in the papers' layouts (rules/report.smk) ----
ANALYSIS = config["analysis"]
ANALYSIS_SEEDS = SEEDS if ANALYSIS["seeds"] is None else [int(x) for x in ANALYSIS["seeds"]]
ANALYSIS_TRAINED = [m for m in TRAINED_METHODS if not KINDS[config["methods"][m]["kind"]].intervention]
# Which checkpoints each analysis compares: eNTK the paper's four (base, DCR stage, STL, DCR + STL),
# separability every trained one and the DCR stage, attribution every trained one.
ENTK_KINDS = ("stl", "dcr")
BASE_CHECKPOINT = "base"  # the label of the base model's checkpoint (one for every seed)


def analysis_labels(analysis):
    """The checkpoints one analysis compares, by label, in table order."""
    out = [] if analysis == "attribution" else [BASE_CHECKPOINT]
    for m in ANALYSIS_TRAINED:
        kind = config["methods"][m]["kind"]
        if KINDS[kind].dcr and analysis != "attribution":
            out.append(f"{m}/dcr_stage")
        if analysis != "entk" or kind in ENTK_KINDS:
            out.append(m)
    return out


def analysis_checkpoint(model, label, seed):
    """A label's checkpoint directory on one training seed (the base model has one for all seeds)."""
    if label == BASE_CHECKPOINT:
        return base_model_path(model)
    method, _, stage = label.partition("/")
    return f"{run_dir(model, method, seed)}/{'dcr/' if stage else ''}model"


def analysis_runs(analysis):
    """(label, seed) pairs, seed-major: the base model is the same for every seed and runs once."""
    return [(label, seed) for seed in ANALYSIS_SEEDS for label in analysis_labels(analysis)
            if label != BASE_CHECKPOINT or seed == ANALYSIS_SEEDS[0]]


def get_analysis_checkpoints(wildcards):
    """The checkpoint of each of analysis_runs, in that order (the script zips the two)."""
    return [analysis_checkpoint(wildcards.model, label, seed) for label, seed in analysis_runs(wildcards.analysis)]


# An analysis runs when enabled and it has a trained checkpoint to compare with the base model.
ANALYSES = [a for a in ("entk", "separability", "attribution")
            if ANALYSIS[a]["enabled"] and any(k != BASE_CHECKPOINT for k in analysis_labels(a))]


def get_analysis_params(wildcards):
    """What an analysis job reads: the shared prompt settings and its own section."""
    own = {k: v for k, v in ANALYSIS[wildcards.analysis].items() if k != "enabled"}
    if wildcards.analysis == "separability":  # the PCA plots: the layer DCR refines (block l's output), the last
        own["pca_layers"] = [config["dcr"]["layer"] + 1, -1]
    if own.get("triggers") == "auto":  # the toy world knows its trigger verbs; real data derives them
        own["triggers"] = "toy_lexicon" if config["data"]["source"] == "toy" else "derived"
    return {"kind": wildcards.analysis, "seeds": ANALYSIS_SEEDS, "labels": analysis_labels(wildcards.analysis),
            "runs": [list(r) for r in analysis_runs(wildcards.analysis)],
            **{k: ANALYSIS[k] for k in ("n_per_class", "max_length", "batch_size")}, **own}


def get_analysis_jsons(wildcards):
    """One analysis's result for every model (rule analysis_report)."""
    return [f"{RESULTS}/{model}/analysis/{wildcards.analysis}.json" for model in MODELS]


def get_analysis_outputs(wildcards=None):
    return [f"{RESULTS}/{kind}/{a}.{ext}" for a in ANALYSES
            for kind, ext in (("tables", "csv"), ("tables", "md"), ("figures", "png"), ("figures", "pdf"))]


from overrefusal.report.paper_tables import load_paper_values

PAPER_VALUES_FILE = str(Path(workflow.basedir, config["paper_tables"]["values"]))
PAPER_TABLES = {tid: t for tid, t in load_paper_values(PAPER_VALUES_FILE).items()
                if t.source != "winrate" or WINRATE_ON}


# TBR instances by reflection source and γ; the γ figure is drawn when a source has two γ values or more.
TBR_GAMMAS = {m: {"reflection": p["tbr"]["reflection"], "gamma": p["tbr"]["gamma"]}
              for m in METHODS if KINDS[config["methods"][m]["kind"]].reflections
              for p in [method_params(config, m)]}
TBR_GAMMA_SWEEP = any(len({v["gamma"] for v in TBR_GAMMAS.values() if v["reflection"] == r}) > 1
                      for r in {v["reflection"] for v in TBR_GAMMAS.values()})


def get_paper_table_outputs(wildcards=None):
    return [f"{RESULTS}/tables/paper/{tid}.{ext}" for tid in PAPER_TABLES for ext in ("csv", "md", "tex")]


# ---- Real data (data.source: real; rules in rules/real_data.smk) ----
from overrefusal.data.plan import plan as plan_real_data

REAL = config["data"].get("real") if config["data"]["source"] == "real" else None
REAL_PLAN = plan_real_data(REAL, config["data"].get("raw_dir"), EVAL_BENCHMARKS) if REAL else None
REAL_STAGE = {k: (REAL or {}).get(k, d) for k, d in
              [("download", False), ("download_dir", None), ("pins", {}), ("allow_unpinned", False),
               ("github_mirror", None)]}
REAL_EVAL = {k: REAL[k] for k in ("xstest_heldout", "harmbench_functional", "eval_subset") if REAL and k in REAL}
# Benchmarks cut into a tuning part and an evaluation part (data.real.tuning), with a rule of their own,
# so that the other benchmarks' eval-set jobs keep exactly their outputs and params.
REAL_TUNED = sorted((REAL or {}).get("tuning") or {})
REAL_UNTUNED = [b for b in BENCHMARKS if b not in REAL_TUNED]


def get_tuned_eval_params(wildcards):
    """What cutting one benchmark reads: the eval-set settings, its own tuning spec and the near-duplicate
    threshold that keeps near-copies on one side."""
    return {**REAL_EVAL, "tuning": {wildcards.benchmark: REAL["tuning"][wildcards.benchmark]},
            "leakage": {"near_threshold": REAL["leakage"]["near_threshold"]}}


def tuning_part(benchmark):
    return f"{RESULTS}/data/tuning/{benchmark}.jsonl"


def get_tune_records(wildcards):
    return [tuning_part(b) for b in TUNE_BENCHMARKS]


def get_tune_inputs(wildcards):
    """One grid's judged tuning parts (every setting, model, seed and tune benchmark) and, for the settings
    that train, their SFT metrics (steps and examples)."""
    grid = TUNE_GRIDS[wildcards.grid]
    runs = [(model, m, seed) for model in MODELS for m in grid["methods"] for seed in grid["seeds"]]
    return {"evals": [f"{run_dir(*r)}/tuning/eval/{b}.json" for r in runs for b in TUNE_BENCHMARKS],
            "sft": [f"{run_dir(*r)}/sft_metrics.json" for r in runs if KINDS[SPECS[r[1]]["kind"]].trains]}


def get_tune_settings(wildcards):
    """A tune grid's settings (instance -> spec) as plain dicts: the columns of its table."""
    return {m: dict(spec) for m, spec in TUNE_GRIDS[wildcards.grid]["methods"].items()}


def get_tune_outputs(wildcards=None):
    return [f"{RESULTS}/tuning/{g}.{ext}" for g in TUNE_GRIDS for ext in ("csv", "md")]


def get_tune_grid_parts(wildcards):
    """What publishing one grid copies, relative to the run's results."""
    return [f"tuning/{wildcards.grid}.{ext}" for ext in ("csv", "md")]


def get_tune_grid_record(wildcards):
    """Where publishing one grid records the machine and commit, beside its table (not the study's record)."""
    return f"tuning/{wildcards.grid}.published.md"


def get_tune_grid_tables(wildcards):
    return [f"{RESULTS}/{part}" for part in get_tune_grid_parts(wildcards)]


def get_published_tune(wildcards=None):
    return [f"{RESULTS}/published_tune/{g}.txt" for g in TUNE_GRIDS]
# Benchmarks whose source can be had: the leakage check covers these; the others are named as missing.
REAL_CHECKED = [b for b in EVAL_BENCHMARKS if REAL and REAL_PLAN["benchmarks"][b] not in REAL_PLAN["missing"]]
REAL_UNCHECKED = [b for b in EVAL_BENCHMARKS if REAL and b not in REAL_CHECKED]
# The toy world's synthetic capability tasks stay configured (a --configfile merge cannot drop them).
REAL_TOY_CAPABILITY = [t for t in CAPABILITY_TASKS if REAL and t in config["capability"]["tasks"]]


def get_real_data_outputs(wildcards=None):
    """The data card and the leakage table (part of `all` for real data)."""
    if REAL is None:
        return []
    return [
        f"{RESULTS}/data/data_card.md",
        f"{RESULTS}/data/data_card.json",
        f"{RESULTS}/tables/leakage.csv",
        f"{RESULTS}/tables/leakage.md",
    ]


def staged_json(source):
    return f"{RESULTS}/data/staged/{source}.json"


def stage_files(real_source):
    """The local files of a source, as found in data.raw_dir or the download dir; none to download."""
    from overrefusal.data.registry import get_source

    roots = [Path(d) for d in (config["data"].get("raw_dir"), REAL_STAGE["download_dir"]) if d]
    found = []
    for f in get_source(real_source).files:
        if f.glob:
            found += next((sorted(map(str, r.glob(f.path))) for r in roots if list(r.glob(f.path))), [])
        else:
            found += next(([str(r / f.path)] for r in roots if (r / f.path).is_file()), [])
    return found


def get_stage_inputs(wildcards):
    """A source's local files, ``ancient``: a mirror copied afresh has new mtimes and the same bytes, which must
    not rerun every model trained on it. Changed bytes are caught by hash where a staged source is read
    (``overrefusal.data.fetch.staged_paths``), with the command that stages it again."""
    return [ancient(p) for p in stage_files(wildcards.real_source)]


def get_eval_staged(wildcards):
    return staged_json(REAL_PLAN["benchmarks"][wildcards.benchmark])


def get_other_evaluated(wildcards):
    """Every other evaluated benchmark -> its staged source (a tuning part holds none of their prompts)."""
    return {b: staged_json(REAL_PLAN["benchmarks"][b]) for b in REAL_CHECKED if b != wildcards.benchmark}


def get_other_staged(wildcards):
    return sorted(set(get_other_evaluated(wildcards).values()))


def get_real_split_inputs(wildcards):
    from overrefusal.data.plan import source_of

    staged = sorted({source_of(s["source"])[0] for s in REAL_PLAN["splits"].values()} | set(REAL_PLAN["capability"]))
    inputs = {
        "staged": [staged_json(s) for s in staged],
        "evals": [f"{RESULTS}/data/eval/{b}.jsonl" for b in REAL_CHECKED],
    }
    if REAL_TUNED:  # split sources and the overlap check of every tuning part against every evaluation part
        inputs["tuning"] = [tuning_part(b) for b in REAL_TUNED]
    return inputs


def get_real_card_inputs(wildcards):
    return {
        "manifest": MANIFEST,
        "staged": [staged_json(s) for s in REAL_PLAN["stage"] if s not in REAL_PLAN["missing"]],
        "reports": [f"{RESULTS}/data/reports/eval_{b}.json" for b in dict.fromkeys(REAL_CHECKED + REAL_TUNED)],
    }


# ---- Published runs: a run in parts (overrefusal.run_store; docs/study.md, "Parts") ----
from overrefusal import run_store

HANDOVER = config["handover"]
PUBLISHED_ROOT = f"results/published/{config['name']}"


def run_files(model, method, seed):
    """What the report rules read of one run, relative to its directory: what a published run holds."""
    kind = KINDS[SPECS[method]["kind"]]
    files = [f"eval/{b}.json" for b in EVAL_BENCHMARKS] + ["eval/capability.json"]
    if kind.trains:
        files.append("sft_metrics.json")
        if config["tracking"]["enabled"]:
            files.append("tracking.json")
    if kind.dcr:
        files.append("dcr/metrics.json")
        if config["tracking"]["enabled"]:
            files.append("dcr/tracking.json")
    if kind.intervention:
        files.append("intervention/report.json")
    if WINRATE_ON and method in WINRATE_METHODS:
        files.append("helpfulness/winrate.json")
    if WINRATE_ON and method == WINRATE_REFERENCE:  # what the others' win rates are judged against
        files.append("generations/helpfulness.jsonl")
    return files


def _published_warning(msg):
    print(f"handover: {msg}", file=sys.stderr)


def store_dir(model, method, seed):
    return run_store.published_dir(PUBLISHED_ROOT, model, method, seed)


# Every run of `all`, its recipe, and where the report rules read it: its published copy (reuse on, same
# recipe) or its run directory.
RUNS = [(model, method, seed) for model in MODELS for method in METHODS for seed in seeds_of(method)]
RECIPES = {r: run_store.run_recipe(config, *r) for r in RUNS}
RESOLVED = {r: run_store.resolve(run_dir(*r), store_dir(*r), RECIPES[r], run_files(*r), reuse=HANDOVER["reuse"],
                                 warn=_published_warning)
            for r in RUNS}
try:
    PARTS = run_store.plan_parts(METHODS, {m: seeds_of(m) for m in METHODS}, dict(PLAN.applies_to),
                                 HANDOVER["parts"])
except ValueError as exc:
    raise WorkflowError(str(exc)) from None


def result_file(model, method, seed, rel):
    """Where the report rules read one of a run's files (a sweep's or tune grid's run: its directory)."""
    resolved = RESOLVED.get((model, method, int(seed)))
    return resolved.file(rel) if resolved else f"{run_dir(model, method, seed)}/{rel}"


def get_publish_run_inputs(wildcards):
    return [f"{run_dir(wildcards.model, wildcards.method, wildcards.seed)}/{f}"
            for f in run_files(wildcards.model, wildcards.method, int(wildcards.seed))]


def get_publish_run_params(wildcards):
    model, method, seed = wildcards.model, wildcards.method, int(wildcards.seed)
    return {"run_dir": run_dir(model, method, seed), "store": store_dir(model, method, seed),
            "files": run_files(model, method, seed), "recipe": RECIPES[(model, method, seed)],
            "benchmarks": f"{BENCH}/{model}/{method}/seed{seed}", "root": workflow.basedir}


def part_runs(part):
    return [(model, method, seed) for method, seed in PARTS[part] for model in MODELS]


def get_part_inputs(wildcards):
    """The publish receipts of a part's runs that are not published already (those are reused as they are)."""
    return [f"{RESULTS}/published_runs/{model}/{method}/seed{seed}.json" for model, method, seed in part_runs(wildcards.part)
            if not RESOLVED[(model, method, seed)].published]


def get_part_params(wildcards):
    return [{"model": model, "method": method, "seed": seed, "reused": RESOLVED[(model, method, seed)].published,
             "store": store_dir(model, method, seed)}
            for model, method, seed in part_runs(wildcards.part)]


_WARM_START = []


def start_warm_start():
    """A warm-start server for a local run with at least two models to load (a rule that declares a GPU loads
    one; the server's own imports cost about one job's). A cluster's jobs run on other nodes: none there."""
    if not (workflow.local_exec and workflow.is_main_process):
        return
    if sum("gpu" in job.rule.resources for job in workflow.dag.needrun_jobs()) >= 2:
        _WARM_START.append(warm_start.start_server(Path.cwd(), Path(workflow.basedir) / "scripts",
                                                   f"{LOGS}/warm_start.log"))


def stop_warm_start():
    while _WARM_START:
        warm_start.stop_server(_WARM_START.pop())
