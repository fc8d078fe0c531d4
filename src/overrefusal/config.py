"""Validate the pipeline config before any job starts, with errors that name the key and the fix.

JSON Schema (``overrefusal/schemas/config.schema.yaml``) checks structure, types and ranges; the cross-field
checks below need more than one key at a time (a DCR layer against each model's depth, the method
kinds' own options, the external endpoint's API key).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .presets import merge_config, preset_files  # noqa: F401 - part of this module's interface
from .methods import KINDS
from .settings import properties
from .stage_settings import SECTIONS

REPO = Path(__file__).resolve().parents[2]
# Package data, so an installed (not editable) package finds it too.
SCHEMAS = Path(__file__).resolve().parent / "schemas"
SCHEMA = SCHEMAS / "config.schema.yaml"


@functools.cache
def load_schema() -> dict[str, Any]:
    """The config schema, read once (treat as read-only). The stage sections' keys (``$defs.dcr``, ``.scans``,
    ``.surgical``, ``.sft``) come from their settings dataclasses, their one home; the file holds the rest."""
    with SCHEMA.open() as fh:
        schema = yaml.safe_load(fh)
    for name, cls in SECTIONS.items():
        if "properties" in schema["$defs"][name]:
            raise ValueError(f"{SCHEMA}: $defs.{name} declares properties; they are generated from {cls.__name__}")
        schema["$defs"][name]["properties"] = properties(cls)
        # the section itself needs every key; a method instance overrides some
        schema["properties"][name]["required"] = [f.name for f in fields(cls)] + sorted(cls.CONSUMED_ELSEWHERE)
    return schema


def kind_options(schema: dict[str, Any]) -> dict[str, set[str]]:
    """The keys a method instance of each kind may set besides ``kind``/``enabled``: the properties of
    every ``then`` of ``$defs.method`` whose ``if`` the kind meets (so the schema is their one home)."""
    method = schema["$defs"]["method"]
    out: dict[str, set[str]] = {}
    for kind in method["properties"]["kind"]["enum"]:
        out[kind] = set()
        for rule in method["allOf"]:
            cond = rule["if"]["properties"]["kind"]
            if kind in cond.get("enum", [cond.get("const")]):
                out[kind] |= schema_keys(schema, rule["then"])
    return out


def schema_keys(schema: dict[str, Any], sub: dict[str, Any]) -> set[str]:
    """The property names a subschema declares, through ``$ref`` and ``allOf``."""
    if "$ref" in sub:
        sub = schema["$defs"][sub["$ref"].rsplit("/", 1)[1]]
    return set(sub.get("properties", {})) | {k for part in sub.get("allOf", []) for k in schema_keys(schema, part)}


KIND_OPTIONS = kind_options(load_schema())


class ConfigError(ValueError):
    """The config is invalid; the message names each offending key and what is allowed."""


def _path(err: ValidationError) -> str:
    parts = [str(p) for p in err.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def _bounds(sub: dict[str, Any]) -> str:
    parts = []
    if "minimum" in sub:
        parts.append(f">= {sub['minimum']}")
    if "exclusiveMinimum" in sub:
        parts.append(f"> {sub['exclusiveMinimum']}")
    if "maximum" in sub:
        parts.append(f"<= {sub['maximum']}")
    if "exclusiveMaximum" in sub:
        parts.append(f"< {sub['exclusiveMaximum']}")
    if "minimum" in sub and "maximum" in sub and len(parts) == 2:
        return f"{sub['minimum']}..{sub['maximum']}"
    return " and ".join(parts)


def _describe(sub: dict[str, Any]) -> str:
    if "enum" in sub:
        return " or ".join(map(repr, sub["enum"]))
    if sub.get("type") == "array":
        return f"a list{' of at least ' + str(sub['minItems']) if 'minItems' in sub else ''}"
    return str(sub.get("type", "a value"))


def format_error(err: ValidationError, source: str) -> str:
    where = _path(err)
    sub = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = [k for k in err.instance if k not in sub.get("properties", {})] if isinstance(err.instance, dict) else []
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"{source}: {where}: unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if err.validator == "unevaluatedProperties" and isinstance(err.instance, dict):
        kind = err.instance.get("kind")
        if where.startswith("methods.") and kind in KIND_OPTIONS:
            bad = sorted(set(err.instance) - {"kind", "enabled"} - KIND_OPTIONS[kind])
            allowed = ", ".join(sorted(KIND_OPTIONS[kind])) or "none"
            return (f"{source}: {where}: option(s) {', '.join(map(repr, bad))} do not apply to kind '{kind}' "
                    f"(its options: {allowed})")
        known = schema_keys(load_schema(), sub)
        extra = [k for k in err.instance if k not in known]
        return f"{source}: {where}: unknown key(s) {', '.join(map(repr, extra))}; allowed keys: {', '.join(sorted(known))}"
    if err.validator == "type" and "propertyNames" in err.schema_path:  # YAML reads `1:` or `true:` as non-text
        return f"{source}: {where}: key {err.instance!r} must be text; quote it in YAML ('{err.instance}': ...)"
    if err.validator == "enum" and "propertyNames" in err.schema_path:
        from .benchmarks import SUITES

        valid = list(err.validator_value)
        if valid[:len(SUITES)] == list(SUITES):  # eval.judges / secondary_judges: name both kinds of key
            return (f"{source}: {where}: unknown key {err.instance!r}, neither a suite nor a benchmark; suites: "
                    f"{', '.join(SUITES)}; benchmarks: {', '.join(valid[len(SUITES):])}")
        return f"{source}: {where}: unknown key {err.instance!r}; valid keys: {', '.join(map(str, valid))}"
    if err.validator == "enum":
        return f"{source}: {where}: {err.instance!r} is not allowed; valid values: {', '.join(map(str, err.validator_value))}"
    if err.validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{source}: {where}: {err.instance!r} is out of range (allowed {_bounds(sub)})"
    if err.validator in ("oneOf", "anyOf"):
        options = " or ".join(_describe(o) for o in err.validator_value)
        return f"{source}: {where}: {err.instance!r} is not allowed; expected {options}"
    return f"{source}: {where}: {err.message}"


def enabled_models(config: dict[str, Any]) -> list[str]:
    """The models this run uses: every entry not switched off with ``enabled: false``."""
    return [m for m, spec in config["models"].items() if spec.get("enabled", True)]


def enabled_methods(config: dict[str, Any]) -> list[str]:
    """The method instances this run trains and evaluates (``enabled: false`` skips one)."""
    return [m for m, spec in config["methods"].items() if spec.get("enabled", True)]


def enabled_capability_tasks(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The capability tasks this run evaluates (``enabled: false`` skips one), without the switch itself."""
    return {name: {k: v for k, v in spec.items() if k != "enabled"}
            for name, spec in config["capability"]["tasks"].items() if spec.get("enabled", True)}


