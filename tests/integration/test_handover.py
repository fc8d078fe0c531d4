"""A run in parts (overrefusal.run_store): a part publishes its runs, and a fresh clone holding only what was
published assembles the tables from it without making any run again; a changed recipe makes its run again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.shared_run import TINY, TinyRun
from tests.pipeline import copy_workflow, jobs_in_dry_run, snakemake

PUBLISHED = "results/published/tiny"
# Reuse on; the analyses compare checkpoints, which no part publishes, so a run in parts leaves them off.
OVERLAY = """handover: {reuse: true, parts: []}
analysis:
  entk: {enabled: false}
  separability: {enabled: false}
  attribution: {enabled: false}
"""
MAKES_A_RUN = {"pretrain_base", "sft", "dcr_contrastive", "generate", "judge", "capability", "intervention",
               "reflections_internal", "reflections_external", "winrate", "toy_teacher"}


@pytest.fixture(scope="module")
def parts(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The finished tiny run with its one part published, and a fresh clone holding the published runs only."""
    work = Path(shutil.copytree(tiny_run.work, tmp_path_factory.mktemp("parts") / "wf", symlinks=True))
    (work / "handover.yaml").write_text(OVERLAY)
    args = ("--configfile", TINY, "handover.yaml")
    dry = snakemake(work, "-n", *args, "--", "results/tiny/parts/seed3-1.json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert set(jobs_in_dry_run(dry.stdout)) == {"publish_run", "part"}  # the runs exist: only publishing is left
    proc = snakemake(work, "--cores", "2", *args, "--", "results/tiny/parts/seed3-1.json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = copy_workflow(tmp_path_factory.mktemp("fresh") / "wf", source=tiny_run.source)
    shutil.copytree(work / PUBLISHED, fresh / PUBLISHED)
    (fresh / "handover.yaml").write_text(OVERLAY)
    return work, fresh


def test_a_part_publishes_every_run_of_its_group_with_its_recipe_and_timings(parts):
    from overrefusal.io import read_json

    work, _ = parts
    record = read_json(work / "results/tiny/parts/seed3-1.json")
    methods = {r["method"] for r in record["runs"]}
    assert {"base", "no_safety", "stl", "dcr_stl", "scans", "surgical"} <= methods
    assert record["published"] == len(record["runs"]) and record["reused"] == 0 and record["job_seconds"] > 0
    assert read_json(work / PUBLISHED / "parts/seed3-1.json") == record  # committed beside the runs
    assert "| seed3-1 |" in (work / PUBLISHED / "parts.md").read_text()
    stl = read_json(work / PUBLISHED / "runs/toy-llama/stl/seed3/recipe.json")
    assert stl["recipe"]["seed"] == 3 and "sft" in stl["job_seconds"]
    assert read_json(work / PUBLISHED / "runs/toy-llama/stl/seed3/eval/xstest_safe.json.gz") == \
        read_json(work / "results/tiny/toy-llama/stl/seed3/eval/xstest_safe.json")


def test_a_fresh_clone_assembles_the_tables_from_the_published_runs_alone(parts):
    work, fresh = parts
    args = ("--configfile", TINY, "handover.yaml")
    dry = snakemake(fresh, "-n", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = jobs_in_dry_run(dry.stdout)
    assert planned and not MAKES_A_RUN & set(planned), planned
    proc = snakemake(fresh, "--cores", "2", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for table in ("main.csv", "capability.csv", "summary_per_seed.csv", "interventions.csv"):
        assert (fresh / "results/tiny/tables" / table).read_bytes() == \
            (work / "results/tiny/tables" / table).read_bytes(), table
    assert not (fresh / "results/tiny/toy-llama").exists()  # no run directory was made
    # a part whose runs are all published publishes nothing again
    again = snakemake(fresh, "-n", *args, "--", "results/tiny/parts/seed3-1.json")
    assert set(jobs_in_dry_run(again.stdout)) == {"part"}, again.stdout[-2000:]


def test_a_changed_recipe_makes_that_run_again_and_says_why(parts):
    _, fresh = parts
    (fresh / "lr.yaml").write_text("dcr: {lr: 0.123}\n")
    dry = snakemake(fresh, "-n", "--configfile", TINY, "handover.yaml", "lr.yaml")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "runs/toy-llama/dcr_stl/seed3: published under another recipe (method.dcr.lr differ)" in dry.stderr
    planned = jobs_in_dry_run(dry.stdout)
    assert planned.get("dcr_contrastive") == 1 and planned.get("sft") == 1, planned  # DCR + STL alone
