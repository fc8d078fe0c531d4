"""Safety says what it averages: the harmful sets are the harmful entries of eval.benchmarks, captions name them,
and STL's own evaluation sets load from the mirror for the overlay config/presets/stl_isets.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overrefusal.benchmarks import BENCHMARKS, safety_caption, safety_sets
from overrefusal.config import semantic_errors
from overrefusal.data.loaders import load_records
from overrefusal.data.registry import BENCHMARK_SOURCES, SOURCES
from overrefusal.io import DataError
from overrefusal.judge_validation import default_data_dir
from tests.pipeline import preset_config

REPO = Path(__file__).resolve().parents[2]
DATA = default_data_dir()
STL_SETS = {"i_malicious": 100, "i_cona": 178, "i_controversial": 40, "q_harm": 100}


def test_safety_sets_are_the_harmful_entries_of_the_list_in_its_order():
    names = ["xstest_safe", "strongreject", "xstest_unsafe", "orbench_toxic", "i_cona", "advbench"]
    assert safety_sets(names) == ["StrongREJECT", "I-CoNa", "AdvBench"]
    assert safety_caption(names) == "3 harmful benchmarks: StrongREJECT, I-CoNa and AdvBench"
    assert safety_caption(["advbench"]) == "1 harmful benchmark: AdvBench"
    assert safety_caption(["xstest_safe"]).startswith("no harmful benchmark")


@pytest.mark.parametrize(("presets", "sets"), [
    (["dcr", "dcr_qwen2.5-1.5b"], ["AdvBench", "HarmBench", "JBB", "MaliciousInstruct", "StrongREJECT"]),
    (["dcr", "dcr_qwen2.5-1.5b", "stl_isets"], ["I-Malicious", "I-CoNa", "I-Controversial", "Q-Harm", "AdvBench"]),
])
def test_the_dcr_preset_and_the_stl_overlay_average_five_named_sets(presets, sets):
    cfg = preset_config(*presets)
    cfg["data"]["raw_dir"] = "/nonexistent-mirror"  # the checks of the mirror's files are not these tests'
    assert safety_sets(cfg["eval"]["benchmarks"]) == sets
    # the over-refusal and control columns stay those of DCR's Table 1
    assert [b for b in cfg["eval"]["benchmarks"] if BENCHMARKS[b].suite != "harmful"] == [
        "xstest_safe", "coconot_contrast", "orbench_hard", "oktest", "phtest", "xstest_unsafe", "orbench_toxic"]
    errs = semantic_errors(cfg, "cfg", env={"OPENAI_API_KEY": "sk-test"})
    assert [e for e in errs if "/nonexistent-mirror" not in e] == []


def test_stl_sets_are_real_data_only():
    cfg = preset_config()
    cfg["eval"]["benchmarks"].append("q_harm")
    assert any(e.startswith("cfg: eval.benchmarks: q_harm has no toy-world counterpart")
               for e in semantic_errors(cfg, "cfg", env={}))


@pytest.mark.skipif(DATA is None or not (Path(DATA) / "safety_tuned_llamas").is_dir(), reason="no data mirror")
@pytest.mark.parametrize("bench", list(STL_SETS))
def test_stl_sets_load_from_the_mirror_with_their_documented_counts(bench):
    src = SOURCES[BENCHMARK_SOURCES[bench][0]]
    recs, report = load_records(src, [Path(DATA) / src.files[0].path])
    assert len(recs) == STL_SETS[bench] == src.rows
    assert {r["label"] for r in recs} == {"toxic"} and all(r["prompt"] == r["prompt"].strip() for r in recs)
    if bench == "i_malicious":  # its tags are the category
        assert {r["category"] for r in recs} == {"hate", "crime"}


def _stl_file(tmp_path: Path, obj: object) -> Path:
    p = tmp_path / "I-Test.json"
    p.write_text(json.dumps(obj))
    return p


@pytest.mark.parametrize(("obj", "message"), [
    ([{"instruction": "x"}], "expected an object with an 'instructions' list"),
    ({"instructions": ["a", "b"], "inputs": ["ctx", ""]}, "'inputs' is not empty"),
    ({"instructions": ["a", "b"], "tags": ["hate"], "inputs": []}, "'tags' must be a list as long as"),
    ({"instructions": ["a", "b"], "tags": ["hate", "fraud"], "inputs": []}, "'fraud', not a documented category"),
    ({"instructions": ["a", 3], "inputs": []}, r"instructions\[1\]: expected a string"),
])
def test_a_damaged_stl_file_is_refused(tmp_path, obj, message):
    src = SOURCES["stl_i_malicious"]
    with pytest.raises(DataError, match=message):
        load_records(src, [_stl_file(tmp_path, obj)], expected_rows=None)