# Config keys of a capability task that only one family of kinds takes.
CAPABILITY_KIND_KEYS = {"doc_to_text": ("mc", "gen"), "lm_eval_task": ("lm_eval",), "metric": ("lm_eval",)}


def capability_errors(config: dict[str, Any], source: str) -> list[str]:
    """Kind-specific keys, and (toy world) that every local task is one the toy world writes."""
    errs: list[str] = []
    for task, spec in enabled_capability_tasks(config).items():
        for key, kinds in CAPABILITY_KIND_KEYS.items():
            if key in spec and spec["kind"] not in kinds:
                errs.append(f"{source}: capability.tasks.{task}.{key}: applies to kind {' or '.join(kinds)} only, "
                            f"not {spec['kind']!r}")
        if config["data"]["source"] == "toy" and spec["kind"] != "lm_eval":
            from .toyworld import CAPABILITY_TASKS

            if task not in CAPABILITY_TASKS:
                errs.append(f"{source}: capability.tasks.{task}: unknown toy task; valid: {', '.join(CAPABILITY_TASKS)}"
                            " (or kind: lm_eval for an lm-eval registry task)")
    return errs


def model_depth(config: dict[str, Any], model: str) -> int | None:
    """Number of decoder layers: the toy arch's, or the hub entry's ``num_layers`` (checked on fetch)."""
    spec = config["models"][model]
    if "arch" in spec:
        return int(spec["arch"]["num_layers"])
    if "num_layers" in spec:
        return int(spec["num_layers"])
    return None


def semantic_errors(config: dict[str, Any], source: str, *, env: dict[str, str] | None = None) -> list[str]:
    env = dict(os.environ) if env is None else env
    errs: list[str] = []
    for name in enabled_methods(config):
        spec = config["methods"][name]
        kind = spec["kind"]
        errs += _intervention_errors(config, name, source)
        if KINDS[kind].dcr:
            layer = spec.get("layer", config["dcr"]["layer"])
            key = f"methods.{name}.layer" if "layer" in spec else "dcr.layer"
            for model in enabled_models(config):
                depth = model_depth(config, model)
                if depth is not None and not 0 <= layer < depth:
                    errs.append(f"{source}: {key}: {layer} is outside the depth of model '{model}', which has "
                                f"{depth} decoder layers (allowed 0..{depth - 1})")
    kernel = config["tracking"].get("kernel") or {}
    if kernel.get("enabled"):
        every = config["tracking"]["every_steps"]
        if kernel["every_steps"] % every:
            errs.append(f"{source}: tracking.kernel.every_steps: {kernel['every_steps']} is not a multiple of "
                        f"tracking.every_steps ({every}); the kernel is measured at tracked steps only")
        if kernel["n_per_class"] > config["tracking"]["n_probe"]:
            errs.append(f"{source}: tracking.kernel.n_per_class: {kernel['n_per_class']} exceeds tracking.n_probe "
                        f"({config['tracking']['n_probe']}), the prompts each probe set holds")
    unknown = [s for s in config["analysis"]["seeds"] or [] if s not in config["seeds"]]
    if unknown:
        errs.append(f"{source}: analysis.seeds: {unknown} not among seeds {config['seeds']}")
    if not enabled_models(config):
        errs.append(f"{source}: models: every model has enabled: false; enable at least one (config/presets/dcr.yaml "
                    "names none: put a model overlay after it, e.g. config/presets/dcr_qwen2.5-7b.yaml)")
    errs += _hub_model_errors(config, source)
    if config["teacher"]["from_model"] not in config["models"]:
        errs.append(f"{source}: teacher.from_model: unknown model {config['teacher']['from_model']!r}; "
                    f"valid: {', '.join(config['models'])}")
    uses_external = any(
        KINDS[s["kind"]].reflections and s.get("reflection", config["tbr"]["reflection"]) == "external"
        for s in (config["methods"][m] for m in enabled_methods(config))
    )
    ext = config["tbr"]["external"]
    teacher = config["teacher"]["from_model"]
    if uses_external and ext["base_url"] == "local" and teacher in config["models"] and \
            teacher not in enabled_models(config):
        errs.append(f"{source}: teacher.from_model: the local toy teacher (tbr.external.base_url: local) is "
                    f"trained from '{teacher}', which has enabled: false; enable it or point "
                    "tbr.external.base_url at a real endpoint")
    if uses_external and ext["base_url"] != "local":
        if not (ext["base_url"].startswith("http://") or ext["base_url"].startswith("https://")):
            errs.append(f"{source}: tbr.external.base_url: {ext['base_url']!r} must be 'local' or an http(s) URL")
        if not env.get(ext["api_key_env"]):
            errs.append(f"{source}: tbr.external.api_key_env: external reflections need an API key, but the "
                        f"environment variable {ext['api_key_env']} is not set")
    errs += capability_errors(config, source)
    if config["data"]["source"] == "toy":
        from .toyworld import EVAL_SHAPES

        for bench in config["eval"]["benchmarks"]:
            if bench not in EVAL_SHAPES:
                errs.append(f"{source}: eval.benchmarks: {bench} has no toy-world counterpart (real data only); "
                            f"the toy world writes {', '.join(EVAL_SHAPES)}")
    if config["data"]["source"] == "real":
        errs += _real_data_errors(config, source)
    errs += _data_dir_errors(config, source)
    errs += _tune_errors(config, source)
    errs += judge_and_winrate_errors(config, source, env)
    errs += _count_errors(config, source)
    return errs


