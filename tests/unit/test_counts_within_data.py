"""A count the config asks for beyond the data it draws from is refused, never clipped to what there is.

Where the config fixes the size of the data (the few-shot split, a registry source's rows, the toy world's
sizes, an evaluation subset), config validation refuses it before any job; where only staged data knows the
count, the function that would have clipped raises. Every message names the key and both numbers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from overrefusal.config import ConfigError, semantic_errors, validate_config
from overrefusal.data.registry import SOURCES
from overrefusal.data.splits import FEWSHOT, InsufficientDataError, eval_subset
from overrefusal.io import write_jsonl
from overrefusal.reflect import external_reflections, internal_reflections
from overrefusal.report.samples import sample_rows
from overrefusal.toyworld import build_world
from overrefusal.toyworld.world import REFLECTION_SHOTS
from overrefusal.tracking import load_probe_set
from tests.pipeline import preset_config

REPO = Path(__file__).resolve().parents[2]
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
API_ENV = {"OPENAI_API_KEY": "sk-test"}


@pytest.fixture
def toy() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT)


def real(tmp_path: Path, preset: str = "smol") -> dict[str, Any]:
    """A real-data preset over an empty mirror: every source missing, so each split reads its own source."""
    cfg = preset_config(preset)
    cfg["data"]["raw_dir"] = str(tmp_path)
    return cfg


def lines(cfg: dict[str, Any], key: str) -> list[str]:
    return [e for e in semantic_errors(cfg, "cfg", env=API_ENV) if key in e]


def record(i: int, label: str = "toxic") -> dict[str, Any]:
    return {"id": f"r-{i:03d}", "prompt": f"prompt {i}", "label": label, "category": "c", "source": "t",
            "licence": "x"}


# ------------------------------------------------------------------------------ tbr.*.num_shots


def test_both_worlds_hold_the_same_few_shot_examples():
    assert len(FEWSHOT) == REFLECTION_SHOTS == 4
    assert len(build_world({**DEFAULT["data"]["toy"], "pretrain_dialogues": 10,
                            "pretrain_careful_dialogues": 10})["reflection_fewshot"]) == REFLECTION_SHOTS


def test_tbr_preset_asks_for_no_more_shots_than_there_are():
    cfg = preset_config("tbr")
    assert cfg["tbr"]["internal"]["num_shots"] <= len(FEWSHOT) and cfg["tbr"]["external"]["num_shots"] <= len(FEWSHOT)
    validate_config(cfg, "tbr", env=API_ENV)


def test_six_shots_from_four_examples_fail_before_any_job():
    cfg = preset_config("tbr")
    cfg["tbr"]["internal"]["num_shots"] = 6
    cfg["tbr"]["external"]["num_shots"] = 6
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, "tbr", env=API_ENV)
    assert "tbr: tbr.internal.num_shots = 6 but split reflection_fewshot holds 4 examples" in str(info.value)
    assert "tbr: tbr.external.num_shots = 6 but split reflection_fewshot holds 4 examples" in str(info.value)


def test_toy_num_shots_bounded_only_where_a_method_reflects_that_way(toy):
    toy["tbr"]["internal"]["num_shots"] = 5
    assert lines(toy, "num_shots") == ["cfg: tbr.internal.num_shots = 5 but split reflection_fewshot holds 4 examples"]
    for name, spec in toy["methods"].items():
        if spec["kind"] == "tbr":
            spec["enabled"] = False
    assert lines(toy, "num_shots") == []  # no method makes internal reflections: the value is never read


def test_the_reflection_jobs_refuse_more_shots_than_the_split_holds():
    shots = [record(i) for i in range(4)]
    with pytest.raises(ValueError, match=r"^tbr\.external\.num_shots = 5 but split reflection_fewshot holds 4 "):
        external_reflections(None, [record(9)], shots, num_shots=5, system_prompt="", params={})
    tbr = {"internal": {"num_shots": 5, "system_prompt": "", "max_new_tokens": 4, "batch_size": 1}, "open_tag": "<t>"}
    # refused before the model is loaded: the directory does not exist
    with pytest.raises(ValueError, match=r"^tbr\.internal\.num_shots = 5 but split reflection_fewshot holds 4 "):
        internal_reflections("/nonexistent/model", [record(9)], shots, tbr, "chat", "/nonexistent/out.jsonl")


# ------------------------------------------------------------------------------ data.real.splits.*.n


def test_a_split_larger_than_its_source_is_refused(tmp_path):
    cfg = real(tmp_path)
    rows = SOURCES["coconot_pref"].rows
    cfg["data"]["real"]["splits"]["sft_aug"]["n"] = rows + 1
    assert lines(cfg, "splits.sft_aug") == [
        f"cfg: data.real.splits.sft_aug.n = {rows + 1} but source coconot_pref holds {rows} rows (lower n, or set "
        "data.real.allow_smaller: true to build the split smaller)"]
    cfg["data"]["real"]["splits"]["sft_aug"]["n"] = rows
    assert lines(cfg, "splits.sft_aug") == []


def test_a_benchmark_split_is_bounded_by_its_file_and_a_pin_restates_the_rows(tmp_path):
    cfg = real(tmp_path)
    cfg["data"]["real"]["splits"]["contrastive_seemingly"]["n"] = 451
    assert lines(cfg, "splits.contrastive_seemingly") == [
        "cfg: data.real.splits.contrastive_seemingly.n = 451 but source xstest_safe (file xstest) holds 450 rows "
        "(lower n, or set data.real.allow_smaller: true to build the split smaller)"]
    cfg["data"]["real"]["pins"] = {"xstest": {"rows": 500}}
    assert lines(cfg, "splits.contrastive_seemingly") == []


def test_allow_smaller_is_the_explicit_way_to_ask_for_less(tmp_path):
    cfg = real(tmp_path)
    cfg["data"]["real"]["splits"]["sft_aug"]["n"] = SOURCES["coconot_pref"].rows + 1
    cfg["data"]["real"]["allow_smaller"] = True
    assert lines(cfg, "splits.sft_aug") == []


def test_a_substitute_is_checked_where_it_stands_in(tmp_path):
    cfg = real(tmp_path)  # smol: stl_alpaca_small (20,000 rows, not in this mirror) -> alpaca_5k
    (tmp_path / SOURCES["alpaca_5k"].files[0].path).parent.mkdir(parents=True)
    (tmp_path / SOURCES["alpaca_5k"].files[0].path).write_text("[]")
    cfg["data"]["real"]["splits"]["sft_general"]["n"] = 6000
    assert lines(cfg, "splits.sft_general") == [
        "cfg: data.real.splits.sft_general.n = 6000 but source alpaca_5k, standing in for the missing "
        "stl_alpaca_small, holds 5000 rows (lower n, or set data.real.allow_smaller: true to build the split smaller)"]
    (tmp_path / SOURCES["alpaca_5k"].files[0].path).unlink()  # no stand-in: the split keeps its own source
    assert lines(cfg, "splits.sft_general") == []


# ------------------------------------------------------------------------------ data.real.eval_subset.n


def test_an_eval_subset_larger_than_a_benchmark_file_is_refused(tmp_path):
    cfg = real(tmp_path)
    cfg["data"]["real"]["eval_subset"]["n"] = 101
    assert sorted(lines(cfg, "eval_subset.n = ")) == [
        "cfg: data.real.eval_subset.n = 101 but benchmark jailbreakbench holds at most 100 prompts (the rows of "
        "jailbreakbench)",
        "cfg: data.real.eval_subset.n = 101 but benchmark maliciousinstruct holds at most 100 prompts (the rows of "
        "maliciousinstruct)"]
    cfg["data"]["real"]["eval_subset"]["n"] = 100
    assert lines(cfg, "eval_subset.n = ") == []


def test_the_eval_set_job_refuses_a_subset_its_benchmark_cannot_fill():
    recs = [record(i) for i in range(5)]
    with pytest.raises(InsufficientDataError, match=r"^data\.real\.eval_subset\.n = 6 but benchmark xstest_unsafe "
                                                    r"holds 5 prompts$"):
        eval_subset(recs, {"n": 6, "seed": 0}, "xstest_unsafe")
    assert eval_subset(recs, {"n": 5, "seed": 0}, "xstest_unsafe") == recs
    some = eval_subset(recs, {"n": 3, "seed": 0}, "xstest_unsafe")
    assert len(some) == 3 and some == [r for r in recs if r in some]  # the benchmark's own order
    assert eval_subset(recs, None, "xstest_unsafe") == recs


# ------------------------------------------------------------------------------ data.real.capability.*.n_per_subject


def test_more_questions_per_subject_than_a_subject_holds_is_refused(tmp_path):
    from tests.unit.test_real_data import FIXTURES, _build, _real_cfg

    # the fixture mirror's two subjects hold 6 questions each
    _build(tmp_path, FIXTURES, _real_cfg(capability={"mmlu": {"n_per_subject": 6}}), "a")
    with pytest.raises(InsufficientDataError, match=r"data\.real\.capability\.mmlu\.n_per_subject = 7 but subject "
                                                    r"other_subject holds 6 questions, subject toy_subject holds 6 "
                                                    r"questions"):
        _build(tmp_path, FIXTURES, _real_cfg(capability={"mmlu": {"n_per_subject": 7}}), "b")


# ------------------------------------------------------------------------------ probe sets: tracking and analyses


def test_tracking_probes_beyond_the_toy_files_are_refused(toy):
    toy["tracking"]["n_probe"] = 61
    assert lines(toy, "tracking.n_probe = ") == [
        "cfg: tracking.n_probe = 61 but probe set general (toy_words) holds 60 prompts (data.toy.capability_per_task)"]
    toy["tracking"]["n_probe"] = 81
    assert len(lines(toy, "tracking.n_probe = ")) == 3  # and the two benchmarks' 80 (data.toy.eval_per_benchmark)
    toy["tracking"]["enabled"] = False
    assert lines(toy, "tracking.n_probe = ") == []


def test_analysis_prompts_beyond_the_probe_files_are_refused(toy):
    toy["analysis"]["n_per_class"] = 61
    toy["analysis"]["entk"]["n_per_class"] = 81
    got = lines(toy, "n_per_class = ")
    assert "cfg: analysis.n_per_class = 61 but probe set general (toy_words) holds 60 prompts " \
           "(data.toy.capability_per_task)" in got
    assert "cfg: analysis.entk.n_per_class = 81 but probe set toxic (xstest_unsafe) holds 80 prompts " \
           "(data.toy.eval_per_benchmark)" in got
    assert len(got) == 4
    for kind in ("entk", "separability", "attribution"):
        toy["analysis"][kind]["enabled"] = False
    assert lines(toy, "n_per_class = ") == []


def test_real_probe_files_are_bounded_by_the_subset_and_the_held_out_split(tmp_path):
    cfg = real(tmp_path)
    cfg["tracking"]["n_probe"] = 33
    got = lines(cfg, "tracking.n_probe = ")
    assert "cfg: tracking.n_probe = 33 but probe set toxic (xstest_unsafe) holds 32 prompts (data.real.eval_subset.n)" \
           in got and len(got) == 2
    cfg["data"]["real"]["splits"]["general_heldout"]["n"] = 20
    cfg["tracking"]["n_probe"] = 21
    cfg["tracking"]["kernel"]["n_per_class"] = 4
    assert lines(cfg, "probe set general") == [
        "cfg: tracking.n_probe = 21 but probe set general (general_heldout) holds 20 prompts "
        "(data.real.splits.general_heldout.n)"]


def test_a_probe_file_shorter_than_asked_is_refused_when_read(tmp_path):
    path = tmp_path / "probe.jsonl"
    write_jsonl(path, [record(i) for i in range(3)])
    with pytest.raises(ValueError, match=r"^tracking\.n_probe = 4 but probe set toxic \(.*probe\.jsonl\) holds 3 "):
        load_probe_set("toxic", path, 4)
    with pytest.raises(ValueError, match=r"^analysis\.n_per_class = 4 but probe set toxic "):
        load_probe_set("toxic", path, 4, "analysis.n_per_class")
    assert len(load_probe_set("toxic", path, 3).texts) == 3
    assert len(load_probe_set("toxic", path, None).texts) == 3  # None: the whole file


# ------------------------------------------------------------------------------ the toy world, Surgical, samples


def test_the_toy_world_refuses_more_eval_prompts_than_a_benchmark_has():
    toy = {**DEFAULT["data"]["toy"], "pretrain_dialogues": 10, "pretrain_careful_dialogues": 10,
           "eval_per_benchmark": 10_000}
    with pytest.raises(ValueError, match=r"^toy world: data\.toy\.eval_per_benchmark = 10000 but benchmark \w+ holds "
                                         r"\d+ distinct prompts$"):
        build_world(toy)


def test_surgical_refuses_more_positions_than_the_template_has(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    from overrefusal.interventions.activations import post_instruction_positions
    from overrefusal.interventions.surgical import POOLS, SurgicalConfig, fit_surgical

    n_pos = post_instruction_positions(tiny_tokenizer, "chat")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = SurgicalConfig(n_train=2, n_val=1, positions=n_pos + 1)
    pools = {name: [f"{name} prompt {i}" for i in range(4)] for name in POOLS}
    with pytest.raises(ValueError, match=rf"^surgical\.positions = {n_pos + 1} but template 'chat' has {n_pos} "
                                         r"post-instruction positions"):
        fit_surgical(model, tiny_tokenizer, pools, [5], cfg, template="chat")


def test_samples_refuse_more_rows_than_a_result_holds(tmp_path):
    path = tmp_path / "r.json"
    rows = [{"id": f"x-{i}", "prompt": "p", "response": "r", "judge_id": "j", "judgement": {"label": "refusal"}}
            for i in range(2)]
    path.write_text(json.dumps({"model": "m", "method": "stl", "seed": 0, "benchmark": "xstest_safe", "rows": rows}))
    with pytest.raises(ValueError, match=r"^samples\.n = 3 but .*r\.json \(xstest_safe\) holds 2 judged responses$"):
        sample_rows([path], n=3, seed=0)
    assert len(sample_rows([path], n=2, seed=0)) == 2
