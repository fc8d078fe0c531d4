"""Published runs (overrefusal.run_store): recipes, publishing, reading back, and parts."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest
import yaml

from overrefusal import run_store
from overrefusal.io import read_json
from overrefusal.runplan import RunPlan
from tests.pipeline import REPO


@pytest.fixture
def toy() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def sha(config: dict, method: str, seed: int = 0, model: str = "toy-llama") -> str:
    return run_store.recipe_sha256(run_store.run_recipe(config, model, method, seed))


# ---- recipes: what a run depends on, and nothing else ----
def test_a_recipe_follows_its_own_method_and_not_the_others(toy):
    before = {m: sha(toy, m) for m in ("no_safety", "stl", "dcr_stl", "scans", "tbr_internal")}
    changed = copy.deepcopy(toy)
    changed["dcr"]["layer"] += 1
    after = {m: sha(changed, m) for m in before}
    assert after["dcr_stl"] != before["dcr_stl"]
    assert {m: after[m] for m in before if m != "dcr_stl"} == {m: before[m] for m in before if m != "dcr_stl"}


def test_an_interventions_recipe_holds_the_method_it_runs_on(toy):
    changed = copy.deepcopy(toy)
    changed["methods"]["stl"]["sft"] = {"lr": 1.0}
    assert sha(changed, "scans") != sha(toy, "scans")  # SCANS is fitted on STL's checkpoint
    assert sha(changed, "no_safety") == sha(toy, "no_safety")


@pytest.mark.parametrize("edit", [
    lambda c: c["sft"].update(lr=c["sft"]["lr"] * 2),
    lambda c: c["eval"].update(max_new_tokens=c["eval"]["max_new_tokens"] + 1),
    lambda c: c["data"]["toy"].update(seed=c["data"]["toy"]["seed"] + 1),
    lambda c: c["compute"].update(dtype="bfloat16"),
])
def test_shared_settings_that_change_results_change_every_trained_recipe(toy, edit):
    changed = copy.deepcopy(toy)
    edit(changed)
    assert sha(changed, "no_safety") != sha(toy, "no_safety")


@pytest.mark.parametrize("edit", [
    lambda c: c.update(seeds=[0, 1, 2, 3]),  # another seed's run is another run
    lambda c: c["data"].update(raw_dir="/somewhere/else"),  # where the mirror is on this machine
    lambda c: c["eval"].update(benchmarks=c["eval"]["benchmarks"][:2]),  # files, checked one by one
    lambda c: c.update(tune={"benchmarks": [], "grids": {}}),
    lambda c: c["compute"].update(threads=8),
])
def test_settings_that_change_no_result_of_the_run_leave_its_recipe(toy, edit):
    changed = copy.deepcopy(toy)
    edit(changed)
    assert sha(changed, "no_safety") == sha(toy, "no_safety")


def test_the_seed_is_in_the_recipe(toy):
    assert sha(toy, "stl", 0) != sha(toy, "stl", 1)


# ---- publish and read back ----
def make_run(root: Path) -> tuple[Path, list[str]]:
    run = root / "results/x/m/stl/seed0"
    files = ["eval/a.json", "eval/capability.json", "sft_metrics.json"]
    for i, f in enumerate(files):
        (run / f).parent.mkdir(parents=True, exist_ok=True)
        (run / f).write_text(json.dumps({"value": i, "rows": [{"response": "x" * 50}] * 20}))
    bench = root / "benchmarks/x/m/stl/seed0"
    bench.mkdir(parents=True)
    (bench / "sft.tsv").write_text("s\th:m:s\tmax_rss\n12.5\t0:00:12\t100\n")
    (bench / "generate.tsv").write_text("s\th:m:s\tmax_rss\n3.0\t0:00:03\t100\n")
    return run, files


def test_published_files_read_back_as_written_and_gzip_deterministically(toy, tmp_path):
    run, files = make_run(tmp_path)
    recipe = run_store.run_recipe(toy, "toy-llama", "stl", 0)
    store = tmp_path / "results/published/x/runs/m/stl/seed0"
    rec = run_store.publish_run(run, store, files, recipe, benchmark_dir=tmp_path / "benchmarks/x/m/stl/seed0")
    assert rec["job_seconds"] == {"sft": 12.5, "generate": 3.0}
    for f in files:
        assert read_json(store / f"{f}.gz") == read_json(run / f)
    first = (store / "eval/a.json.gz").read_bytes()
    assert gzip.decompress(first)  # a real gzip stream
    run_store.publish_run(run, store, files, recipe)
    assert (store / "eval/a.json.gz").read_bytes() == first  # no timestamp in the header
    got = run_store.resolve(str(run), str(store), recipe, files, reuse=True)
    assert got.published and got.file("eval/a.json") == f"{store}/eval/a.json.gz"


def test_a_publish_that_fails_leaves_the_earlier_copy_whole(toy, tmp_path):
    run, files = make_run(tmp_path)
    recipe = run_store.run_recipe(toy, "toy-llama", "stl", 0)
    store = tmp_path / "store"
    run_store.publish_run(run, store, files, recipe)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(FileNotFoundError, match="lacks a file it publishes"):
        run_store.publish_run(run, store, [*files, "eval/missing.json"], recipe)
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    assert not [p for p in store.parent.iterdir() if p.name.startswith(".store.tmp")]


def test_reuse_off_another_recipe_or_a_missing_file_make_the_run_again(toy, tmp_path):
    run, files = make_run(tmp_path)
    recipe = run_store.run_recipe(toy, "toy-llama", "stl", 0)
    store = tmp_path / "store"
    assert not run_store.resolve(str(run), str(store), recipe, files, reuse=True).published  # nothing published
    run_store.publish_run(run, store, files, recipe)
    assert not run_store.resolve(str(run), str(store), recipe, files, reuse=False).published
    other = run_store.run_recipe({**toy, "sft": {**toy["sft"], "lr": 9.0}}, "toy-llama", "stl", 0)
    warnings: list[str] = []
    got = run_store.resolve(str(run), str(store), other, files, reuse=True, warn=warnings.append)
    assert not got.published and got.file("eval/a.json") == f"{run}/eval/a.json"
    assert len(warnings) == 1 and "method.sft.lr" in warnings[0] and "made again" in warnings[0]
    warnings.clear()
    assert not run_store.resolve(str(run), str(store), recipe, [*files, "eval/b.json"], reuse=True,
                                 warn=warnings.append).published
    assert "lacks eval/b.json" in warnings[0]


# ---- parts ----
def plan_parts(config: dict, groups: list[list[str]]) -> dict:
    plan = RunPlan.from_config(config)
    return run_store.plan_parts(plan.methods, {m: plan.seeds_of(m) for m in plan.methods}, dict(plan.applies_to),
                                groups)


def test_parts_cross_method_groups_with_seeds(toy):
    toy["seeds"] = [0, 1]
    groups = [["base", "no_safety", "stl", "stl_aug", "scans", "surgical"], ["tbr_internal", "tbr_external", "dcr_stl"]]
    parts = plan_parts(toy, groups)
    assert list(parts) == ["seed0-1", "seed0-2", "seed1-1", "seed1-2"]
    assert ("base", 0) in parts["seed0-1"] and ("base", 1) not in parts["seed1-1"]  # the base model has one run
    assert parts["seed1-2"] == [("tbr_internal", 1), ("tbr_external", 1), ("dcr_stl", 1)]
    assert list(plan_parts(toy, [])) == ["seed0-1", "seed1-1"]  # no groups: every method, one part per seed


@pytest.mark.parametrize("groups, message", [
    ([["base", "no_safety", "stl", "stl_aug", "scans", "surgical", "tbr_internal", "tbr_external"]],
     "dcr_stl in no group"),
    ([["base", "no_safety", "stl", "stl_aug", "scans", "surgical", "tbr_internal", "tbr_external", "dcr_stl"],
      ["stl"]], "'stl' is in groups 0 and 1"),
    ([["nope"]], r"handover.parts\[0\]: 'nope' is not an enabled method"),
    ([["base", "no_safety", "stl", "stl_aug", "surgical", "tbr_internal", "tbr_external", "dcr_stl"], ["scans"]],
     "'scans' runs on the checkpoint of 'stl'"),
])
def test_parts_that_cannot_be_made_are_refused(toy, groups, message):
    with pytest.raises(ValueError, match=message):
        plan_parts(toy, groups)


def test_a_part_record_sums_the_job_seconds_of_what_it_published(toy, tmp_path):
    run, files = make_run(tmp_path)
    store = tmp_path / "store"
    run_store.publish_run(run, store, files, run_store.run_recipe(toy, "toy-llama", "stl", 0),
                          benchmark_dir=tmp_path / "benchmarks/x/m/stl/seed0")
    rec = run_store.part_record("seed0-1", [{"model": "m", "method": "stl", "seed": 0, "reused": False,
                                             "store": str(store)},
                                            {"model": "m", "method": "stl", "seed": 0, "reused": True,
                                             "store": str(store)}])
    # a part costs its runs' job time, whether this invocation made them or found them published
    assert (rec["published"], rec["reused"], rec["job_seconds"]) == (1, 1, 31.0)


def test_parts_markdown_lists_what_each_part_made_and_its_time():
    recs = [{"part": "seed1-1", "reused": 0, "job_seconds": 3725.0,
             "runs": [{"method": "stl", "reused": False, "machine": "AMD EPYC"}]},
            {"part": "seed0-2", "reused": 1, "job_seconds": 60.0,
             "runs": [{"method": "stl", "reused": True, "machine": "AMD EPYC"},
                      {"method": "scans", "reused": False, "machine": "AMD EPYC"}]}]
    lines = run_store.parts_markdown(recs).splitlines()
    assert lines[2] == "| seed0-2 | stl, scans | 0 h 01 min | AMD EPYC |"
    assert lines[3] == "| seed1-1 | stl | 1 h 02 min | AMD EPYC |"


def test_the_study_preset_runs_in_nine_parts_with_the_interventions_beside_stl():
    from tests.pipeline import preset_config

    study = preset_config("smol", "smol_study")
    assert study["handover"]["reuse"] is True
    parts = plan_parts(study, study["handover"]["parts"])
    assert list(parts) == [f"seed{k}-{i}" for k in (0, 1, 2) for i in (1, 2, 3)]
    assert parts["seed0-2"] == [("stl", 0), ("scans", 0), ("surgical", 0)]
    assert ("base", 0) in parts["seed0-1"] and all(m != "base" for m, _ in parts["seed1-1"])
    assert sum(len(r) for r in parts.values()) == 22  # the shipped model once, seven methods on three seeds
