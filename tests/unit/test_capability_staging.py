"""lm-eval registry tasks: staged online from a (fake) HF hub, then evaluated offline from the cache.

A tiny dataset repo shaped like ``allenai/ai2_arc`` (what lm-eval's ``arc_easy`` reads: config
``ARC-Easy``, parquet per split, fields ``question``/``choices``/``answerKey``) is published on the
local fake hub. ``datasets`` reads ``HF_ENDPOINT`` when it is imported, so staging runs in a
subprocess started with the fake hub's address, through the real rule script
(``scripts/stage_capability_data.py``) with a stand-in ``snakemake`` object. The evaluation then runs
in this process with the server gone, like a capability job on a compute node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from overrefusal import capability
from tests.support.fake_datasets import ARC_REPO, arc_easy_files
from tests.support.fake_datasets import ARC_SPLITS as SPLITS
from tests.support.fake_hf_hub import add_repo, serve_hub

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "src/overrefusal/schemas" / "capability.schema.json").read_text())
ARC_EASY = {"arc_easy": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"}}

# Run in a fresh interpreter: the rule script (which must switch the hub on before anything imports
# huggingface_hub/datasets), then a staging call whose dataset config the hub lacks.
STAGE_SCRIPT = """
import json, runpy, sys, types
out = sys.argv[1]
smk = types.SimpleNamespace(
    params=types.SimpleNamespace(tasks={"arc_easy": {"kind": "lm_eval", "lm_eval_task": "arc_easy"}}),
    output=types.SimpleNamespace(record=out + "/staged.json", cache=out + "/cache"),
    log=[out + "/stage.log"], rule="stage_capability_data", threads=1)
runpy.run_path(sys.argv[2], init_globals={"snakemake": smk}, run_name="__main__")
from overrefusal.capability import CapabilityDataError, stage_registry_tasks
try:
    stage_registry_tasks({"arc_challenge": {"kind": "lm_eval", "num_fewshot": 0}}, out + "/cache2")
    error = None
except CapabilityDataError as exc:
    error = str(exc)
