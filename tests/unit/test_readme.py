"""The README's and docs' numbers are committed result files, rendered, never typed by hand.

The pages show results/published/<name>/, which no run writes; runs write results/<name>/, which git ignores.
So whatever a run on another machine computes, the pages stay in step with what is committed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from overrefusal.report.readme import (PUBLISHED, blocks, pages, preview, publish, render, run_files, run_path,
                                      stale_blocks)

REPO = Path(__file__).resolve().parents[2]
README_MAX_LINES = 300


def test_readme_blocks_equal_the_results_they_name() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    named = [p for p, _ in blocks(text)]
    assert f"{PUBLISHED}/toy/tables/summary.md" in named and f"{PUBLISHED}/smol/tables/summary.md" in named
    assert stale_blocks(text, REPO) == [], "README is out of step with results/published/: see docs/pipeline.md"


def test_docs_blocks_equal_the_results_they_name() -> None:
    """The docs pages render results/ the same way the README does; every block is checked."""
    stale = {p.name: stale_blocks(p.read_text(encoding="utf-8"), REPO) for p in pages(REPO)[1:]}
    assert {k: v for k, v in stale.items() if v} == {}, "docs out of step with results/published/"


def test_the_readme_fits_on_a_few_screens() -> None:
    n = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; move detail to docs/"


def test_every_page_link_to_a_repository_file_resolves() -> None:
    """Relative links and images of README.md and docs/*.md name files that exist (the split moved many)."""
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    missing = []
    for page in pages(REPO):
        for target in link.findall(page.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(REPO)}: {target}")
    assert missing == []


def test_no_block_shows_a_file_that_a_run_writes() -> None:
    """Every block names a committed file that no run writes: a run's own files (results/<name>/ of a run) are
    ignored by git, and the pages must not depend on them."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git checkout")
    named = sorted({p for page in pages(REPO) for p, _ in blocks(page.read_text(encoding="utf-8"))})
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *named], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == [], "blocks naming files git ignores"
    for name in ("toy", "smol"):
        assert not any(p.startswith(f"results/{name}/tables/") or p.startswith(f"results/{name}/figures/")
                       for p in named), f"a block shows run {name}'s own output; name its {PUBLISHED}/ copy"


def test_render_replaces_only_block_bodies(tmp_path: Path) -> None:
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- results: t.md -->\nold\n<!-- /results -->\noutro 0.5\n"
    out = render(text, tmp_path)
    assert out == "intro\n<!-- results: t.md -->\n| a |\n|---|\n| 1 |\n<!-- /results -->\noutro 0.5\n"
    assert stale_blocks(text, tmp_path) == ["t.md"] and stale_blocks(out, tmp_path) == []
    assert render(out, tmp_path) == out


def test_a_block_naming_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.md"):
        render("<!-- results: nope.md -->\n<!-- /results -->\n", tmp_path)


def _tree(root: Path) -> str:
    """A page with a block of run toy's published copy, one of run smol's, and one no run writes."""
    for rel, body in [(f"{PUBLISHED}/toy/tables/s.md", "published toy\n"), ("results/toy/tables/s.md", "run toy\n"),
                      (f"{PUBLISHED}/smol/tables/s.md", "published smol\n"), ("results/bench/b.md", "bench\n")]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    return "".join(f"<!-- results: {p} -->\nold\n<!-- /results -->\n"
                   for p in (f"{PUBLISHED}/toy/tables/s.md", f"{PUBLISHED}/smol/tables/s.md", "results/bench/b.md"))


def test_preview_shows_the_run_in_place_of_its_published_copy_only(tmp_path: Path) -> None:
    text = render(_tree(tmp_path), tmp_path)
    assert run_path(f"{PUBLISHED}/toy/tables/s.md", "toy") == "results/toy/tables/s.md"
    assert run_path(f"{PUBLISHED}/toy/tables/s.md", "smol") is None and run_path("results/bench/b.md", "toy") is None
    out = preview(text, tmp_path, "toy")
    assert out == ("<!-- results: results/toy/tables/s.md -->\nrun toy\n<!-- /results -->\n"
                   f"<!-- results: {PUBLISHED}/smol/tables/s.md -->\npublished smol\n<!-- /results -->\n"
                   "<!-- results: results/bench/b.md -->\nbench\n<!-- /results -->\n")
    assert stale_blocks(text, tmp_path) == []  # the page itself still shows what is published
    assert preview(text, tmp_path, "smol") == text  # run smol wrote nothing here: its blocks stay published


def test_run_files_are_what_the_pages_show_of_that_run(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text(_tree(tmp_path))
    assert run_files(tmp_path, "toy") == ["results/toy/tables/s.md"]
    assert run_files(tmp_path, "smol") == ["results/smol/tables/s.md"]


def test_publish_adds_and_overwrites_but_never_deletes(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / f"{PUBLISHED}/toy/tables/sweep.md").write_text("an earlier sweep\n")
    (tmp_path / "results/toy/figures").mkdir(parents=True)
    (tmp_path / "results/toy/figures/f.png").write_bytes(b"png")
    (tmp_path / "results/toy/models").mkdir()
    (tmp_path / "results/toy/models/weights.bin").write_bytes(b"never published")
    assert publish(tmp_path, "toy") == ["tables/s.md", "figures/f.png"]
    dest = tmp_path / PUBLISHED / "toy"
    assert (dest / "tables/s.md").read_text() == "run toy\n" and (dest / "figures/f.png").read_bytes() == b"png"
    assert (dest / "tables/sweep.md").read_text() == "an earlier sweep\n" and not (dest / "models").exists()
    # publish_tune_grid copies one grid's tables alone, before the study's runs exist
    (tmp_path / "results/toy/tuning").mkdir()
    (tmp_path / "results/toy/tuning/stl-mix.md").write_text("grid\n")
    (tmp_path / "results/toy/tuning/dcr.md").write_text("another grid, not chosen yet\n")
    assert publish(tmp_path, "toy", ["tuning/stl-mix.md", "tuning/stl-mix.csv"]) == ["tuning/stl-mix.md"]
    assert (dest / "tuning/stl-mix.md").read_text() == "grid\n" and not (dest / "tuning/dcr.md").exists()