def reflection_shots(data_source: str) -> int:
    """How many worked examples data/reflection_fewshot.jsonl holds: a fixed set in either world."""
    if data_source == "real":
        from .data.splits import FEWSHOT

        return len(FEWSHOT)
    from .toyworld.world import REFLECTION_SHOTS

    return REFLECTION_SHOTS


def probe_sizes(config: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """``{probe set: (prompts its file holds, the key that sets that)}`` for the probe sets whose size the
    config fixes; a whole real benchmark is counted only once staged (``tracking.load_probe_set`` checks)."""
    from .toyworld import CAPABILITY_TASKS

    data = config["data"]
    toy = data.get("toy") or {}
    real = data.get("real") if data["source"] == "real" else None
    out: dict[str, tuple[int, str]] = {}
    for probe, name in config["tracking"]["probes"].items():
        if probe == "general" and name == "general_heldout":
            split = (real or {}).get("splits", {}).get("general_heldout")
            if split:
                out[probe] = (split["n"], "data.real.splits.general_heldout.n")
        elif probe == "general":
            if name in CAPABILITY_TASKS and name != "toy_facts_mc" and "capability_per_task" in toy:
                out[probe] = (toy["capability_per_task"], "data.toy.capability_per_task")
        elif real is None and "eval_per_benchmark" in toy:
            out[probe] = (toy["eval_per_benchmark"], "data.toy.eval_per_benchmark")
        elif real is not None and real.get("eval_subset"):
            from .data.tuning import eval_size

            n, key = eval_size(real, name)
            if n is not None:
                out[probe] = (n, key)
    return out


def _count_errors(config: dict[str, Any], source: str) -> list[str]:
    """Counts beyond the data they draw from. A job would otherwise take what there is and report results on
    fewer examples than the config states; counts only staged data knows are refused by the job instead."""
    errs: list[str] = []
    methods = [config["methods"][m] for m in enabled_methods(config)]
    used = {s.get("reflection", config["tbr"]["reflection"]) for s in methods if KINDS[s["kind"]].reflections}
    have = reflection_shots(config["data"]["source"])
    for which in sorted(used):
        want = config["tbr"][which]["num_shots"]
        if want > have:
            errs.append(f"{source}: tbr.{which}.num_shots = {want} but split reflection_fewshot holds {have} examples")
    asks = []
    if config["tracking"]["enabled"]:
        asks.append(("tracking.n_probe", config["tracking"]["n_probe"]))
    analysis = config["analysis"]
    if analysis["separability"]["enabled"] or analysis["attribution"]["enabled"]:
        asks.append(("analysis.n_per_class", analysis["n_per_class"]))
    if analysis["entk"]["enabled"]:
        asks.append(("analysis.entk.n_per_class", analysis["entk"]["n_per_class"]))
    sizes = probe_sizes(config)
    for key, n in asks:
        for probe, (rows, why) in sizes.items():
            if n > rows:
                errs.append(f"{source}: {key} = {n} but probe set {probe} "
                            f"({config['tracking']['probes'][probe]}) holds {rows} prompts ({why})")
    return errs


def _hub_model_errors(config: dict[str, Any], source: str) -> list[str]:
    """A hub model's local_dir must exist and agree with num_layers before any job starts."""
    from .models.hub import HubModelError, config_num_layers

    errs = []
    for name in enabled_models(config):
        spec = config["models"][name]
        local = spec.get("local_dir") if spec["source"] == "hub" else None
        if not local:
            continue
        if not os.path.isdir(local):
            errs.append(f"{source}: models.{name}.local_dir: {local} is not a directory (unset it to fetch "
                        f"{spec['repo_id']}@{spec['revision']} with rule fetch_model)")
            continue
        try:
            depth = config_num_layers(local)
        except HubModelError as exc:
            errs.append(f"{source}: models.{name}.local_dir: {exc}")
            continue
        if depth != spec["num_layers"]:
            errs.append(f"{source}: models.{name}.num_layers: {spec['num_layers']} disagrees with "
                        f"{local}/config.json num_hidden_layers={depth}")
    return errs


# Prompt sets the toy world writes with free-text reference answers (what the oracle judge needs).
TOY_WINRATE_PROMPTS = ("capability/toy_arith", "capability/toy_words")


def _endpoint_errors(ep: dict[str, Any], key: str, need: str, source: str, env: dict[str, str]) -> list[str]:
    """A judge endpoint's URL and API key, checked before any job starts (``local`` needs no key)."""
    if ep["base_url"] == "local":
        return []
    from urllib.parse import urlparse

    errs = []
    url = urlparse(ep["base_url"])
    if url.scheme not in ("http", "https") or not url.netloc:
        errs.append(f"{source}: {key}.base_url: {ep['base_url']!r} must be 'local' or an http(s) URL "
                    "such as https://api.openai.com/v1")
    if not env.get(ep["api_key_env"]):
        errs.append(f"{source}: {key}.api_key_env: {need} needs an API key, but the environment variable "
                    f"{ep['api_key_env']} is not set")
    return errs


def benchmark_judges(config: dict[str, Any], key: str = "judges",
                     benchmarks: Iterable[str] | None = None) -> dict[str, str]:
    """Benchmark -> judge id under ``eval.<key>`` (``judges`` or ``secondary_judges``) for each benchmark of
    ``eval.benchmarks`` (or ``benchmarks``): the benchmark's own key, else its suite's. A benchmark with
    neither is left out (only possible for secondary judges: the schema requires every suite's primary).

    The one place a benchmark's judge is decided: the judge rule's params, the LLM endpoint check and the
    workflow's LLM params all go through it, so they never disagree."""
    from .benchmarks import get_benchmark

    table = config["eval"].get(key) or {}
    out: dict[str, str] = {}
    for bench in config["eval"]["benchmarks"] if benchmarks is None else benchmarks:
        judge = table.get(bench, table.get(get_benchmark(bench).suite))
        if judge is not None:
            out[bench] = judge
    return out


def llm_judges_used(config: dict[str, Any]) -> list[str]:
    """The LLM judges the judge rule will call (primary or secondary, on the evaluated benchmarks), sorted."""
    from .judges import is_llm_judge

    used = {*benchmark_judges(config).values(), *benchmark_judges(config, "secondary_judges").values()}
    return sorted(j for j in used if is_llm_judge(j))


def judge_and_winrate_errors(config: dict[str, Any], source: str, env: dict[str, str]) -> list[str]:
    """LLM judges need ``eval.llm_judge``; the win rate needs a known reference and its judge's key;
    ``data.raw_dir`` must hold the files of each labelled set judge validation reads."""
    errs: list[str] = []
    if config["data"]["source"] != "toy":
        for key in ("judges", "secondary_judges"):
            for name_key, name in (config["eval"].get(key) or {}).items():
                if name == "toy_outcome_v1":
                    errs.append(f"{source}: eval.{key}.{name_key}: toy_outcome_v1 judges the toy world's own answers "
                                f"and cannot judge data.source {config['data']['source']!r}; pick a string-match "
                                "or LLM judge")
    llm = llm_judges_used(config)
    if llm:
        ep = config["eval"].get("llm_judge")
        if ep is None:
            errs.append(f"{source}: eval.llm_judge: eval.judges names the LLM judge(s) {', '.join(llm)}, which need "
                        "an endpoint section eval.llm_judge {base_url, model, api_key_env, ...}")
        else:
            errs += _endpoint_errors(ep, "eval.llm_judge", f"the LLM judge(s) {', '.join(llm)}", source, env)
    wr = config.get("winrate")
    if wr is not None and wr["enabled"]:
        if wr["reference"] not in enabled_methods(config):
            errs.append(f"{source}: winrate.reference: {wr['reference']!r} is not an enabled method; valid: "
                        f"{', '.join(enabled_methods(config))}")
        if config["data"]["source"] == "toy":
            for ps in wr["prompts"]:
                if ps not in TOY_WINRATE_PROMPTS:
                    errs.append(f"{source}: winrate.prompts: {ps!r} is not a toy prompt set with reference answers; "
                                f"valid: {', '.join(TOY_WINRATE_PROMPTS)}")
        errs += _endpoint_errors(wr["judge"], "winrate.judge", "the win-rate judge", source, env)
    errs += judge_validation_errors(config, source)
    errs += learned_judge_errors(config, source)
    return errs


def learned_judges_used(config: dict[str, Any]) -> list[str]:
    """The learned (trained, offline) judges the judge rule will load, primary or secondary, sorted."""
    from .judges import LEARNED_JUDGES

    used = {*benchmark_judges(config).values(), *benchmark_judges(config, "secondary_judges").values()}
    return sorted(j for j in used if j in LEARNED_JUDGES)


def learned_judge_training_sets(config: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """Labelled set name -> spec that rule train_learned_judge trains learned judge ``name`` on ({} when the
    config gives a trained artefact instead)."""
    from .judge_validation import DEFAULT_SETS

    entry = (config["eval"].get("learned_judges") or {}).get(name) or {}
    sets = (config["eval"].get("judge_validation") or {}).get("sets", DEFAULT_SETS)
    # `enabled` is judge validation's switch: a set kept out of validation can still be trained on.
    return {s: {k: v for k, v in sets[s].items() if k != "enabled"} for s in entry.get("train_sets") or []}


def _given(entry: dict[str, Any], key: str) -> bool:
    """A key set to null counts as absent: an overlay cannot delete a key its base preset sets."""
    return entry.get(key) is not None


def learned_judge_errors(config: dict[str, Any], source: str) -> list[str]:
    """Each learned judge in use has an entry under ``eval.learned_judges``: labelled sets that exist (and
    ``data.raw_dir`` to read them from), or a trained artefact directory. A learned judge is never validated on
    human labels by rule judge_validation: agreement measured on its own training rows would overstate it; its
    held-out measure is the leave-one-model-out table that comes with training."""
    from .judge_validation import DEFAULT_SETS
    from .judges import LEARNED_JUDGES

    errs: list[str] = []
    table = config["eval"].get("learned_judges") or {}
    sets = (config["eval"].get("judge_validation") or {}).get("sets", DEFAULT_SETS)
    for name in (config["eval"].get("judge_validation") or {}).get("judges", []):
        if name in LEARNED_JUDGES:
            errs.append(f"{source}: eval.judge_validation.judges: {name} is trained on human labels, so its agreement "
                        "on them would be measured on its own training rows; its held-out table is "
                        f"results/{config['name']}/judges/{name}_cv.md (leave-one-model-out), written with its training")
    for name, entry in table.items():
        if _given(entry, "artefact") == _given(entry, "train_sets"):
            errs.append(f"{source}: eval.learned_judges.{name}: give exactly one of train_sets (labelled sets to train "
                        "on) and artefact (a trained artefact directory)")
    for name in learned_judges_used(config):
        entry = table.get(name)
        if entry is not None and _given(entry, "artefact") == _given(entry, "train_sets"):
            continue
        if entry is None:
            errs.append(f"{source}: eval.learned_judges.{name}: eval.judges names the learned judge {name}; say what "
                        "it is trained on (train_sets: [xstest]) or where its trained artefact is (artefact: <dir>)")
            continue
        if _given(entry, "artefact"):
            if not (Path(entry["artefact"]) / "manifest.json").is_file():
                errs.append(f"{source}: eval.learned_judges.{name}.artefact: {entry['artefact']!r} holds no "
                            f"manifest.json (train one: python -m overrefusal.judges.learned train --out <dir>)")
            continue
        for s in entry["train_sets"]:
            if s not in sets:
                errs.append(f"{source}: eval.learned_judges.{name}.train_sets: {s!r} is not a labelled set of "
                            f"eval.judge_validation.sets; valid: {', '.join(sorted(sets))}")
        if entry.get("reference") and not (Path(entry["reference"]) / "manifest.json").is_file():
            errs.append(f"{source}: eval.learned_judges.{name}.reference: {entry['reference']!r} holds no manifest.json")
        families = {sets[s].get("family", s) for s in entry["train_sets"] if s in sets}
        if name == "refusal_clf_v2" and len(families) < 2:
            errs.append(f"{source}: eval.learned_judges.{name}.train_sets: leave-one-source-out needs sets of at least "
                        f"two families; got {', '.join(sorted(families)) or 'none'}")
        raw = config["data"].get("raw_dir")
        if raw is None:
            errs.append(f"{source}: eval.learned_judges.{name}.train_sets: training reads the labelled sets under "
                        "data.raw_dir, which is not set")
        elif Path(raw).is_dir():  # a missing directory is reported once, by _data_dir_errors
            for s in entry["train_sets"]:
                if s in sets and not any(p.is_file() for p in Path(raw).glob(sets[s]["files"])):
                    errs.append(f"{source}: eval.learned_judges.{name}.train_sets: no file matches "
                                f"{sets[s]['files']} (set {s}) under data.raw_dir {raw!r}")
    return errs


def judge_validation_sets(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The labelled sets rule judge_validation reads: the enabled ones, and none without ``data.raw_dir``."""
    from .judge_validation import DEFAULT_JUDGES, DEFAULT_SETS, enabled_sets

    if config["data"].get("raw_dir") is None:
        return {}
    jv = config["eval"].get("judge_validation") or {"judges": list(DEFAULT_JUDGES), "sets": DEFAULT_SETS}
    return enabled_sets(jv["sets"])


def judge_validation_errors(config: dict[str, Any], source: str) -> list[str]:
    """Each labelled set judge validation will read is well described and has files under ``data.raw_dir``;
    its judges need nothing but (prompt, response)."""
    from .judge_validation import labelled_set_problems
    from .judges import is_llm_judge

    errs: list[str] = []
    jv = config["eval"].get("judge_validation")
    if jv is not None:
        for name in jv["judges"]:
            if is_llm_judge(name) or name == "toy_outcome_v1":
                errs.append(f"{source}: eval.judge_validation.judges: {name} cannot be validated here (it needs "
                            f"{'an endpoint' if is_llm_judge(name) else 'the toy world'}); use string-match judges")
        for name, spec in jv["sets"].items():
            errs += [f"{source}: eval.judge_validation.sets.{name}: {p}" for p in labelled_set_problems(spec)]
    raw = config["data"].get("raw_dir")
    if raw is None or not Path(raw).is_dir():  # a missing directory is reported once, by _data_dir_errors
        return errs
    for name, spec in judge_validation_sets(config).items():
        if labelled_set_problems(spec):
            continue
        if not any(p.is_file() for p in Path(raw).glob(spec["files"])):
            key = f"eval.judge_validation.sets.{name}" if jv is not None else "data.raw_dir"
            errs.append(f"{source}: {key}: no file matches {spec['files']} under data.raw_dir {raw!r} (needed by "
                        f"judge_validation; put the files there or set eval.judge_validation.sets.{name}.enabled: false)")
    return errs


def _data_dir_errors(config: dict[str, Any], source: str) -> list[str]:
    raw = config["data"].get("raw_dir")
    if raw is not None and not Path(raw).is_dir():
        return [(f"{source}: data.raw_dir: {raw!r} is not a directory (relative paths start at the working "
                f"directory {Path.cwd()})")]
    return []


def _intervention_errors(config: dict[str, Any], name: str, source: str) -> list[str]:
    """An intervention runs on an enabled, non-intervention method's model, at layers the models have."""
    spec = config["methods"][name]
    kind = KINDS[spec["kind"]]
    if not kind.intervention or not kind.section:
        return []
    errs = []
    on = spec.get("apply_to", config[kind.section]["apply_to"])
    key = f"methods.{name}.apply_to" if "apply_to" in spec else f"{kind.section}.apply_to"
    methods = enabled_methods(config)
    if on not in methods or KINDS[config["methods"][on]["kind"]].intervention:
        valid = [m for m in methods if not KINDS[config["methods"][m]["kind"]].intervention]
        errs.append(f"{source}: {key}: {on!r} is not an enabled method it can run on; valid: {', '.join(valid)}")
    for rng_key in ("steer_layers", "classify_layers"):
        rng = spec.get(rng_key, config[kind.section].get(rng_key))
        if rng is None:
            continue
        for model in enabled_models(config):
            depth = model_depth(config, model)
            if depth is not None and not 0 <= rng[0] < rng[1] <= depth:
                where = f"methods.{name}.{rng_key}" if rng_key in spec else f"{kind.section}.{rng_key}"
                errs.append(f"{source}: {where}: [{rng[0]}, {rng[1]}) is outside model '{model}', which has "
                            f"{depth} decoder layers")
    return errs


def _tune_errors(config: dict[str, Any], source: str) -> list[str]:
    """tune.benchmarks without a tuning part, and every method instance's sft_n against its kind's splits and
    their sizes: refused before any job, not clipped."""
    from .methods import method_specs, tune_grids

    errs: list[str] = []
    real = config["data"].get("real") if config["data"]["source"] == "real" else None
    tuned = set((real or {}).get("tuning") or {})
    for bench in (config.get("tune") or {}).get("benchmarks") or []:
        if bench not in tuned:
            errs.append(f"{source}: tune.benchmarks: {bench} has no tuning part (data.real.tuning.{bench}), so a "
                        "setting chosen on it would be chosen on evaluated prompts")
    where = {m: f"tune.grids.{g}.settings.{m.removeprefix(f'tune_{g}_')}"
             for g, grid in tune_grids(config).items() for m in grid["methods"]}
    specs = method_specs(config)
    for name in [*enabled_methods(config), *where]:
        spec, key = specs[name], where.get(name, f"methods.{name}")
        kind = KINDS[spec["kind"]]
        for split, n in (spec.get("sft_n") or {}).items():
            if split not in kind.sft_data:
                errs.append(f"{source}: {key}.sft_n.{split}: kind {kind.name} trains on "
                            f"{', '.join(kind.sft_data) or 'no split'}, not {split}")
            elif real is not None and split in real["splits"] and n > real["splits"][split]["n"]:
                errs.append(f"{source}: {key}.sft_n.{split} = {n} but data.real.splits.{split}.n is "
                            f"{real['splits'][split]['n']}; raise the split's n")
    return errs


def validate_config(config: dict[str, Any], source: str = "config", *, env: dict[str, str] | None = None) -> None:
    """Raise ``ConfigError`` listing every problem, or return quietly."""
    validator = Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    # A key with a bad value also counts as unevaluated (its subschema failed): report the value only.
    paths = [tuple(e.absolute_path) for e in errors if e.validator != "unevaluatedProperties"]
    errors = [e for e in errors if e.validator != "unevaluatedProperties" or not any(
        len(p) > len(e.absolute_path) and p[:len(e.absolute_path)] == tuple(e.absolute_path) for p in paths)]
    msgs = [format_error(e, source) for e in errors]
    if not msgs:
        msgs = semantic_errors(config, source, env=env)
    if msgs:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(msgs))


def _real_data_errors(config: dict[str, Any], source: str) -> list[str]:
    data = config["data"]
    real = data.get("real")
    if real is None:
        return [(f"{source}: data.real: data.source is 'real' but there is no data.real section "
                "(see config/presets/tbr.yaml)")]
    from .data.plan import source_of
    from .data.registry import SOURCES
    from .toyworld import CAPABILITY_TASKS

    errs: list[str] = []
    if data.get("raw_dir") is None and not real["download"]:
        errs.append(f"{source}: data.raw_dir: real data needs a local mirror (data.raw_dir, laid out like "
                    "../shared/data) or data.real.download: true")
    for split, spec in real["splits"].items():
        for name in [spec["source"], *real.get("substitutes", {}).get(spec["source"], [])]:
            try:
                src, _ = source_of(name)
            except KeyError as exc:
                errs.append(f"{source}: data.real.splits.{split}.source: {exc.args[0]}")
                continue
            if SOURCES[src].role == "capability":
                errs.append(f"{source}: data.real.splits.{split}.source: {name!r} is a capability task, not prompts")
    for name in real.get("pins", {}):
        if name not in SOURCES:
            errs.append(f"{source}: data.real.pins.{name}: unknown source; valid: {', '.join(SOURCES)}")
    errs += _real_count_errors(config, source)
    if "contrastive_seemingly" in real["splits"] and "contrastive_toxic" not in real["splits"] \
            or "contrastive_toxic" in real["splits"] and "contrastive_seemingly" not in real["splits"]:
        errs.append(f"{source}: data.real.splits: contrastive_seemingly and contrastive_toxic come together")
    errs += toy_part_errors(config, source)
    written = set(real.get("capability", {}))
    for task, spec in enabled_capability_tasks(config).items():
        if task in CAPABILITY_TASKS or spec["kind"] == "lm_eval":
            continue  # toy tasks: refused above; registry tasks are staged from the hub
        if task not in written:
            errs.append(f"{source}: capability.tasks.{task}: real data writes the capability task(s) named in "
                        f"data.real.capability ({', '.join(sorted(written)) or 'none'})")
        elif spec["kind"] != "mc":
            errs.append(f"{source}: capability.tasks.{task}.kind: {task} is multiple choice (mc)")
        else:
            errs += _lm_eval_prompt_errors(task, spec, source)
    return errs


def toy_part_errors(config: dict[str, Any], source: str) -> list[str]:
    """Toy-world data in a real-data run: a toy capability task, a tracking probe set or win-rate prompts drawn
    from one. The real-data rules still write the toy tasks (downstream rules keep the toy world's file
    names), so such a run would report toy numbers beside real ones, under real-data headings."""
    from .toyworld import CAPABILITY_TASKS

    errs: list[str] = []
    for task in enabled_capability_tasks(config):
        if task in CAPABILITY_TASKS:
            errs.append(f"{source}: capability.tasks.{task}: a toy-world task in a data.source 'real' run; switch it "
                        f"off ({task}: {{enabled: false}}), as the paper presets do")
    for probe, name in config["tracking"]["probes"].items():
        if name in CAPABILITY_TASKS:
            errs.append(f"{source}: tracking.probes.{probe}: {name!r} is a toy-world task in a data.source 'real' "
                        "run; use general_heldout (held-out Alpaca prompts, data.real.splits.general_heldout)")
    wr = config.get("winrate") or {}
    if wr.get("enabled"):
        for ps in wr["prompts"]:
            if ps.rpartition("/")[2] in CAPABILITY_TASKS:
                errs.append(f"{source}: winrate.prompts: {ps!r} is a toy-world task in a data.source 'real' run; "
                            "use general_heldout")
    return errs


def _lm_eval_prompt_errors(task: str, spec: dict[str, Any], source: str) -> list[str]:
    """A mirror set that reproduces an lm-eval task must prompt as that task does, or its score is not that
    task's; the prompt is the registry's (data.registry), so a preset cannot drift from it unnoticed."""
    from .capability import DOC_TO_TEXT
    from .data.registry import SOURCES

    want = SOURCES[task].options.get("doc_to_text")
    got = spec.get("doc_to_text", DOC_TO_TEXT)
    if want is None or got == want:
        return []
    return [f"{source}: capability.tasks.{task}.doc_to_text: {got!r} is not the prompt of lm-eval's "
            f"{SOURCES[task].options['lm_eval_task']} ({want!r}); set it to that, or leave it out where that is "
            f"the default ({DOC_TO_TEXT!r})"]


def _rows(name: str, real: dict[str, Any]) -> tuple[str, int | None]:
    """(registry source, the rows the loaders hold its file to) of a split source or benchmark name; None: no
    documented count. Raises KeyError for an unknown name."""
    from .data.fetch import rows_of
    from .data.plan import source_of
    from .data.registry import SOURCES

    src, _ = source_of(name)
    return src, rows_of(SOURCES[src], real.get("pins"))


def _real_count_errors(config: dict[str, Any], source: str) -> list[str]:
    """A split's n, or the evaluation subset's, above the rows of the file it is drawn from. The file is an
    upper bound (a label or category filter, de-duplication and decontamination keep fewer): the split
    builder and the eval-set job refuse what is still short once the data is staged."""
    from .data.plan import plan

    real = config["data"]["real"]
    errs: list[str] = []
    try:  # the source each split will read: its own, or the substitute standing in for a missing one
        chosen = {s: p["source"] for s, p in plan(real, config["data"].get("raw_dir"), [])["splits"].items()}
    except KeyError:
        return errs  # an unknown source, reported above
    # allow_smaller asks for a smaller split where the source falls short (the manifest records it)
    checked = {} if real.get("allow_smaller") else real["splits"]
    for split, spec in checked.items():
        name = chosen[split]
        src, rows = _rows(name, real)
        if rows is not None and spec["n"] > rows:
            of = f"source {name}" + (f" (file {src})" if src != name else "")
            if name != spec["source"]:
                of += f", standing in for the missing {spec['source']},"
            errs.append(f"{source}: data.real.splits.{split}.n = {spec['n']} but {of} holds {rows} rows (lower n, "
                        "or set data.real.allow_smaller: true to build the split smaller)")
    for task, spec in real.get("capability", {}).items():
        n, rows = spec.get("n"), _rows(task, real)[1]
        if n is not None and rows is not None and n > rows:
            errs.append(f"{source}: data.real.capability.{task}.n = {n} but the set holds {rows} questions")
    analysis = config["analysis"]
    probed = config["tracking"]["enabled"] or any(analysis[a]["enabled"] for a in ("entk", "separability",
                                                                                  "attribution"))
    probes = [config["tracking"]["probes"][p] for p in ("seemingly_toxic", "toxic")] if probed else []
    errs += _eval_part_errors(config, source, list(dict.fromkeys([*config["eval"]["benchmarks"], *probes])))
    return errs


def _eval_part_errors(config: dict[str, Any], source: str, evaluated: list[str]) -> list[str]:
    """Each benchmark's tuning part and evaluation size against the prompts it holds, and every training split
    against the evaluated prompts it could hold. Where the tuning part and the evaluated prompts cannot both fit,
    the surplus would be tuned on and evaluated: the message names the benchmark and that count."""
    from .data.plan import TRAIN_SPLITS, source_of
    from .data.registry import BENCHMARK_SOURCES
    from .data.tuning import benchmark_rows, eval_size, tuning_size

    real = config["data"]["real"]
    tuning = real.get("tuning") or {}
    errs: list[str] = []
    for bench in dict.fromkeys([*evaluated, *tuning]):
        if bench not in BENCHMARK_SOURCES:
            continue
        rows, why = benchmark_rows(bench, real)
        size, key = eval_size(real, bench)
        spec = tuning.get(bench)
        if rows is None:
            continue
        if spec is None:
            if size is not None and size > rows and bench in evaluated:
                errs.append(f"{source}: {key} = {size} but benchmark {bench} holds at most {rows} prompts ({why})")
            continue
        t_key = f"data.real.tuning.{bench}." + ("n" if "n" in spec else "fraction")
        n_t = tuning_size(spec, rows)
        if not 0 < n_t < rows:
            errs.append(f"{source}: {t_key}: a tuning part of {n_t} of benchmark {bench}'s {rows} prompts ({why}) "
                        "leaves nothing on one side")
        elif size is not None and bench in evaluated and n_t + size > rows:
            errs.append(f"{source}: {key} = {size} and {t_key} gives a tuning part of {n_t}, but benchmark {bench} "
                        f"holds {rows} prompts ({why}): {n_t + size - rows} would be both tuned on and evaluated; "
                        f"lower one, or evaluate every prompt the tuning part leaves ({rows - n_t}) with null")
    # A training split may hold an evaluated prompt when it draws from a benchmark's file: allowed (reported as
    # in-distribution, DCR's own design) until a preset declares tuning parts; from then on, a split draws from
    # an evaluated benchmark's tuning part or from no evaluated benchmark at all.
    if tuning:
        heldout = bool((real.get("xstest_heldout") or {}).get("enabled"))
        for split, spec in real["splits"].items():
            if split not in TRAIN_SPLITS:
                continue
            try:
                src = source_of(spec["source"])[0]
            except KeyError:
                continue  # an unknown source, reported elsewhere
            covered = [spec["source"]] if spec["source"] in BENCHMARK_SOURCES else \
                [b for b, (s, _) in BENCHMARK_SOURCES.items() if s == src]
            for bench in covered:
                if bench not in evaluated or (bench == spec["source"] and bench in tuning) or \
                        (heldout and bench == "xstest_safe"):
                    continue
                size, _ = eval_size(real, bench)
                rows, _ = benchmark_rows(bench, real)
                count = size if size is not None or rows is None else \
                    rows - (tuning_size(tuning[bench], rows) if bench in tuning else 0)
                held = f"{count} evaluated prompts" if count is not None else "the evaluated prompts"
                errs.append(f"{source}: data.real.splits.{split}.source: {spec['source']} holds {held} of benchmark "
                            f"{bench}, so the split would train on prompts it is judged on; give {bench} a tuning "
                            f"part (data.real.tuning.{bench}) and name {bench} as the source, or draw from a source "
                            "that is not evaluated")
        for split, spec in real["splits"].items():
            name = spec["source"]
            if name in tuning and not real.get("allow_smaller"):
                rows, _ = benchmark_rows(name, real)
                if rows is not None:
                    n_t = tuning_size(tuning[name], rows)
                    if spec["n"] > n_t:
                        errs.append(f"{source}: data.real.splits.{split}.n = {spec['n']} but it draws from the tuning "
                                    f"part of {name}, which holds {n_t} prompts")
    return errs
