"""Config checks for LLM judges (eval.llm_judge), the win rate (winrate) and data.raw_dir, before any job."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
REMOTE = "https://api.openai.com/v1"


from tests.unit.test_config import cfg, errors_of  # noqa: E402,F401 - shared fixture and helper


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
    assert "no xstest/model_completions/xstest_v2_completions_*.csv under" in errors_of(cfg)
    d = tmp_path / "xstest" / "model_completions"
    d.mkdir(parents=True)
    (d / "xstest_v2_completions_m.csv").write_text("id,type,prompt,completion,final_label\n")
    validate_config(cfg, env={})


@pytest.mark.parametrize("key", ["judges", "secondary_judges"])
def test_the_toy_outcome_judge_needs_the_toy_world(cfg, key):
    cfg["data"]["source"] = "real"
    cfg["eval"]["judges"] = dict.fromkeys(("over_refusal", "control", "harmful"), "xstest_strmatch_v1")
    cfg["eval"]["secondary_judges"] = {}
    cfg["eval"][key]["harmful"] = "toy_outcome_v1"
    assert f"eval.{key}.harmful: toy_outcome_v1 judges the toy world's own answers" in errors_of(cfg)
