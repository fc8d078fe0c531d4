"""An lm-eval registry task through the real workflow: the login-node step (`--until fetch_model
stage_capability_data`) fetches a tiny hub model and stages a tiny ARC-Easy from a local fake hub; the
capability job then runs with the hub unreachable and reads the staged cache, as on a compute node."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake
from tests.support.fake_datasets import ARC_REPO, ARC_SPLITS, arc_easy_files
from tests.support.fake_hf_hub import add_repo, serve_hub
from tests.support.tiny_models import checkpoint_files, save_tiny_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = "tests/fixtures/tiny_config.yaml"
CONFIG = {
    "name": "capstage",
    "models": {
        "toy-llama": {"enabled": False},
        "tiny-qwen": {"source": "hub", "repo_id": "test-org/tiny-qwen2", "revision": "main", "num_layers": 2,
                      "template": "chat"},
    },
    "methods": {m: {"enabled": False} for m in ("no_safety", "stl", "stl_aug", "tbr_internal", "tbr_external",
                                                "dcr_stl", "scans", "surgical")},
    "dcr": {"layer": 1},
    "winrate": {"enabled": False},
    "capability": {"tasks": {"arc_easy": {"kind": "lm_eval", "num_fewshot": 0, "metric": "acc"}}},
}
TARGET = "results/capstage/tiny-qwen/base/seed3/eval/capability.json"  # tiny_config.yaml: seeds: [3]


def test_staged_registry_task_is_evaluated_offline(tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt", "qwen2", num_layers=2)
    add_repo(tmp_path / "hub", "model", "test-org/tiny-qwen2", "main", checkpoint_files(ckpt))
    commit = add_repo(tmp_path / "hub", "dataset", ARC_REPO, "main", arc_easy_files())
    work = copy_workflow(tmp_path / "wf")
    (work / "cap.yaml").write_text(yaml.safe_dump(CONFIG))
    cfg = ["--configfile", TINY, "cap.yaml"]
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
    os.environ.pop("HF_HUB_OFFLINE", None)  # the online rules set it themselves; every other rule runs offline

    with serve_hub(tmp_path / "hub") as url:  # the README's login-node command
        proc = snakemake(work, "--cores", "1", "--until", "fetch_model", "stage_capability_data", *cfg,
                         env={**env, "HF_ENDPOINT": url})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((work / "resources/hf_datasets/arc_easy.json").read_text())
    sub = record["tasks"]["arc_easy"]["subtasks"]["arc_easy"]
    assert sub["splits"] == ARC_SPLITS and sub["cache"][0].endswith(commit)

    # no hub now (a closed port): staging is done, so only the data and the evaluation remain
    offline = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}
    assert jobs_in_dry_run(snakemake(work, "-n", TARGET, *cfg, env=offline).stdout) == {
        "toy_world": 1, "capability": 1}
    proc = snakemake(work, "--cores", "1", TARGET, *cfg, env=offline)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((work / TARGET).read_text())
    arc = result["tasks"]["arc_easy"]
    assert arc["kind"] == "lm_eval" and arc["n"] == ARC_SPLITS["test"] and 0 <= arc["metrics"]["acc"] <= 1
    assert result["provenance"]["capability_data"] == record  # which data, down to the hub commit