json.dump({"error": error}, open(out + "/error.json", "w"))
"""


def _hub_env(url: str, hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_TOKEN", "HF_DATASETS_CACHE", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT=url, HF_HOME=str(hf_home), HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1", PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    return env


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("stage")
    commit = add_repo(tmp / "hub", "dataset", ARC_REPO, "main", arc_easy_files())
    out = tmp / "out"
    out.mkdir()
    with serve_hub(tmp / "hub") as url:
        proc = subprocess.run(
            [sys.executable, "-c", STAGE_SCRIPT, str(out), str(REPO / "scripts" / "stage_capability_data.py")],
            env=_hub_env(url, tmp / "hf_home"), capture_output=True, text=True, timeout=300)
        requests = [(r.method, r.path) for r in url.requests]
    log = (out / "stage.log").read_text() if (out / "stage.log").exists() else ""
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + log[-3000:]
    return {"out": out, "commit": commit, "requests": requests, "log": log,
            "error": json.loads((out / "error.json").read_text())["error"]}


@pytest.fixture()
def offline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty HF home and no endpoint: only the staged datasets cache can supply the data."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)


def test_stage_records_datasets_splits_and_commit(staged: dict[str, Any]) -> None:
    record = json.loads((staged["out"] / "staged.json").read_text())
    assert set(record) == {"tasks", "cache_dir", "datasets_version", "lm_eval_version", "seconds"}
    assert record["cache_dir"] == str(staged["out"] / "cache")
    assert record["tasks"] == {"arc_easy": {"lm_eval_task": "arc_easy", "subtasks": {"arc_easy": {
        "dataset_path": ARC_REPO, "dataset_name": "ARC-Easy", "splits": SPLITS, "n_eval_docs": SPLITS["test"],
        "cache": [f"allenai___ai2_arc/ARC-Easy/0.0.0/{staged['commit']}"],  # the hub commit it came from
    }}}}
    assert list((staged["out"] / "cache").rglob("*.arrow"))
    # the data really came over HTTP from the hub, and the rule logged what it staged
    parquet = f"/datasets/{ARC_REPO}/resolve/{staged['commit']}/ARC-Easy/test-00000-of-00001.parquet"
    assert ("GET", parquet) in staged["requests"]
    assert "staged arc_easy: 1 lm-eval task(s), 5 evaluation documents" in staged["log"]


def test_stage_failure_names_task_dataset_and_fix(staged: dict[str, Any]) -> None:
    err = staged["error"]
    assert err is not None
    assert "capability task 'arc_challenge'" in err and "allenai/ai2_arc (ARC-Challenge)" in err
    assert "ARC-Challenge" in err.split("fix:")[0]  # datasets' own reason is kept
    assert "internet" in err and "HF_TOKEN" in err


def test_offline_run_reads_the_staged_cache(staged: dict[str, Any], tiny_model_dir: str, offline_home: None) -> None:
    out = capability.run_capability(tiny_model_dir, ARC_EASY, template="alpaca", batch_size=4,
                                    cache_dir=staged["out"] / "cache")
    jsonschema.validate(out, SCHEMA)
    res = out["tasks"]["arc_easy"]
    assert (res["kind"], res["lm_eval_task"], res["primary_metric"], res["num_fewshot"]) == (
        "lm_eval", "arc_easy", "acc", 0)
    assert res["n"] == SPLITS["test"]  # every published test document, no more
    assert res["metrics"]["acc"] * SPLITS["test"] == pytest.approx(round(res["metrics"]["acc"] * SPLITS["test"]))


def test_offline_run_without_staging_fails_at_once_naming_the_task(tmp_path: Path, tiny_model_dir: str,
                                                                   offline_home: None) -> None:
    t0 = time.perf_counter()
    with pytest.raises(capability.CapabilityDataError) as exc:
        capability.run_capability(tiny_model_dir, ARC_EASY, template="alpaca", batch_size=4,
                                  cache_dir=tmp_path / "never_staged")
    msg = str(exc.value)
    assert "capability task 'arc_easy'" in msg and "allenai/ai2_arc (ARC-Easy)" in msg
    assert str(tmp_path / "never_staged") in msg and "stage_capability_data" in msg
    assert time.perf_counter() - t0 < 60  # offline: no network wait (lm-eval's task index is the cost)


def test_unknown_registry_name_is_named(tmp_path: Path) -> None:
    with pytest.raises(capability.CapabilityDataError, match="'no_such_task' is not an lm-eval task"):
        capability.stage_registry_tasks({"x": {"kind": "lm_eval", "lm_eval_task": "no_such_task"}}, tmp_path)


def test_stage_specs_and_key_depend_on_the_data_only() -> None:
    tasks = {
        "mmlu_lm_eval": {"kind": "lm_eval", "lm_eval_task": "mmlu", "num_fewshot": 5, "metric": "acc"},
        "mmlu_0shot": {"kind": "lm_eval", "lm_eval_task": "mmlu", "num_fewshot": 0},
        "arc_easy": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"},
        "mmlu": {"kind": "mc", "num_fewshot": 0},  # a local task (no path yet in a config) is skipped
    }
    specs = capability.registry_stage_specs(tasks)
    assert specs == {"arc_easy": {"kind": "lm_eval", "lm_eval_task": "arc_easy"},
                     "mmlu": {"kind": "lm_eval", "lm_eval_task": "mmlu"}}
    assert capability.registry_stage_key(tasks) == capability.registry_stage_key(specs) == "arc_easy+mmlu"
    many = {f"task_{i:03d}_with_a_long_name": {"kind": "lm_eval"} for i in range(10)}
    key = capability.registry_stage_key(many)
    assert key.startswith("lm_eval-") and len(key) == len("lm_eval-") + 16
    assert capability.registry_stage_specs({"toy": {"kind": "gen", "num_fewshot": 0}}) == {}
    with pytest.raises(ValueError, match="no kind: lm_eval"):
        capability.registry_stage_key({"toy": {"kind": "gen", "num_fewshot": 0}})
    with pytest.raises(ValueError, match="num_fewshot"):
        capability.registry_stage_specs({"bad": {"kind": "lm_eval", "num_fewshot": -1}})


def test_datasets_cache_switch_sets_and_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    before = datasets.config.HF_DATASETS_CACHE
    with capability._datasets_cache(tmp_path / "c"):
        assert os.environ["HF_DATASETS_CACHE"] == str(tmp_path / "c")
        assert datasets.config.HF_DATASETS_CACHE == tmp_path / "c"
        assert datasets.config.DOWNLOADED_DATASETS_PATH == tmp_path / "c" / "downloads"
    assert datasets.config.HF_DATASETS_CACHE == before and "HF_DATASETS_CACHE" not in os.environ
