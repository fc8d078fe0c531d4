"""Config checks for judges per suite and per benchmark (eval.judges, secondary_judges), LLM judges
(eval.llm_judge), the win rate (winrate), judge validation's labelled sets and data.raw_dir, before any job."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.benchmarks import BENCHMARKS, SUITES, get_benchmark
from overrefusal.config import (
    benchmark_judges,
    judge_validation_sets,
    llm_judges_used,
    merge_config,
    preset_files,
    validate_config,
)
from tests.unit.test_config import errors_of

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
REMOTE = "https://api.openai.com/v1"


@pytest.fixture
def cfg() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT)


def test_default_judges_outcomes_with_string_match_beside_it_and_local_judges(cfg):
    assert cfg["eval"]["judges"] == dict.fromkeys(("over_refusal", "control", "harmful"), "toy_outcome_v1")
    assert cfg["eval"]["secondary_judges"] == {"over_refusal": "xstest_strmatch_v1", "control": "xstest_strmatch_v1",
                                               "harmful": "jbb_substring_v1"}
    assert cfg["eval"]["llm_judge"]["base_url"] == "local" and cfg["winrate"]["judge"]["base_url"] == "local"
    assert cfg["data"]["raw_dir"] is None
    validate_config(cfg, env={})


@pytest.mark.parametrize("judge", ["xstest_llm_3class_v1", "orbench_llm_v1"])
def test_llm_judges_are_valid_judge_names(cfg, judge):
    cfg["eval"]["judges"]["over_refusal"] = judge
    validate_config(cfg, env={})  # local endpoint: no key needed


def test_unknown_judge_lists_llm_judges(cfg):
    cfg["eval"]["judges"]["control"] = "gpt4_judge"
    msg = errors_of(cfg)
    assert "eval.judges.control: 'gpt4_judge' is not allowed" in msg
    assert "xstest_llm_3class_v1" in msg and "orbench_llm_v1" in msg


def test_llm_judge_needs_an_endpoint_section(cfg):
    cfg["eval"]["judges"]["harmful"] = "orbench_llm_v1"
    del cfg["eval"]["llm_judge"]
    assert "eval.llm_judge: eval.judges names the LLM judge(s) orbench_llm_v1" in errors_of(cfg)


def test_remote_llm_judge_needs_its_key_before_any_job(cfg):
    cfg["eval"]["judges"]["over_refusal"] = "xstest_llm_3class_v1"
    cfg["eval"]["llm_judge"].update(base_url=REMOTE, model="gpt-4", api_key_env="JUDGE_KEY")
    assert "eval.llm_judge.api_key_env: the LLM judge(s) xstest_llm_3class_v1 needs an API key, but the " \
           "environment variable JUDGE_KEY is not set" in errors_of(cfg, env={"OPENAI_API_KEY": "sk-x"})
    assert "JUDGE_KEY is not set" in errors_of(cfg, env={"JUDGE_KEY": ""})
    validate_config(cfg, env={"JUDGE_KEY": "sk-x"})


def test_remote_endpoint_unused_needs_no_key(cfg):
    cfg["eval"]["llm_judge"]["base_url"] = REMOTE  # no LLM judge named: nothing is called
    validate_config(cfg, env={})


def test_bad_judge_url_and_unknown_endpoint_key(cfg):
    cfg["eval"]["judges"]["over_refusal"] = "orbench_llm_v1"
    cfg["eval"]["llm_judge"]["base_url"] = "ftp://judge"
    assert "eval.llm_judge.base_url: 'ftp://judge' must be 'local' or an http(s) URL" in errors_of(
        cfg, env={"OPENAI_API_KEY": "k"})
    cfg["eval"]["llm_judge"] = {**DEFAULT["eval"]["llm_judge"], "temperature": 0.7}
    assert "eval.llm_judge: unknown key(s) 'temperature'" in errors_of(cfg)
    cfg["eval"]["llm_judge"] = {**DEFAULT["eval"]["llm_judge"], "concurrency": 0}
    assert "eval.llm_judge.concurrency: 0 is out of range" in errors_of(cfg)


def test_winrate_reference_must_be_a_method(cfg):
    cfg["winrate"]["reference"] = "gpt4"
    assert "winrate.reference: 'gpt4' is not an enabled method; valid: base, no_safety, stl" in errors_of(cfg)
    cfg["winrate"]["reference"] = "stl"
    cfg["methods"]["stl"]["enabled"] = False  # a switched-off method cannot be the reference
    assert "winrate.reference: 'stl' is not an enabled method; valid: base, no_safety, stl_aug" in errors_of(cfg)


def test_winrate_remote_judge_needs_a_key_only_when_enabled(cfg):
    cfg["winrate"]["judge"].update(base_url=REMOTE, model="gpt-4o-mini-2024-07-18")
    assert "winrate.judge.api_key_env: the win-rate judge needs an API key" in errors_of(cfg)
    validate_config(cfg, env={"OPENAI_API_KEY": "sk-x"})
    cfg["winrate"]["enabled"] = False
    validate_config(cfg, env={})


def test_winrate_prompt_sets(cfg):
    cfg["winrate"]["prompts"] = ["capability/toy_facts_mc"]
    assert "winrate.prompts: 'capability/toy_facts_mc' is not a toy prompt set" in errors_of(cfg)
    cfg["winrate"]["prompts"] = []
    assert "winrate.prompts" in errors_of(cfg)


def test_raw_dir_must_hold_xstest_completions(cfg, tmp_path):
    cfg["data"]["raw_dir"] = str(tmp_path / "nope")
    assert "data.raw_dir: " in errors_of(cfg) and "is not a directory" in errors_of(cfg)
    cfg["data"]["raw_dir"] = str(tmp_path)
    assert "eval.judge_validation.sets.xstest: no file matches xstest/model_completions/xstest_v2_completions_*.csv " \
           f"under data.raw_dir {str(tmp_path)!r}" in errors_of(cfg)
    d = tmp_path / "xstest" / "model_completions"
    d.mkdir(parents=True)
    (d / "xstest_v2_completions_m.csv").write_text("id,type,prompt,completion,final_label\n")
    validate_config(cfg, env={})


def test_raw_dir_needs_only_the_files_of_the_sets_asked_for(cfg, tmp_path):
    cfg["data"]["raw_dir"] = str(tmp_path)  # no XSTest here: fine once XSTest's validation is off
    cfg["eval"]["judge_validation"]["sets"]["xstest"]["enabled"] = False
    validate_config(cfg, env={})
    assert judge_validation_sets(cfg) == {}
    cfg["eval"]["judge_validation"]["sets"]["mine"] = {
        "files": "mine/*.jsonl", "columns": {"prompt": "q", "response": "a", "label": "y"},
        "labels": {"ok": "compliance", "no": "refusal"}, "model_from": "filename"}
    assert "eval.judge_validation.sets.mine: no file matches mine/*.jsonl" in errors_of(cfg)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "a.jsonl").write_text("{}\n")
    validate_config(cfg, env={})
    assert list(judge_validation_sets(cfg)) == ["mine"] and "enabled" not in judge_validation_sets(cfg)["mine"]
    cfg["data"]["raw_dir"] = None  # no raw data: no validation, nothing to check on disk
    validate_config(cfg, env={})
    assert judge_validation_sets(cfg) == {}


def test_labelled_set_descriptions_are_checked(cfg):
    sets = cfg["eval"]["judge_validation"]["sets"]
    sets["x"] = {"files": "/abs/*.csv", "columns": {"prompt": "q", "response": "a", "label": "y"},
                 "labels": {"ok": "compliance"}, "model_from": "column", "unsafe": {"column": "kind"}}
    msg = errors_of(cfg)
    assert "eval.judge_validation.sets.x: files: '/abs/*.csv' must be a glob inside data.raw_dir" in msg
    assert "eval.judge_validation.sets.x: model_from: column needs columns.model" in msg
    assert "eval.judge_validation.sets.x: unsafe needs prefix or values" in msg
    sets["x"] = {**sets["xstest"], "labels": {"1_full_compliance": "complied"}}
    assert "eval.judge_validation.sets.x.labels.1_full_compliance: 'complied' is not allowed; valid values: " \
           "compliance, refusal, partial_refusal, invalid" in errors_of(cfg)
    sets["x"] = {**sets["xstest"], "columns": {"prompt": "prompt", "response": "completion", "verdict": "v"}}
    assert "eval.judge_validation.sets.x.columns: unknown key(s) 'verdict'" in errors_of(cfg)
    sets["x"] = {**sets["xstest"], "labels": {1: "compliance"}}  # YAML's `1: compliance`; a JSONL 1 reads as "1"
    assert "eval.judge_validation.sets.x.labels: key 1 must be text; quote it in YAML ('1': ...)" in errors_of(cfg)
    sets["x"] = {**sets["xstest"], "format": "parquet"}
    assert "eval.judge_validation.sets.x.format: 'parquet' is not allowed; valid values: csv, tsv, jsonl" \
        in errors_of(cfg)


@pytest.mark.parametrize(("judge", "needs"), [("orbench_llm_v1", "an endpoint"), ("toy_outcome_v1", "the toy world")])
def test_judge_validation_runs_string_match_judges(cfg, judge, needs):
    cfg["eval"]["judge_validation"]["judges"].append(judge)
    assert f"eval.judge_validation.judges: {judge} cannot be validated here (it needs {needs})" in errors_of(cfg)


@pytest.mark.parametrize("key", ["judges", "secondary_judges"])
def test_the_toy_outcome_judge_needs_the_toy_world(cfg, key):
    cfg["data"]["source"] = "real"
    cfg["eval"]["judges"] = dict.fromkeys(("over_refusal", "control", "harmful"), "xstest_strmatch_v1")
    cfg["eval"]["secondary_judges"] = {}
    cfg["eval"][key]["harmful"] = "toy_outcome_v1"
    assert f"eval.{key}.harmful: toy_outcome_v1 judges the toy world's own answers" in errors_of(cfg)


# --------------------------------------------------------------------------- a judge per benchmark


def test_a_benchmark_key_overrides_its_suite(cfg):
    cfg["eval"]["judges"].update(orbench_hard="orbench_llm_v1", advbench="xstest_strmatch_v1")
    judges = benchmark_judges(cfg)
    assert list(judges) == cfg["eval"]["benchmarks"]
    assert judges["orbench_hard"] == "orbench_llm_v1" and judges["advbench"] == "xstest_strmatch_v1"
    assert {b: j for b, j in judges.items() if b not in ("orbench_hard", "advbench")} == dict.fromkeys(
        set(cfg["eval"]["benchmarks"]) - {"orbench_hard", "advbench"}, "toy_outcome_v1")
    validate_config(cfg, env={})  # the local endpoint: no key
    assert llm_judges_used(cfg) == ["orbench_llm_v1"]


def test_secondary_judges_resolve_the_same_way_and_may_leave_a_benchmark_out(cfg):
    cfg["eval"]["secondary_judges"] = {"over_refusal": "xstest_strmatch_v1", "jailbreakbench": "jbb_substring_v1"}
    second = benchmark_judges(cfg, "secondary_judges")
    over = [b for b in cfg["eval"]["benchmarks"] if get_benchmark(b).suite == "over_refusal"]
    assert second == {**dict.fromkeys(over, "xstest_strmatch_v1"), "jailbreakbench": "jbb_substring_v1"}
    assert benchmark_judges(cfg, "secondary_judges", ["advbench", "phtest"]) == {"phtest": "xstest_strmatch_v1"}
    cfg["eval"]["secondary_judges"] = {}
    assert benchmark_judges(cfg, "secondary_judges") == {}
    del cfg["eval"]["secondary_judges"]
    assert benchmark_judges(cfg, "secondary_judges") == {}


@pytest.mark.parametrize("key", ["judges", "secondary_judges"])
def test_unknown_benchmark_key_is_refused_with_the_valid_keys(cfg, key):
    cfg["eval"][key]["orbench"] = "xstest_strmatch_v1"
    msg = errors_of(cfg)
    assert f"eval.{key}: unknown key 'orbench', neither a suite nor a benchmark; suites: " \
           f"{', '.join(SUITES)}; benchmarks: {', '.join(BENCHMARKS)}" in msg


def test_a_benchmark_key_needs_a_known_judge_and_suites_stay_required(cfg):
    cfg["eval"]["judges"]["orbench_hard"] = "orbench_gpt4"
    assert "eval.judges.orbench_hard: 'orbench_gpt4' is not allowed; valid values: " in errors_of(cfg)
    cfg["eval"]["judges"] = {"over_refusal": "xstest_strmatch_v1", "orbench_hard": "xstest_strmatch_v1"}
    assert "eval.judges: 'control' is a required property" in errors_of(cfg)


def test_only_llm_judges_of_evaluated_benchmarks_need_an_endpoint(cfg):
    cfg["eval"]["judges"]["orbench_toxic"] = "orbench_llm_v1"
    cfg["eval"]["llm_judge"].update(base_url=REMOTE, api_key_env="JUDGE_KEY")
    assert "the LLM judge(s) orbench_llm_v1 needs an API key" in errors_of(cfg)
    cfg["eval"]["benchmarks"].remove("orbench_toxic")  # named, but not evaluated: nothing is called
    validate_config(cfg, env={})
    assert llm_judges_used(cfg) == []


def test_a_secondary_llm_judge_needs_the_endpoint_too(cfg):
    cfg["eval"]["secondary_judges"]["orbench_hard"] = "orbench_llm_v1"
    del cfg["eval"]["llm_judge"]
    assert "eval.llm_judge: eval.judges names the LLM judge(s) orbench_llm_v1" in errors_of(cfg)


def test_the_toy_outcome_judge_is_refused_on_real_data_under_a_benchmark_key_too(cfg):
    cfg["data"]["source"] = "real"
    cfg["eval"]["judges"] = dict.fromkeys(("over_refusal", "control", "harmful"), "xstest_strmatch_v1")
    cfg["eval"]["secondary_judges"] = {"oktest": "toy_outcome_v1"}
    assert "eval.secondary_judges.oktest: toy_outcome_v1 judges the toy world's own answers" in errors_of(cfg)


def _preset(*names: str) -> dict:
    out = copy.deepcopy(DEFAULT)
    for name in names:
        merge_config(out, yaml.safe_load((REPO / name).read_text()))
    return out


def test_dcr_preset_judges_each_benchmark_as_its_own_paper_does():
    cfg = _preset(*preset_files("dcr_qwen2.5-7b"))
    judges = benchmark_judges(cfg)
    assert judges["xstest_safe"] == judges["xstest_unsafe"] == "xstest_strmatch_v1"  # XSTest's string match
    assert judges["orbench_hard"] == judges["orbench_toxic"] == "orbench_llm_v1"  # OR-Bench's checker
    assert {judges[b] for b in cfg["eval"]["benchmarks"] if get_benchmark(b).suite == "harmful"} == {"jbb_substring_v1"}
    second = benchmark_judges(cfg, "secondary_judges")
    assert second["orbench_hard"] == "xstest_strmatch_v1" and second["xstest_safe"] == "xstest_strmatch_curly_v1"
    # ... with OR-Bench's own checker model, a real endpoint whose key is checked up front
    assert cfg["eval"]["llm_judge"]["model"] == "gpt-4-turbo-2024-04-09" and llm_judges_used(cfg) == ["orbench_llm_v1"]
    # the toy-model overlay swaps in the local scripted judge: no key
    toy = _preset(*preset_files("dcr_qwen2.5-7b"), "config/presets/toy_model.yaml")
    assert toy["eval"]["llm_judge"]["base_url"] == "local"


def test_tbr_preset_names_xstest_judges_per_benchmark_and_calls_no_llm_judge():
    cfg = _preset(*preset_files("tbr"))
    assert {"xstest_safe", "xstest_unsafe"} <= set(cfg["eval"]["judges"])
    judges = benchmark_judges(cfg)
    assert judges["xstest_safe"] == judges["xstest_unsafe"] == "xstest_strmatch_v1"
    assert llm_judges_used(cfg) == []


def test_the_schema_knows_benchmarks_py_s_benchmarks_and_suites():
    from overrefusal.config import load_schema

    defs = load_schema()["$defs"]
    assert defs["benchmark_name"]["enum"] == list(BENCHMARKS)
    assert defs["judge_key"]["enum"] == [*SUITES, *BENCHMARKS]


# --------------------------------------------------------------------------- learned judges (eval.learned_judges)

FIXTURES = REPO / "tests/fixtures"
VOTES = {"files": "labelled/*.jsonl", "columns": {"prompt": "query", "response": "reply", "label": "verdict",
                                                   "model": "system"},
         "labels": {"answered": "compliance", "refused": "refusal", "mixed": "partial_refusal"},
         "model_from": "column", "enabled": False}


def _learned(cfg: dict[str, Any], entry: dict[str, Any] | None, raw_dir: str | None = str(FIXTURES)) -> dict:
    cfg["data"]["raw_dir"] = raw_dir
    cfg["eval"]["secondary_judges"]["over_refusal"] = "refusal_clf_v1"
    cfg["eval"]["judge_validation"]["sets"] = {"votes": VOTES}
    if entry is not None:
        cfg["eval"]["learned_judges"] = {"refusal_clf_v1": entry}
    return cfg


def test_learned_judge_trained_on_a_labelled_set(cfg):
    from overrefusal.config import learned_judge_training_sets, learned_judges_used

    cfg = _learned(cfg, {"train_sets": ["votes"]})
    validate_config(cfg, env={})
    assert learned_judges_used(cfg) == ["refusal_clf_v1"]
    # validation's `enabled: false` does not keep a set out of training
    assert learned_judge_training_sets(cfg, "refusal_clf_v1") == {"votes": {k: v for k, v in VOTES.items()
                                                                            if k != "enabled"}}


def test_learned_judge_needs_its_entry(cfg):
    assert "eval.learned_judges.refusal_clf_v1: eval.judges names the learned judge" in errors_of(_learned(cfg, None))


def test_learned_judge_unknown_set_and_missing_raw_dir(cfg):
    msg = errors_of(_learned(cfg, {"train_sets": ["votes", "mine"]}))
    assert "eval.learned_judges.refusal_clf_v1.train_sets: 'mine' is not a labelled set" in msg
    cfg = _learned(copy.deepcopy(DEFAULT), {"train_sets": ["votes"]}, raw_dir=None)
    cfg["eval"]["judge_validation"]["sets"] = {"votes": VOTES}
    assert "training reads the labelled sets under data.raw_dir, which is not set" in errors_of(cfg)


def test_learned_judge_set_without_files(cfg, tmp_path):
    msg = errors_of(_learned(cfg, {"train_sets": ["votes"]}, raw_dir=str(tmp_path)))
    assert "eval.learned_judges.refusal_clf_v1.train_sets: no file matches labelled/*.jsonl (set votes)" in msg


def test_learned_judge_from_an_artefact(cfg, tmp_path):
    assert "holds no manifest.json" in errors_of(_learned(cfg, {"artefact": str(tmp_path)}))
    validate_config(_learned(copy.deepcopy(DEFAULT), {"artefact": str(REPO / "results/judges/refusal_clf_v1")}),
                    env={})
    # either an artefact or training sets, not both
    msg = errors_of(_learned(copy.deepcopy(DEFAULT), {"artefact": str(tmp_path), "train_sets": ["votes"]}))
    assert "eval.learned_judges.refusal_clf_v1: give exactly one of train_sets" in msg
    assert "give exactly one of" in errors_of(_learned(copy.deepcopy(DEFAULT), {}))


def test_learned_judge_is_never_validated_on_its_training_labels(cfg):
    cfg["eval"]["judge_validation"]["judges"] = ["xstest_strmatch_v1", "refusal_clf_v1"]
    assert "refusal_clf_v1 is trained on human labels" in errors_of(cfg)
