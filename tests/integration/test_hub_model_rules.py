"""A hub model through the real workflow: rule fetch_model downloads a pinned snapshot over HTTP
from a local fake hub (a tiny Qwen2 checkpoint with Qwen's chat template), then DCR, STL and the
evaluation run on it offline, exactly as the paper presets run Qwen2.5 / LLaMA-3 on a cluster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake
from tests.support.fake_hf_hub import add_repo, serve_hub
from tests.support.tiny_models import checkpoint_files, save_tiny_checkpoint

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TINY = "tests/fixtures/tiny_config.yaml"
REPO_ID = "test-org/tiny-qwen2"
HUB_CONFIG = {
    "name": "hub",
    "models": {
        "toy-llama": {"enabled": False},
        "tiny-qwen": {"source": "hub", "repo_id": REPO_ID, "revision": "main", "num_layers": 2, "template": "chat"},
    },
    # DCR, STL and the evaluation on the hub model; the other rules are the toy world's own and add time only
    "methods": {m: {"enabled": False} for m in ("base", "no_safety", "stl_aug", "tbr_internal", "tbr_external",
                                                "scans", "surgical")},
    "dcr": {"layer": 1},
    "winrate": {"enabled": False},
    "tracking": {"enabled": False},
    "analysis": {a: {"enabled": False} for a in ("entk", "separability", "attribution")},
}


def hub_env(url: str, home: Path) -> dict[str, str]:
    env = {"HF_ENDPOINT": url, "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}
    os.environ.pop("HF_HUB_OFFLINE", None)  # the fetch rule sets it itself; every other rule runs offline
    return env


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("hub")
    ckpt = save_tiny_checkpoint(tmp / "ckpt", "qwen2", num_layers=2)
    commit = add_repo(tmp / "hub", "model", REPO_ID, "main", checkpoint_files(ckpt))
    work = copy_workflow(tmp / "wf")
    (work / "hub.yaml").write_text(yaml.safe_dump(HUB_CONFIG))
    with serve_hub(tmp / "hub") as url:
        proc = snakemake(work, "--cores", "all", "--configfile", TINY, "hub.yaml", env=hub_env(url, tmp / "hf"))
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
        fetched = len(url.requests)
    return work, commit, fetched


def test_fetch_rule_downloads_once_and_records_the_commit(run) -> None:
    work, commit, fetched = run
    record = json.loads((work / "resources/models/tiny-qwen.fetch.json").read_text())
    assert record["commit"] == commit and record["repo_id"] == REPO_ID and not record["pinned"]
    assert "model.safetensors" in record["files"] and fetched > 0
    assert json.loads((work / "resources/models/tiny-qwen/config.json").read_text())["model_type"] == "qwen2"
    # no pretraining, no tokenizer training: the hub checkpoint is the base model
    assert not (work / "results/hub/models").exists()


def test_methods_train_and_evaluate_on_the_hub_model(run) -> None:
    work, _, _ = run
    r = work / "results/hub/tiny-qwen"
    dcr = json.loads((r / "dcr_stl/seed3/dcr/metrics.json").read_text())
    assert dcr["layer"] == 1 and dcr["num_layers"] == 2
    for method in ("stl", "dcr_stl"):
        assert (r / method / "seed3/model/model.safetensors").is_file()
    xs = json.loads((r / "stl/seed3/eval/xstest_safe.json").read_text())
    assert xs["rows"] and xs["judge_id"]
    # generation framed each prompt with the snapshot's own chat template (Qwen's system turn included)
    from overrefusal.models.loading import load_tokenizer
    from overrefusal.prompting import render_prompt

    tok = load_tokenizer(str(work / "resources/models/tiny-qwen"))
    row = json.loads((r / "stl/seed3/generations/xstest_safe.jsonl").read_text().splitlines()[0])
    rendered = render_prompt(tok, row["prompt"], "chat")
    assert rendered.startswith("<|im_start|>system\n")
    assert row["n_prompt_tokens"] == len(tok(rendered, add_special_tokens=False)["input_ids"])
    main = (work / "results/hub/tables/main.md").read_text()
    assert "tiny-qwen" in main and "dcr_stl" in main


def test_rerun_is_offline_and_a_new_revision_refetches(run, tmp_path: Path) -> None:
    work, _, _ = run
    # no hub running now: a finished run needs nothing from it
    r = snakemake(work, "-n", "--configfile", TINY, "hub.yaml")
    assert r.returncode == 0 and jobs_in_dry_run(r.stdout) == {}, r.stdout[-2000:]
    cfg = json.loads(json.dumps(HUB_CONFIG))
    cfg["models"]["tiny-qwen"]["revision"] = "v2"
    (work / "hub_v2.yaml").write_text(yaml.safe_dump(cfg))
    jobs = jobs_in_dry_run(snakemake(work, "-n", "--configfile", TINY, "hub_v2.yaml").stdout)
    assert jobs.get("fetch_model") == 1 and jobs.get("sft") == 2 and jobs.get("dcr_contrastive") == 1
