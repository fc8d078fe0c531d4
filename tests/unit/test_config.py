"""Config validation: the default config passes; every mistake is refused with its key path and the fix."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import KIND_OPTIONS, ConfigError, validate_config

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
ALL_KINDS = ["base", "no_safety", "stl", "stl_aug", "tbr", "dcr", "scans", "surgical"]


@pytest.fixture
def cfg() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT)


def errors_of(config: dict[str, Any], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(config, "cfg", env={} if env is None else env)
    return str(info.value)


def error_lines(config: dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    msg = errors_of(config, env)
    return [ln.strip() for ln in msg.splitlines()[1:] if ln.strip()]


# --------------------------------------------------------------------------- the default


def test_default_config_validates(cfg):
    validate_config(cfg, env={})  # base_url is local: no API key needed
    assert cfg == DEFAULT  # validation does not mutate


def test_kind_options_cover_every_schema_kind():
    from overrefusal.methods import KINDS

    # the schema's kinds are methods.py's, and each kind's options are its config section's keys
    assert sorted(KIND_OPTIONS) == sorted(ALL_KINDS) == sorted(KINDS)
    for name, kind in KINDS.items():
        if kind.section:
            section = DEFAULT[kind.section]
            own = set(section) & KIND_OPTIONS[name]
            assert own == (set(section) if kind.section != "tbr" else {"reflection", "gamma"}), name


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key_names_allowed_keys(cfg):
    cfg["learning_rate"] = 1e-4
    (line,) = error_lines(cfg)
    assert "<top level>" in line and "'learning_rate'" in line
    for key in ("capability", "data", "dcr", "eval", "methods", "models", "name", "sft", "tbr", "teacher"):
        assert key in line


def test_unknown_nested_key_names_path_and_allowed_keys(cfg):
    cfg["sft"]["learning_rate"] = 1e-4
    (line,) = error_lines(cfg)
    assert line.startswith("cfg: sft:")
    assert "'learning_rate'" in line
    allowed = line.split("allowed keys:", 1)[1]
    assert "lr" in [k.strip() for k in allowed.split(",")]
    assert "warmup_steps" in allowed


def test_unknown_key_in_method_sft_override(cfg):
    cfg["methods"]["stl_fast"] = {"kind": "stl", "sft": {"learning_rate": 1.0}}
    (line,) = error_lines(cfg)
    assert "methods.stl_fast.sft" in line and "'learning_rate'" in line and "lr" in line


def test_unknown_key_in_method_lists_method_keys(cfg):
    cfg["methods"]["stl"]["momentum"] = 1.0
    (line,) = error_lines(cfg)
    assert "methods.stl" in line and "'momentum'" in line
    assert "kind 'stl' (its options: sft, sft_n)" in line


def test_unknown_key_deep_in_model_arch(cfg):
    cfg["models"]["toy-llama"]["arch"]["layers"] = 4
    (line,) = error_lines(cfg)
    assert "models.toy-llama.arch" in line and "'layers'" in line and "num_layers" in line


def test_all_errors_reported_at_once(cfg):
    cfg["sft"]["learning_rate"] = 1e-4
    cfg["tbr"]["gamma"] = 2
    cfg["dcr"]["pooling"] = "max"
    msg = errors_of(cfg)
    assert "sft" in msg and "tbr.gamma" in msg and "dcr.pooling" in msg


# --------------------------------------------------------------------------- types, enums, ranges


def test_wrong_type_names_key_and_type(cfg):
    cfg["sft"]["lr"] = "fast"
    (line,) = error_lines(cfg)
    assert "sft.lr" in line and "number" in line


def test_float_for_integer(cfg):
    cfg["sft"]["batch_size"] = 1.5
    (line,) = error_lines(cfg)
    assert "sft.batch_size" in line and "integer" in line


def test_missing_required_section(cfg):
    del cfg["dcr"]
    (line,) = error_lines(cfg)
    assert "'dcr'" in line and "required" in line


def test_gamma_out_of_range_names_key_and_range(cfg):
    cfg["tbr"]["gamma"] = 1.5
    (line,) = error_lines(cfg)
    assert "tbr.gamma" in line and "1.5" in line and "0..1" in line


def test_method_gamma_out_of_range(cfg):
    cfg["methods"]["tbr_g"] = {"kind": "tbr", "gamma": -0.1}
    (line,) = error_lines(cfg)
    assert "methods.tbr_g.gamma" in line and "0..1" in line


def test_enum_lists_valid_values(cfg):
    cfg["dcr"]["pooling"] = "max"
    (line,) = error_lines(cfg)
    assert "dcr.pooling" in line and "'max'" in line and "last" in line and "mean" in line


@pytest.mark.parametrize(("key", "value", "allowed"), [
    ("device", "gpu", "auto"), ("dtype", "bf16", "bfloat16")])
def test_compute_device_and_dtype_list_their_values(cfg, key, value, allowed):
    cfg["compute"][key] = value
    (line,) = error_lines(cfg)
    assert f"compute.{key}" in line and repr(value) in line and allowed in line


def test_dcr_optimiser_is_adamw_or_adafactor(cfg):
    cfg["dcr"]["optim"] = "sgd"
    (line,) = error_lines(cfg)
    assert "dcr.optim" in line and "adafactor" in line


def test_unknown_benchmark_lists_valid(cfg):
    cfg["eval"]["benchmarks"] = ["xstest_safe", "nobench"]
    (line,) = error_lines(cfg)
    assert "eval.benchmarks.1" in line and "'nobench'" in line and "advbench" in line


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("sft", "lr", 0), ("eval.bootstrap", "alpha", 1), ("eval.bootstrap", "alpha", 0), ("dcr", "scale", 0)],
)
def test_exclusive_bound_is_not_reported_as_allowed(cfg, section, key, value):
    """An exclusive bound must not be rendered as an inclusive range that contains the bad value.

    (e.g. ``eval.bootstrap.alpha: 1 is out of range (allowed 0..1)`` contradicts itself.)
    """
    node = cfg
    for part in section.split("."):
        node = node[part]
    node[key] = value
    (line,) = error_lines(cfg)
    assert f"{section}.{key}" in line and str(value) in line
    num = r"-?(?:inf|\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
    m = re.search(rf"allowed ({num})\.\.({num})\)", line)  # a plain (inclusive-looking) lo..hi range
    if m:
        lo, hi = (float(x) for x in m.groups())
        assert not lo <= value <= hi, f"message claims {value} is allowed: {line}"


def test_oneof_error_names_the_alternatives(cfg):
    cfg["sft"]["lora"]["target_modules"] = "all"
    (line,) = error_lines(cfg)
    assert "sft.lora.target_modules" in line
    assert "all-linear" in line, f"error does not say what is allowed: {line}"


# --------------------------------------------------------------------------- DCR layer vs depth


def test_dcr_layer_beyond_depth(cfg):
    cfg["dcr"]["layer"] = 9
    (line,) = error_lines(cfg)
    assert "dcr.layer" in line and "9" in line
    assert "toy-llama" in line and re.search(r"\b4\b", line) and "0..3" in line


@pytest.mark.parametrize("layer", [0, 3])
def test_dcr_layer_edges_ok(cfg, layer):
    cfg["dcr"]["layer"] = layer
    validate_config(cfg, env={})


def test_dcr_layer_equal_to_depth_refused(cfg):
    cfg["dcr"]["layer"] = 4
    assert "0..3" in errors_of(cfg)


def test_per_method_layer_override_checked(cfg):
    cfg["methods"]["dcr_l7"] = {"kind": "dcr", "layer": 7}
    (line,) = error_lines(cfg)
    assert "methods.dcr_l7.layer" in line and "7" in line and "0..3" in line
    assert "dcr.layer:" not in line  # the default layer (1) is fine


def test_per_method_layer_override_ok(cfg):
    cfg["methods"]["dcr_l3"] = {"kind": "dcr", "layer": 3}
    validate_config(cfg, env={})


def test_depth_checked_against_every_model(cfg):
    deep = copy.deepcopy(cfg["models"]["toy-llama"])
    deep["arch"]["num_layers"] = 8
    cfg["models"]["deep-llama"] = deep
    cfg["dcr"]["layer"] = 6  # fine for deep-llama, not for the 4-layer toy-llama
    (line,) = error_lines(cfg)
    assert "toy-llama" in line and "deep-llama" not in line


# --------------------------------------------------------------------------- method kinds


def test_unknown_method_kind_lists_valid_kinds(cfg):
    cfg["methods"]["x"] = {"kind": "rlhf"}
    (line,) = error_lines(cfg)
    assert "methods.x.kind" in line and "'rlhf'" in line
    for kind in ALL_KINDS:
        assert kind in line


@pytest.mark.parametrize(
    ("kind", "option", "value"),
    [("stl", "gamma", 0.5), ("tbr", "layer", 1), ("dcr", "reflection", "internal"), ("base", "sft", {"lr": 1e-3}),
     ("stl_aug", "pooling", "mean"), ("scans", "sft", {"lr": 1e-3}), ("surgical", "alpha", 2.0),
     ("scans", "n_train", 8)],
)
def test_option_not_applying_to_kind(cfg, kind, option, value):
    cfg["methods"]["x"] = {"kind": kind, option: value}
    (line,) = error_lines(cfg)
    assert "methods.x" in line and option in line and f"'{kind}'" in line
    allowed = sorted(KIND_OPTIONS[kind]) or ["none"]
    for opt in allowed:
        assert opt in line.split("its options:", 1)[1]


def test_options_that_apply_are_accepted(cfg):
    cfg["methods"]["tbr_g05"] = {"kind": "tbr", "reflection": "internal", "gamma": 0.5, "sft": {"lr": 1e-3}}
    cfg["methods"]["dcr_x"] = {"kind": "dcr", "layer": 2, "steps": 3, "margin": 0.5, "scale": 8, "pooling": "mean"}
    validate_config(cfg, env={})


@pytest.mark.parametrize(
    ("spec", "key", "message"),
    [({"kind": "scans", "apply_to": "nope"}, "methods.x.apply_to", "'nope' is not an enabled method"),
     ({"kind": "surgical", "apply_to": "scans"}, "methods.x.apply_to", "'scans' is not an enabled method"),
     ({"kind": "scans", "steer_layers": [2, 9]}, "methods.x.steer_layers", "[2, 9) is outside model 'toy-llama'")],
)
def test_intervention_needs_a_method_and_layers_it_can_run_on(cfg, spec, key, message):
    cfg["methods"]["x"] = spec
    (line,) = error_lines(cfg)
    assert key in line and message in line


def test_intervention_options_are_typed_by_their_section(cfg):
    cfg["methods"]["x"] = {"kind": "surgical", "kl_threshold": -1}
    (line,) = error_lines(cfg)
    assert "methods.x.kl_threshold" in line and "out of range" in line
    cfg["methods"]["x"] = {"kind": "scans", "alpha": 2.0, "steer_layers": [1, 3], "apply_to": "stl_aug"}
    validate_config(cfg, env={})


def test_teacher_from_unknown_model(cfg):
    cfg["teacher"]["from_model"] = "gpt-4"
    (line,) = error_lines(cfg)
    assert "teacher.from_model" in line and "'gpt-4'" in line and "toy-llama" in line


# --------------------------------------------------------------------------- external reflections


def test_external_remote_without_key_fails_early(cfg):
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    (line,) = error_lines(cfg, env={"OTHER": "x"})
    assert "tbr.external.api_key_env" in line and "OPENAI_API_KEY" in line


def test_external_remote_empty_key_counts_as_unset(cfg):
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    assert "OPENAI_API_KEY" in errors_of(cfg, env={"OPENAI_API_KEY": ""})


def test_external_remote_with_key_ok(cfg):
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    validate_config(cfg, env={"OPENAI_API_KEY": "sk-test"})


def test_external_key_env_name_is_configurable(cfg):
    cfg["tbr"]["external"]["base_url"] = "https://example.org/v1"
    cfg["tbr"]["external"]["api_key_env"] = "MY_KEY"
    assert "MY_KEY" in errors_of(cfg, env={"OPENAI_API_KEY": "sk-test"})
    validate_config(cfg, env={"MY_KEY": "k"})


def test_remote_url_without_external_method_needs_no_key(cfg):
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    del cfg["methods"]["tbr_external"]
    validate_config(cfg, env={})


def test_external_via_tbr_default_reflection(cfg):
    """A tbr method without its own ``reflection`` inherits tbr.reflection."""
    cfg["tbr"]["external"]["base_url"] = "https://api.openai.com/v1"
    del cfg["methods"]["tbr_external"]
    cfg["methods"]["tbr_plain"] = {"kind": "tbr"}
    validate_config(cfg, env={})  # tbr.reflection is internal
    cfg["tbr"]["reflection"] = "external"
    assert "OPENAI_API_KEY" in errors_of(cfg, env={})


def test_external_bad_url_scheme(cfg):
    cfg["tbr"]["external"]["base_url"] = "ftp://example.org"
    msg = errors_of(cfg, env={"OPENAI_API_KEY": "k"})
    assert "tbr.external.base_url" in msg and "http" in msg


# --------------------------------------------------------------------------- capability


def test_unknown_capability_task(cfg):
    cfg["capability"]["tasks"]["toy_poetry"] = {"kind": "gen", "num_fewshot": 0}
    (line,) = error_lines(cfg)
    assert "capability.tasks.toy_poetry" in line and "toy_facts_mc" in line and "toy_arith" in line


def test_capability_task_kind_enum(cfg):
    cfg["capability"]["tasks"]["toy_arith"]["kind"] = "loglik"
    (line,) = error_lines(cfg)
    assert "capability.tasks.toy_arith.kind" in line and "mc" in line and "gen" in line


def test_registry_capability_task_needs_no_data_file(cfg):
    cfg["capability"]["tasks"]["mmlu_lm_eval"] = {"kind": "lm_eval", "lm_eval_task": "mmlu", "num_fewshot": 5,
                                                  "metric": "acc"}
    validate_config(cfg, env={})  # toy world too: staged from the hub, not written by the toy world


def test_capability_task_keys_of_another_kind_are_refused(cfg):
    cfg["capability"]["tasks"]["toy_arith"]["metric"] = "acc"
    cfg["capability"]["tasks"]["arc_easy"] = {"kind": "lm_eval", "num_fewshot": 0, "doc_to_text": "{{q}}"}
    lines = error_lines(cfg)
    assert any("capability.tasks.toy_arith.metric" in ln and "lm_eval only" in ln for ln in lines), lines
    assert any("capability.tasks.arc_easy.doc_to_text" in ln and "mc or gen only" in ln for ln in lines), lines


def test_switched_off_capability_task_needs_nothing_and_is_left_out(cfg):
    from overrefusal.config import enabled_capability_tasks

    cfg["capability"]["tasks"]["gsm8k"] = {"enabled": False}  # unknown elsewhere, e.g. from an overlay
    cfg["capability"]["tasks"]["toy_arith"]["enabled"] = False
    cfg["capability"]["tasks"]["toy_words"]["enabled"] = True
    validate_config(cfg, env={})
    tasks = enabled_capability_tasks(cfg)
    assert list(tasks) == ["toy_facts_mc", "toy_words"] and "enabled" not in tasks["toy_words"]
    cfg["capability"]["tasks"]["piqa"] = {"num_fewshot": 0}  # not switched off: kind is required
    assert any("capability.tasks.piqa" in ln and "'kind'" in ln for ln in error_lines(cfg))


def test_error_names_the_source(cfg):
    cfg["tbr"]["gamma"] = 3
    with pytest.raises(ConfigError, match=r"my.yaml: tbr\.gamma"):
        validate_config(cfg, "my.yaml", env={})


def test_min_kept_is_a_probability(cfg):
    cfg["tbr"]["min_kept"] = 1.2
    (line,) = error_lines(cfg)
    assert "tbr.min_kept" in line and "0..1" in line


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seeds", [[0, 0, 1], [-1, 2], [0, 1.5], ["1"], []])
def test_bad_seeds_are_refused_naming_the_key(cfg, seeds):
    cfg["seeds"] = seeds
    assert re.search(r"\bseeds\b", errors_of(cfg))


def test_seeds_are_required(cfg):
    del cfg["seeds"]
    assert "seeds" in errors_of(cfg)


def test_a_missing_raw_dir_is_reported_once_for_real_data(tmp_path):
    from tests.pipeline import preset_config

    cfg = preset_config("smol")
    cfg["data"]["raw_dir"] = str(tmp_path / "nowhere")
    lines = [line for line in error_lines(cfg) if "data.raw_dir" in line]
    assert len(lines) == 1 and "is not a directory" in lines[0]


def test_the_config_modules_import_no_cycle():
    """overrefusal.config holds every cross-field check; the data package never imports it back."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "src" / "overrefusal" / "data"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.level == 2 and node.module == "config"), f"{path.name} imports overrefusal.config"
