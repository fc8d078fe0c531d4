"""The main job's README-rendering step (rule readme) on a results tree that differs from the committed one.

A run on another machine gets other numbers. Rendering the pages from them must leave every tracked file as it
was, so that after the run this suite's README test still passes and `git status` shows nothing changed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overrefusal.report.readme import PUBLISHED, run_files
from tests.pipeline import REPO, copy_workflow, snakemake

pytestmark = pytest.mark.integration

OTHER_CPU = "| toy-llama | stl | 0.42 [0.40, 0.44] |"  # a row no committed table holds


def _committed_results(work: Path) -> None:
    """What a fresh clone has under results/ (copy_workflow leaves results/ out, runs' outputs included)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "results"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    for rel in listed:
        if (REPO / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, work / rel)


def _readme_test_failures(root: Path) -> set[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider",
                           "tests/unit/test_readme.py"], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("FAILED ")}


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="needs the git checkout")
def test_rendering_a_different_run_changes_no_tracked_file(tmp_path: Path) -> None:
    work = copy_workflow(tmp_path / "wf")
    _committed_results(work)
    # The run's own tree: the published toy tables, one of them as another CPU computed it.
    run = work / "results" / "toy"
    shutil.copytree(work / PUBLISHED / "toy", run)
    summary = run / "tables" / "summary.md"
    summary.write_text(summary.read_text() + OTHER_CPU + "\n")
    for f in (run / "tables").glob("dcr_sweep*"):  # the sweep is a target of its own, not part of the main job
        f.unlink()
    assert run_files(work, "toy"), "the pages show no table of the toy run"
    pages = {p: p.read_bytes() for p in [work / "README.md", *sorted((work / "docs").glob("*.md"))]}
    published = {p: p.read_bytes() for p in (work / PUBLISHED).rglob("*") if p.is_file()}

    # Only rule readme: the tables above stand for a finished run, so their producers are not rerun.
    proc = snakemake(work, "--cores", "1", "readme", "--allowed-rules", "readme",
                     env={"OVERREFUSAL_WARM_START": "0"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    preview = (run / "readme" / "README.md").read_text()
    assert OTHER_CPU in preview and "<!-- results: results/toy/tables/summary.md -->" in preview
    toy_page = (run / "readme" / "docs" / "toy_world.md").read_text()
    assert f"<!-- results: {PUBLISHED}/toy/tables/dcr_sweep.md -->" in toy_page  # kept, as no sweep ran here
    assert "<!-- results: results/toy/tables/main.md -->" in toy_page
    assert {p: p.read_bytes() for p in pages} == pages, "rule readme rewrote a tracked page"
    assert {p: p.read_bytes() for p in (work / PUBLISHED).rglob("*") if p.is_file()} == published

    # This suite's README test, run on the copy, passes with the different run beside it: it fails nowhere it
    # does not fail on the checkout itself (where a page may wait for a file another change is committing).
    copy_failed, repo_failed = _readme_test_failures(work), _readme_test_failures(REPO)
    assert "tests/unit/test_readme.py::test_readme_blocks_equal_the_results_they_name" not in copy_failed
    assert copy_failed <= repo_failed, copy_failed - repo_failed

    # And git sees nothing the run or the rendering wrote.
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    seen = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "results", "logs"], cwd=work,
                          capture_output=True, text=True, check=True).stdout.splitlines()
    committed = (f"{PUBLISHED}/", "results/bench/", "results/judges/", "results/memory/", "results/smol/")
    assert [line for line in seen if not line[3:].startswith(committed)] == []
