"""RunPlan: the models, method instances and seeds of a run, and its checkpoint paths, without Snakemake."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import yaml

from overrefusal.methods import KINDS, intervened_method, method_specs, sweep_instances, tune_grids, tune_instances
from overrefusal.runplan import RunPlan
from tests.pipeline import REPO, preset_config


def default_config() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.fixture
def toy() -> dict[str, Any]:
    return default_config()


@pytest.fixture
def study() -> dict[str, Any]:
    return preset_config("smol", "smol_study")


# ---- models ----
def test_models_of_the_toy_world(toy):
    plan = RunPlan.from_config(toy)
    assert plan.results == "results/toy"
    assert plan.models == plan.pretrain_models == ("toy-llama",)
    assert plan.hub_models == plan.hub_fetched == plan.gguf_models == ()
    assert plan.base_model_path("toy-llama") == "results/toy/models/toy-llama/base"


def test_models_of_a_preset_leave_disabled_ones_out(study):
    plan = RunPlan.from_config(study)
    assert plan.models == plan.gguf_models == ("smollm2-135m",)
    assert plan.pretrain_models == ()
    assert plan.base_model_path("smollm2-135m") == "resources/models/smollm2-135m"
    # a disabled model is not run, but its base checkpoint still has a path (the toy teacher may start from it)
    assert "toy-llama" not in plan.models
    assert plan.base_model_path("toy-llama") == "results/smol-study/models/toy-llama/base"


def test_hub_models_with_a_local_dir_are_not_fetched(toy):
    toy["models"]["hub-a"] = {"source": "hub", "repo_id": "org/a", "template": "chat"}
    toy["models"]["hub-b"] = {"source": "hub", "repo_id": "org/b", "template": "chat", "local_dir": "/m/b"}
    toy["models"]["hub-off"] = {"source": "hub", "repo_id": "org/c", "template": "chat", "enabled": False}
    plan = RunPlan.from_config(toy, results="elsewhere/x")
    assert plan.models == ("toy-llama", "hub-a", "hub-b")
    assert plan.hub_models == ("hub-a", "hub-b")
    assert plan.hub_fetched == ("hub-a",)
    assert plan.base_model_path("hub-a") == "resources/models/hub-a"
    assert plan.base_model_path("hub-b") == "/m/b"
    assert plan.base_model_path("toy-llama") == "elsewhere/x/models/toy-llama/base"
    with pytest.raises(KeyError):
        plan.base_model_path("not-configured")


# ---- methods by kind ----
def test_methods_by_kind(toy):
    plan = RunPlan.from_config(toy)
    assert plan.methods == ("base", "no_safety", "stl", "stl_aug", "tbr_internal", "tbr_external", "dcr_stl",
                            "scans", "surgical")
    assert plan.trained_methods == ("no_safety", "stl", "stl_aug", "tbr_internal", "tbr_external", "dcr_stl")
    assert plan.dcr_methods == ("dcr_stl",)
    assert plan.intervention_methods == ("scans", "surgical")
    assert plan.seeds == (0, 1, 2)
    assert plan.kind("dcr_stl") is KINDS["dcr"] and plan.kind("base") is KINDS["base"]
    assert dict(plan.applies_to) == {"scans": "stl", "surgical": "stl"}


def test_a_disabled_method_is_in_no_list(study):
    plan = RunPlan.from_config(study)
    assert "tbr_external" not in plan.methods + plan.trained_methods + plan.all_methods
    assert plan.trained_methods == ("no_safety", "stl", "stl_aug", "tbr_internal", "dcr_stl")


# ---- seeds and checkpoints ----
def test_seeds_of_base_trained_and_intervention_methods(toy):
    plan = RunPlan.from_config(toy)
    assert plan.seeds_of("base") == [0]  # untrained: greedy decoding of one model, one run
    assert plan.seeds_of("stl") == [0, 1, 2]
    assert plan.seeds_of("dcr_stl") == [0, 1, 2]
    assert plan.seeds_of("scans") == [0, 1, 2]  # the seeds of the method it runs on (stl)
    toy["scans"]["apply_to"] = "base"
    toy["methods"]["surgical"]["apply_to"] = "base"  # an instance's own apply_to wins over its section's
    plan = RunPlan.from_config(toy)
    assert plan.seeds_of("scans") == [0] and plan.seeds_of("surgical") == [0]
    with pytest.raises(KeyError):
        plan.seeds_of("not_a_method")


def test_seeds_of_returns_a_fresh_list(toy):
    plan = RunPlan.from_config(toy)
    plan.seeds_of("stl").append(99)
    assert plan.seeds_of("stl") == [0, 1, 2] and plan.seeds == (0, 1, 2)


def test_model_path_of_base_trained_and_intervention_methods(toy):
    plan = RunPlan.from_config(toy)
    assert plan.run_dir("toy-llama", "stl", 1) == "results/toy/toy-llama/stl/seed1"
    assert plan.model_path("toy-llama", "base", 2) == "results/toy/models/toy-llama/base"
    assert plan.model_path("toy-llama", "stl", 1) == "results/toy/toy-llama/stl/seed1/model"
    assert plan.model_path("toy-llama", "dcr_stl", "0") == "results/toy/toy-llama/dcr_stl/seed0/model"
    assert plan.model_path("toy-llama", "scans", 2) == "results/toy/toy-llama/stl/seed2/model"  # stl's, same seed
    toy["methods"]["surgical"]["apply_to"] = "base"
    plan = RunPlan.from_config(toy)
    assert plan.model_path("toy-llama", "surgical", 2) == "results/toy/models/toy-llama/base"


# ---- the DCR sweep's and the tune grids' instances ----
def test_sweep_instances_are_dcr_runs_on_every_seed(toy):
    plan = RunPlan.from_config(toy)
    assert plan.sweep_methods == tuple(sweep_instances(toy))
    assert plan.sweep_methods[:2] == ("dcrsweep_l0", "dcrsweep_l1")
    assert dict(plan.specs["dcrsweep_l1"]) == {"kind": "dcr", "layer": 1}
    assert plan.seeds_of("dcrsweep_l1") == [0, 1, 2]
    assert plan.model_path("toy-llama", "dcrsweep_l1", 2) == "results/toy/toy-llama/dcrsweep_l1/seed2/model"
    assert plan.tune_methods == () and dict(plan.tune_grids) == {}  # config.yaml has no tune grids
    assert plan.all_methods == plan.methods + plan.sweep_methods
    assert plan.extra_trained == plan.sweep_methods
    assert plan.trained_instances == plan.trained_methods + plan.sweep_methods
    assert plan.dcr_instances == ("dcr_stl", *plan.sweep_methods)
    assert plan.intervention_instances == ("scans", "surgical")


def test_tune_instances_of_the_study(study):
    plan = RunPlan.from_config(study)
    assert plan.tune_methods == tuple(tune_instances(study))
    assert "tune_stl-mix_s60-g120" in plan.tune_methods and "tune_stl-mix_nosafety-g300" in plan.tune_methods
    assert list(plan.tune_grids)[0] == "stl-mix"
    assert set(plan.tune_grids) >= {"stl-mix", "dcr"}
    assert plan.tune_grids["stl-mix"] == tune_grids(study)["stl-mix"]
    assert plan.tune_grids["stl-mix"]["seeds"] == [0]
    assert plan.all_methods == plan.methods + plan.sweep_methods + plan.tune_methods
    stl_mix = tuple(m for m in plan.tune_methods if m.startswith("tune_stl-mix_"))
    assert set(stl_mix) <= set(plan.extra_trained)  # every stl-mix setting trains (stl, no_safety)
    assert "tune_scans-threshold_t065" not in plan.extra_trained  # an intervention on STL trains nothing
    assert dict(plan.specs["tune_stl-mix_s60-g120"]) == {"kind": "stl",
                                                           "sft_n": {"sft_safety": 60, "sft_general": 120}}
    # a trained kind runs on every seed; the grid's own seeds say which of these its jobs run
    assert plan.seeds_of("tune_stl-mix_s60-g120") == [0, 1, 2]
    assert plan.model_path("smollm2-135m", "tune_stl-mix_s60-g120", 0) == (
        "results/smol-study/smollm2-135m/tune_stl-mix_s60-g120/seed0/model")
    assert not set(stl_mix) & set(plan.dcr_instances + plan.intervention_instances)
    assert "tune_dcr_l8" in plan.dcr_instances and "tune_scans-threshold_t065" in plan.intervention_instances


def test_tune_settings_of_every_kind_go_to_their_kinds_lists(study):
    study["tune"]["grids"]["mixed"] = {"settings": {"b": {"kind": "base"}, "sc": {"kind": "scans", "alpha": 2.0},
                                                    "d": {"kind": "dcr", "layer": 3}}}
    plan = RunPlan.from_config(study)
    assert plan.tune_grids["mixed"]["seeds"] == [0]  # no seeds: the first training seed
    assert plan.tune_methods[-3:] == ("tune_mixed_b", "tune_mixed_sc", "tune_mixed_d")
    assert plan.intervention_instances[:2] == ("scans", "surgical")
    assert plan.intervention_instances[-1] == "tune_mixed_sc"
    assert "tune_mixed_b" not in plan.intervention_instances and "tune_mixed_d" not in plan.intervention_instances
    assert plan.dcr_instances[-1] == "tune_mixed_d" and "tune_mixed_d" in plan.trained_instances
    assert "tune_mixed_b" not in plan.trained_instances + plan.intervention_instances
    assert "tune_mixed_sc" not in plan.trained_instances
    assert plan.seeds_of("tune_mixed_b") == [0]
    assert plan.seeds_of("tune_mixed_sc") == [0, 1, 2] and plan.applies_to["tune_mixed_sc"] == "stl"
    assert plan.model_path("m", "tune_mixed_sc", 1) == "results/smol-study/m/stl/seed1/model"
    assert plan.model_path("smollm2-135m", "tune_mixed_b", 0) == "resources/models/smollm2-135m"


# ---- the config is read, never changed, and never aliased ----
@pytest.mark.parametrize("presets", [(), ("smol", "smol_study"), ("dcr", "dcr_qwen2.5-1.5b"), ("tbr",)])
def test_from_config_leaves_the_config_unchanged(presets):
    config = preset_config(*presets)
    before = copy.deepcopy(config)
    plan = RunPlan.from_config(config)
    assert config == before
    assert set(plan.all_methods) <= set(plan.specs) and not set(plan.specs) - set(method_specs(config))
    assert set(plan.sweep_methods + plan.tune_methods).isdisjoint(config["methods"])  # never added to the config


def test_the_plan_is_frozen_and_holds_copies(study):
    plan = RunPlan.from_config(study)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.models = ("other",)  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.specs["stl"] = {"kind": "base"}  # type: ignore[index]
    with pytest.raises(TypeError):
        plan.specs["stl"]["kind"] = "base"  # type: ignore[index]
    # changing the config afterwards changes nothing in the plan
    study["methods"]["stl"]["kind"] = "base"
    study["tune"]["grids"]["stl-mix"]["settings"]["s60-g120"]["kind"] = "base"
    study["models"]["smollm2-135m"]["source"] = "hub"
    assert plan.kind("stl").trains and plan.kind("tune_stl-mix_s60-g120").trains
    assert plan.base_model_path("smollm2-135m") == "resources/models/smollm2-135m"


# ---- the same answers as common.smk's functions before the move, on every preset ----
def _legacy(config: dict[str, Any], results: str):
    """seeds_of and model_path as rules/common.smk computed them from the config before RunPlan."""
    specs = method_specs(config)
    seeds = [int(s) for s in config["seeds"]]

    def seeds_of(method):
        on = intervened_method(config, method)
        if on is not None:
            return seeds_of(on)
        return seeds if KINDS[specs[method]["kind"]].trains else seeds[:1]

    def base_model_path(model):
        spec = config["models"][model]
        if spec["source"] == "pretrain":
            return f"{results}/models/{model}/base"
        return spec.get("local_dir") or f"resources/models/{model}"

    def model_path(model, method, seed):
        on = intervened_method(config, method)
        if on is not None:
            return model_path(model, on, seed)
        if not KINDS[specs[method]["kind"]].trains:
            return base_model_path(model)
        return f"{results}/{model}/{method}/seed{seed}/model"

    return seeds_of, model_path


@pytest.mark.parametrize("presets", [(), ("smol", "smol_study"), ("dcr", "dcr_qwen2.5-1.5b"), ("tbr",), ("smol",)])
def test_same_seeds_and_paths_as_before_the_move(presets):
    config = preset_config(*presets)
    results = f"results/{config['name']}"
    plan = RunPlan.from_config(config, results=results)
    seeds_of, model_path = _legacy(config, results)
    assert plan.all_methods
    for method in plan.all_methods:
        assert plan.seeds_of(method) == seeds_of(method), method
        for model in plan.models:
            for seed in plan.seeds:
                assert plan.model_path(model, method, seed) == model_path(model, method, seed), (model, method)
