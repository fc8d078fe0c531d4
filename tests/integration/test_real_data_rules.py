"""Real-data rules: dry runs of the paper presets, and the real build of the TBR data on the mirror."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from overrefusal.judge_validation import default_data_dir
from tests.pipeline import copy_workflow, jobs_in_dry_run, preset_config, preset_files, snakemake

pytestmark = pytest.mark.integration
DATA = default_data_dir()
# The presets call real APIs (GPT-4 reflections, gpt-4o-mini win rate), whose key is checked before any
# job starts; these tests build data only, so any value passes that check and no request is made.
API_ENV = {"OPENAI_API_KEY": "sk-test-not-used"}
needs_mirror = pytest.mark.skipif(DATA is None or not Path(DATA).is_dir(),
                                  reason="no local data mirror (set OVERREFUSAL_DATA_DIR or provide ../shared/data)")


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("real") / "wf")


@needs_mirror
@pytest.mark.parametrize("preset", ["tbr", "dcr_qwen2.5-1.5b"])
def test_preset_dry_run_lists_split_jobs(wf, preset):
    raw = Path(DATA).resolve()
    target = f"results/{preset}/data/data_card.md"
    r = snakemake(wf, "-n", target, "--configfile", *preset_files(preset),
                  "--config", f"data={{raw_dir: {raw}}}", timeout=300, env=API_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = jobs_in_dry_run(r.stdout)
    assert jobs.get("real_splits") == 1 and jobs.get("real_data_card") == 1
    assert jobs.get("stage_real_source", 0) >= 10 and jobs.get("real_eval_set", 0) >= 9
    assert "toy_world" not in jobs
    if preset == "dcr_qwen2.5-1.5b":  # 20k Alpaca and HH-RLHF train are not in the mirror: named up front
        assert "stl_alpaca_small (needed by split sft_general)" in r.stderr
        assert "hh_harmless_train (needed by split contrastive_toxic)" in r.stderr
        # OR-Bench-Hard-1K and PHTest are in the mirror, so they stage from it and are not named as missing
        assert "orbench_hard (needed by" not in r.stderr and "phtest (needed by" not in r.stderr


# Every paper preset, and the overlays that go on one for the paper's own runs.
PAPER_PRESETS = [["tbr"], ["dcr_qwen2.5-1.5b"], ["dcr_qwen2.5-7b"], ["dcr_llama3-8b"],
                 ["dcr_qwen2.5-1.5b", "stl_isets"]]
TOY_RULES = {"toy_world", "toy_teacher", "pretrain_base", "train_tokenizer"}


def _toy_path(path: str) -> bool:
    """A toy-world file: a toy capability task (data/capability/toy_*.jsonl), the toy model or teacher
    (toy-llama, toy-teacher) or anything under a run named toy."""
    return any(part == "toy" or part.startswith(("toy_", "toy-")) for part in path.split("/"))


def dry_run_inputs(stdout: str) -> list[tuple[str, list[str]]]:
    """(rule, input paths) of every job a dry run lists."""
    jobs: list[tuple[str, list[str]]] = []
    rule = None
    for line in stdout.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            rule = m[1]
            jobs.append((rule, []))
            continue
        m = re.match(r"^\s+input: (.*)$", line)
        if m and rule is not None:
            jobs[-1][1].extend(p.strip() for p in m[1].split(","))
    return jobs


def test_the_toy_path_check_finds_toy_files():
    assert _toy_path("results/dcr_qwen2.5-1.5b/data/capability/toy_words.jsonl")
    assert _toy_path("results/toy/data/manifest.json") and _toy_path("resources/models/toy-llama")
    assert not _toy_path("results/tbr/data/general_heldout.jsonl")
    assert not _toy_path("results/dcr_qwen2.5-7b/qwen2.5-7b/stl/seed0/model")
    assert dry_run_inputs("rule a:\n    input: x/toy_a.jsonl, y\n    output: z\nlocalrule b:\n    input: w\n") == [
        ("a", ["x/toy_a.jsonl", "y"]), ("b", ["w"])]


@needs_mirror
@pytest.mark.parametrize("presets", PAPER_PRESETS, ids=lambda p: "+".join(p))
def test_no_job_of_a_paper_preset_reads_toy_data(wf, presets):
    """The whole DAG (rule all) of a paper preset: no toy-world job, and no job reads a toy file."""
    raw = Path(DATA).resolve()
    files = list(dict.fromkeys(f for name in presets for f in preset_files(name)))
    r = snakemake(wf, "-n", "--configfile", *files, "--config", f"data={{raw_dir: {raw}}}", timeout=300,
                  env=API_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = dry_run_inputs(r.stdout)
    assert len(jobs) > 50, r.stdout[-2000:]  # the full DAG was listed, not an empty dry run
    assert not {rule for rule, _ in jobs} & TOY_RULES
    toy = sorted({f"{rule}: {p}" for rule, inputs in jobs for p in inputs if _toy_path(p)})
    assert not toy, toy[:10]
    # the tracked and analysed general class is real: held-out Alpaca prompts
    run = preset_config(*[Path(f).stem for f in files])["name"]
    for rule in ("sft", "analysis"):
        assert any(f"results/{run}/data/general_heldout.jsonl" in inputs for r_, inputs in jobs if r_ == rule), rule


def test_toy_dry_run_has_no_real_rules(wf):
    r = snakemake(wf, "-n", "results/toy/data/manifest.json", timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert jobs_in_dry_run(r.stdout) == {"toy_world": 1}


@needs_mirror
@pytest.mark.slow
def test_dcr_missing_sources_fail_with_instructions(wf):
    raw = Path(DATA).resolve()
    r = snakemake(wf, "--cores", "1", "results/dcr_qwen2.5-1.5b/data/staged/stl_alpaca_small.json",
                  "--configfile", *preset_files("dcr_qwen2.5-1.5b"), "--config", f"data={{raw_dir: {raw}}}",
                  timeout=300, env=API_ENV)
    assert r.returncode != 0
    log = (wf / "logs" / "dcr_qwen2.5-1.5b" / "data" / "stage_stl_alpaca_small.log").read_text()
    assert "https://raw.githubusercontent.com/vinid/safety-tuned-llamas/36a4b8d" in log
    assert f"{raw}/safety_tuned_llamas/training/alpaca_small.json" in log
