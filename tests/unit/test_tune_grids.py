"""Tune grids: settings run as method instances, judged on tuning parts only, tabled per grid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from overrefusal.config import semantic_errors, validate_config
from overrefusal.io import write_json
from overrefusal.methods import method_params, method_specs, sweep_instances, tune_grids, tune_instances
from overrefusal.report.tuning import knob_text, tune_table
from tests.pipeline import preset_config

API_ENV = {"OPENAI_API_KEY": "sk-test"}


@pytest.fixture(scope="module")
def study() -> dict[str, Any]:
    return preset_config("smol", "smol_study")


def test_grid_settings_become_instances_without_touching_the_config(study):
    before = copy.deepcopy(study)
    grids = tune_grids(study)
    assert grids["stl-mix"]["seeds"] == [0]
    assert list(grids["stl-mix"]["methods"]) == ["tune_stl-mix_nosafety-g300", "tune_stl-mix_s60-g120",
                                                  "tune_stl-mix_s100-g300", "tune_stl-mix_s150-g300",
                                                  "tune_stl-mix_s100-g300-e1", "tune_stl-mix_s100-g100"]
    specs = method_specs(study)
    assert set(tune_instances(study)) <= set(specs) and set(study["methods"]) <= set(specs)
    assert study == before  # instances are computed, never added to the config
    # a grid without seeds takes the first training seed
    cfg = copy.deepcopy(study)
    del cfg["tune"]["grids"]["stl-mix"]["seeds"]
    assert tune_grids(cfg)["stl-mix"]["seeds"] == [study["seeds"][0]]


def test_sft_n_reaches_the_params_only_where_set(study):
    p = method_params(study, "tune_stl-mix_s100-g300")
    assert p["kind"] == "stl" and p["sft_n"] == {"sft_safety": 100, "sft_general": 300}
    assert "sft_n" not in method_params(study, "stl")  # params of instances without it are unchanged
    assert method_params(study, "tune_stl-mix_s100-g300-e1")["sft"]["epochs"] == 1


def test_sweep_instances_are_dcr_instances():
    cfg = {"dcr_sweep": {"settings": {"l1": {"layer": 1}}}}
    assert sweep_instances(cfg) == {"dcrsweep_l1": {"kind": "dcr", "layer": 1}}
    assert sweep_instances({}) == {}


def errors(cfg: dict[str, Any], key: str) -> list[str]:
    return [e for e in semantic_errors(cfg, "cfg", env=API_ENV) if key in e]


def test_the_study_grid_validates(study):
    validate_config(copy.deepcopy(study), "smol_study", env=API_ENV)


def test_a_tune_benchmark_without_a_tuning_part_is_refused(study):
    cfg = copy.deepcopy(study)
    cfg["tune"]["benchmarks"] = ["xstest_safe", "phtest"]
    assert errors(cfg, "tune.benchmarks") == [
        "cfg: tune.benchmarks: phtest has no tuning part (data.real.tuning.phtest), so a setting chosen on it would "
        "be chosen on evaluated prompts"]


def test_sft_n_beyond_the_split_or_outside_the_kind_is_refused(study):
    cfg = copy.deepcopy(study)
    settings = cfg["tune"]["grids"]["stl-mix"]["settings"]
    settings["s100-g300"]["sft_n"]["sft_safety"] = 151
    settings["nosafety-g300"]["sft_n"]["sft_safety"] = 10
    assert errors(cfg, "sft_n") == [
        "cfg: tune.grids.stl-mix.settings.nosafety-g300.sft_n.sft_safety: kind no_safety trains on sft_general, "
        "not sft_safety",
        "cfg: tune.grids.stl-mix.settings.s100-g300.sft_n.sft_safety = 151 but data.real.splits.sft_safety.n is "
        "150; raise the split's n"]
    cfg = copy.deepcopy(study)
    cfg["methods"]["stl"] = {"kind": "stl", "sft_n": {"sft_general": 301}}
    assert errors(cfg, "sft_n") == ["cfg: methods.stl.sft_n.sft_general = 301 but data.real.splits.sft_general.n is "
                                    "300; raise the split's n"]


def _eval(path: Path, bench: str, suite: str, metric: str, method: str, seed: int, value: float,
          secondary: float | None = None) -> str:
    obj = {"benchmark": bench, "suite": suite, "metric": metric, "value": value, "ci_low": value - 0.1,
           "ci_high": value + 0.1, "judge_id": "refusal_clf_v2", "n": 100, "model": "m", "method": method,
           "seed": seed}
    if secondary is not None:
        obj["secondary"] = [{"judge_id": "xstest_strmatch_v1", "value": secondary}]
    write_json(path, obj)
    return str(path)


def test_the_table_has_a_row_per_setting_and_seed_and_a_mean_where_there_are_several(tmp_path):
    settings = {"tune_g_nosafety": {"kind": "no_safety"},
                "tune_g_s100": {"kind": "stl", "sft_n": {"sft_safety": 100}, "sft": {"epochs": 3}}}
    evals, sft = [], []
    for method, seeds, xs, adv in (("tune_g_s100", (0, 1), (0.4, 0.6), (0.7, 0.9)), ("tune_g_nosafety", (0,), (0.95,), (0.1,))):
        for seed, x, a in zip(seeds, xs, adv, strict=True):
            d = tmp_path / "m" / method / f"seed{seed}"
            evals.append(_eval(d / "tuning/eval/xstest_safe.json", "xstest_safe", "over_refusal", "compliance_rate",
                               method, seed, x, secondary=x + 0.05))
            evals.append(_eval(d / "tuning/eval/advbench.json", "advbench", "harmful", "defense_success_rate",
                               method, seed, a))
            write_json(d / "sft_metrics.json", {"global_step": 100 + seed, "n_examples": 400})
            sft.append(str(d / "sft_metrics.json"))
    t = tune_table(evals, sft, settings)
    assert list(t["setting"]) == ["tune_g_nosafety", "tune_g_s100", "tune_g_s100", "tune_g_s100"]
    assert list(t["seed"]) == ["0", "0", "1", "mean of 2"]
    assert list(t["steps"])[:3] == [100, 100, 101]
    row = t.iloc[3]
    assert row["xstest_safe compliance_rate"] == pytest.approx(0.5)
    assert row["advbench defense_success_rate"] == pytest.approx(0.8)
    assert row["xstest_safe (xstest_strmatch_v1)"] == pytest.approx(0.55)
    assert row["xstest_safe n"] == 100
    assert t.iloc[1]["knobs"] == "stl sft_n.sft_safety=100 sft.epochs=3"


def test_knob_text_flattens_nested_overrides():
    assert knob_text({"kind": "dcr", "layer": 4, "sft": {"lr": 1e-4}}) == "dcr layer=4 sft.lr=0.0001"
