"""Paper presets hold only paper parts: config validation refuses toy-world data in a real-data run, and
every paper preset (with its overlays) passes that check. The DAG-level check is
tests/integration/test_real_data_rules.py::test_no_job_of_a_paper_preset_reads_toy_data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from overrefusal.config import enabled_capability_tasks, preset_files, semantic_errors
from overrefusal.toyworld import CAPABILITY_TASKS
from tests.pipeline import preset_config

API_ENV = {"OPENAI_API_KEY": "sk-test"}
PAPER_PRESETS = ["tbr", "dcr_qwen2.5-1.5b", "dcr_qwen2.5-7b", "dcr_llama3-8b"]


def paper(name: str, *overlays: str) -> dict[str, Any]:
    cfg = preset_config(*[Path(f).stem for f in preset_files(name)], *overlays)
    cfg["data"]["raw_dir"] = "/nonexistent-mirror"  # the toy check needs no data; other checks may name it
    return cfg


def toy_errors(cfg: dict[str, Any]) -> list[str]:
    return [e for e in semantic_errors(cfg, "cfg", env=API_ENV) if "toy-world" in e]


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_have_no_toy_parts(name):
    cfg = paper(name)
    assert cfg["data"]["source"] == "real"
    assert not set(enabled_capability_tasks(cfg)) & set(CAPABILITY_TASKS)
    assert cfg["tracking"]["probes"]["general"] == "general_heldout"
    assert "general_heldout" in cfg["data"]["real"]["splits"]
    wr = cfg["winrate"]
    assert not wr["enabled"] or wr["prompts"] == ["general_heldout"]
    assert toy_errors(cfg) == []


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_a_toy_task_switched_back_on_is_refused(name):
    cfg = paper(name)
    cfg["capability"]["tasks"]["toy_arith"] = {"kind": "gen", "num_fewshot": 0}
    assert toy_errors(cfg) == [
        "cfg: capability.tasks.toy_arith: a toy-world task in a data.source 'real' run; switch it off "
        "(toy_arith: {enabled: false}), as the paper presets do"]


def test_a_toy_probe_set_is_refused_on_real_data():
    cfg = paper("dcr_qwen2.5-1.5b")
    cfg["tracking"]["probes"]["general"] = "toy_words"
    assert toy_errors(cfg) == [
        "cfg: tracking.probes.general: 'toy_words' is a toy-world task in a data.source 'real' run; use "
        "general_heldout (held-out Alpaca prompts, data.real.splits.general_heldout)"]


def test_toy_win_rate_prompts_are_refused_on_real_data_only_when_the_win_rate_runs():
    cfg = paper("dcr_qwen2.5-1.5b")
    cfg["winrate"]["prompts"] = ["general_heldout", "capability/toy_words"]
    assert toy_errors(cfg) == ["cfg: winrate.prompts: 'capability/toy_words' is a toy-world task in a "
                               "data.source 'real' run; use general_heldout"]
    cfg["winrate"]["enabled"] = False
    assert toy_errors(cfg) == []


def test_the_toy_world_keeps_its_toy_parts():
    cfg = preset_config()
    assert set(CAPABILITY_TASKS) <= set(enabled_capability_tasks(cfg))
    assert toy_errors(cfg) == []
